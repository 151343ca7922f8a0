"""The storage seam is a promise a second backend can keep: outside ``api/storage/`` nothing
imports a database driver, writes SQL, runs a statement or picks a backend; DATABASE_URL picks
it, by one rule at both ends; and driver errors cross the seam as the seam's own."""

from __future__ import annotations

import ast
import io
import re
import sqlite3
from pathlib import Path

import pytest
from support.executors import executors, sqlite_conn
from support.rendered import pinned_environ
from support.waiting import wait_for

from api import config, storage
from renderer.cli import main as render_main
from shared import database_url
from shared.settings import ConfigError as RenderError
from shared.settings import Host, resolve

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("api", "bench", "supervise", "renderer", "shared")
SEAM = ROOT / "api" / "storage"
# The benchmark's baseline: the application with SQLite's retrieval statement of before issue 15,
# which replaced it (bench.retrieval_scale measures its throughput target against it)
BASELINES = frozenset({ROOT / "bench" / "filed_app.py"})
DRIVERS = frozenset({"sqlite3", "psycopg", "psycopg2", "asyncpg", "sqlalchemy"})
SQL = re.compile(
    r"\b(SELECT\b[^;]*?\bFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM"
    r"|CREATE\s+(UNIQUE\s+)?(TABLE|INDEX|TRIGGER|VIEW|VIRTUAL\s+TABLE)|ALTER\s+TABLE"
    r"|DROP\s+(TABLE|INDEX)|BEGIN\s+(IMMEDIATE|EXCLUSIVE|DEFERRED|TRANSACTION)|SAVEPOINT"
    r"|PRAGMA\s+\w+|ON\s+CONFLICT|rowid)\b",
    re.S,
)
STATEMENT_CALLS = frozenset({"execute", "executemany", "executescript"})


def violations(source: str, name: str) -> list[str]:
    """What in ``source`` speaks a backend's dialect: driver imports, SQL text in strings,
    statement calls, and imports of a backend package instead of the seam."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
            if node.module == "api.storage":
                modules += [f"api.storage.{alias.name}" for alias in node.names]
        else:
            modules = []
        for module in modules:
            if module.split(".")[0] in DRIVERS:
                found.append(f"{name}:{line}: imports the driver {module}")
            if module.startswith("api.storage.sqlite"):
                found.append(f"{name}:{line}: imports the backend {module}")
        text = node.value if isinstance(node, ast.Constant) else None
        if isinstance(text, str) and (match := SQL.search(text)):
            found.append(f"{name}:{line}: SQL in a string: {match.group(0)!r}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in STATEMENT_CALLS
        ):
            found.append(f"{name}:{line}: runs a statement (.{node.func.attr})")
    return found


def test_nothing_outside_api_storage_speaks_a_backends_dialect() -> None:
    files = [
        path
        for package in SCANNED
        for path in sorted((ROOT / package).rglob("*.py"))
        if SEAM not in path.parents and path not in BASELINES
    ]
    assert len(files) > 50  # the walk saw the code base
    found = [v for p in files for v in violations(p.read_text(), str(p.relative_to(ROOT)))]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "import sqlite3",
        "from sqlite3 import Row",
        "from api.storage.sqlite.repository import SqliteStorage",
        "from api.storage import sqlite",
        'q = "SELECT id FROM tasks WHERE state = ?"',
        'q = f"UPDATE tasks SET state = {s}"',
        'q = "DELETE FROM chunks"',
        'order = "ORDER BY turn, rowid"',
        'conn.execute("anything")',
    ],
)
def test_the_scan_catches_each_kind_of_violation(source: str) -> None:
    assert violations(source, "sample.py")


def test_the_scan_lets_plain_code_and_prose_through() -> None:
    source = (
        'from api import storage\nmsg = "Select the documents to delete from the list"\n'
        "storage.open_backend(path).tasks.claim('c', 30)\n"
    )
    assert violations(source, "sample.py") == []


# --- one queue and one repository: the backends differ only behind the Dialect -------------

SHARED_SQL = (
    "dialect.py",
    "document_state.py",
    "queue_sql.py",
    "repository_sql.py",
    "transfer_sql.py",
)
# spellings only one engine speaks: they belong to a backend's dialect
DIALECT_ONLY = re.compile(
    r"%s|\bFOR UPDATE\b|SKIP LOCKED|COLLATE|\bILIKE\b|= ANY\(|\browid\b|\bGREATEST\(|\bMAX\(\w+ -"
    r"|INSERT OR |chunks_fts|\bfts\b|tsvector|tsquery|pg_notify|\bbm25\(|PRAGMA",
    re.I,
)


def dialect_violations(source: str, name: str) -> list[str]:
    """Imports of a driver or a backend, and one engine's spellings in SQL text (docstrings,
    which may name them, aside)."""
    found = []
    tree = ast.parse(source, name)
    prose = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
            )
            for module in modules:
                if module.split(".")[0] in DRIVERS or module.startswith(
                    ("api.storage.sqlite", "api.storage.postgres")
                ):
                    found.append(f"{name}:{line}: imports {module}")
        text = node.value if isinstance(node, ast.Constant) else None
        if isinstance(text, str) and id(node) not in prose and (match := DIALECT_ONLY.search(text)):
            found.append(f"{name}:{line}: one engine's SQL: {match.group(0)!r}")
    return found


def test_the_shared_queue_and_repository_speak_no_engines_dialect() -> None:
    found = [v for name in SHARED_SQL for v in dialect_violations((SEAM / name).read_text(), name)]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "import psycopg",
        "from api.storage.postgres.fulltext import fts_words",
        'q = "SELECT id FROM tasks LIMIT 1 FOR UPDATE SKIP LOCKED"',
        'q = "SELECT 1 FROM documents WHERE id = %s"',
        'q = "name = ? COLLATE NOCASE"',
        'q = "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?"',
        'q = "INSERT OR IGNORE INTO chunks (id) VALUES (?)"',
    ],
)
def test_the_dialect_scan_catches_each_kind(source: str) -> None:
    assert dialect_violations(source, "sample.py")


# --- DATABASE_URL: one rule, both ends ----------------------------------------------------

URLS = [
    ("", True),
    ("sqlite:////srv/data/ragflow.db", True),
    ("SQLITE:////srv/data/other.db", True),
    ("sqlite:///relative.db", False),
    ("sqlite://host/ragflow.db", False),
    ("sqlite:////srv/data/", False),
    ("sqlite:////srv/data/ragflow.db?mode=ro", False),
    ("postgresql://user:secret@db:5432/ragflow", True),
    ("postgres://user:secret@db/ragflow", True),
    ("postgresql://user:secret@db:5432/", False),
    ("postgresql://user:secret@:5432/ragflow", False),
    ("postgresql://user:secret@db:99999/ragflow", False),
    ("postgresql+psycopg://user:secret@db/ragflow", False),
    ("mysql://user:secret@db/ragflow", False),
    ("ragflow.db", False),
]
HOST = Host(cpu_count=lambda: 2, python="/usr/bin/python3", app_dir="/app", user="ragflow")


def _rendered(raw: str) -> bool:
    try:
        resolve({"PROXY": "none", "DATABASE_URL": raw}, {}, {}, HOST, lambda path: "")
    except RenderError as error:
        (problem,) = error.problems
        assert problem.startswith("DATABASE_URL=(value hidden): invalid; accepted: ")
        assert "secret" not in problem
        return False
    return True


def _app(environ: dict[str, str]) -> bool:
    try:
        config.load({"DATA_DIR": "/srv/data", **environ})
    except config.ConfigError as error:
        assert "secret" not in str(error) and database_url.ACCEPTS in str(error)
        return False
    return True


@pytest.mark.parametrize(("raw", "accepted"), URLS)
def test_renderer_and_app_accept_the_same_urls(raw: str, accepted: bool) -> None:
    assert _rendered(raw) is accepted
    assert _app({"DATABASE_URL": raw}) is accepted


@pytest.mark.parametrize(("raw", "accepted"), URLS)
def test_the_file_variant_follows_the_same_rule(raw: str, accepted: bool, tmp_path: Path) -> None:
    secret = tmp_path / "database-url"
    secret.write_text(raw + "\n")
    assert _app({"DATABASE_URL_FILE": str(secret)}) is accepted
    try:
        resolve(
            {"PROXY": "none", "DATABASE_URL_FILE": str(secret)},
            {},
            {},
            HOST,
            lambda p: Path(p).read_text(),
        )
    except RenderError:
        assert not accepted
    else:
        assert accepted


def test_a_postgresql_url_without_a_database_is_refused_without_its_password() -> None:
    hidden = re.escape("DATABASE_URL=(value hidden): invalid; accepted")
    with pytest.raises(config.ConfigError, match=hidden) as refused:
        config.load({"DATABASE_URL": "postgresql://user:secret@db/"})
    assert "secret" not in str(refused.value)


def test_both_url_and_file_set_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text("sqlite:////srv/x.db")
    with pytest.raises(config.ConfigError, match="both set"):
        config.load(
            {"DATABASE_URL": "", "DATABASE_URL_FILE": str(secret)}
            | {"DATABASE_URL": "sqlite:////srv/y.db"}
        )


def _rendered_files(tmp: Path, **environ: str) -> dict[str, str]:
    out = tmp / "out"
    err = io.StringIO()
    code = render_main(
        ["--output-dir", str(out)], pinned_environ(tmp, **environ), io.StringIO(), err
    )
    assert code == 0, err.getvalue()
    return {p.name: p.read_text() for p in sorted(out.iterdir())}


@pytest.mark.parametrize(
    "url", ["sqlite:////srv/secret-place/ragflow.db", "postgresql://u:secret-place@db:5432/rf"]
)
@pytest.mark.parametrize("variant", ["DATABASE_URL", "DATABASE_URL_FILE"])
def test_the_url_is_never_rendered(tmp_path: Path, variant: str, url: str) -> None:
    value = url
    if variant == "DATABASE_URL_FILE":
        value = str(tmp_path / "database-url")
        Path(value).write_text(url)
    (tmp_path / "with").mkdir()
    (tmp_path / "without").mkdir()
    with_url = _rendered_files(tmp_path / "with", **{variant: value})
    without = _rendered_files(tmp_path / "without")
    assert with_url.keys() == without.keys() and len(with_url) >= 2
    for name, text in with_url.items():
        assert "secret-place" not in text and variant not in text, name
        assert text == without[name].replace(str(tmp_path / "without"), str(tmp_path / "with"))


# --- the backend DATABASE_URL names ---------------------------------------------------------


def test_the_database_lives_where_the_url_says_and_files_under_data_dir(tmp_path: Path) -> None:
    data_dir, elsewhere = tmp_path / "data", tmp_path / "db" / "custom.db"
    backend = storage.open_backend(data_dir, f"sqlite:///{elsewhere}")
    assert (backend.name, backend.location) == ("sqlite", str(elsewhere))
    dataset = backend.store.create_dataset("t", {"name": "ds", "parser_config": {}})
    upload = storage.Upload("a.txt", "txt", "doc", io.BytesIO(b"alpha"))
    (doc,) = backend.store.add_documents(dataset, [upload], "t")
    assert backend.store.file_path(doc).read_bytes() == b"alpha"
    assert backend.store.file_path(doc).is_relative_to(data_dir / "files")
    backend.tasks.enqueue_parse(dataset["id"], [doc["id"]])
    assert backend.tasks.depth() == {"queued": 1, "running": 0, "expired": 0}
    assert elsewhere.exists() and not (data_dir / "ragflow.db").exists()
    backend.close()


def test_real_executors_parse_into_the_database_the_url_names(tmp_path: Path) -> None:
    data_dir, elsewhere = tmp_path / "data", tmp_path / "db" / "custom.db"
    url = f"sqlite:///{elsewhere}"
    backend = storage.open_backend(data_dir, url)
    dataset = backend.store.create_dataset("t", {"name": "ds", "parser_config": {}})
    uploads = [storage.Upload("a.txt", "txt", "doc", io.BytesIO(b"alpha beta gamma"))]
    (doc,) = backend.store.add_documents(dataset, uploads, "t")
    backend.tasks.enqueue_parse(dataset["id"], [doc["id"]])
    with executors(data_dir, [0], tmp_path, DATABASE_URL=url):
        wait_for(
            lambda: (
                (found := backend.store.get_document(dataset["id"], doc["id"]))
                and found["run"] == storage.RUN_DONE
            ),
            60,
            "the document parsed",
        )
    assert backend.store.list_chunks(doc["id"], storage.Page())[1] == 1
    assert [e["consumer"] for e in backend.heartbeats.executors()] == ["test_0"]
    assert not (data_dir / "ragflow.db").exists()


# --- errors cross the seam as the seam's own ------------------------------------------------


def test_a_driver_error_crosses_the_seam_as_a_backend_error(tmp_path: Path) -> None:
    backend = storage.open_backend(tmp_path)
    assert backend.tasks.depth()["queued"] == 0
    sqlite_conn(tmp_path).execute("DROP TABLE executors")  # a broken schema
    with pytest.raises(storage.BackendError, match="no such table: executors") as caught:
        backend.heartbeats.executors()
    assert isinstance(caught.value.__cause__, sqlite3.Error)
    with pytest.raises(storage.BackendError):
        backend.heartbeats.beat("c", host="h", pid=1, started_at=0.0, state="idle")


def test_a_violated_constraint_crosses_the_seam_as_a_conflict(tmp_path: Path) -> None:
    store = storage.open_backend(tmp_path).store
    store.add_key("same-hash", "prefix", "t", "first")
    with pytest.raises(storage.Conflict, match="conflicts with stored data"):
        store.add_key("same-hash", "prefix", "t", "second")
    assert [k["name"] for k in store.list_keys()] == ["first"]


def test_a_real_executor_survives_backend_errors_and_keeps_parsing(tmp_path: Path) -> None:
    """A backend error (here: the executors table is gone, so every heartbeat fails) is storage
    trouble for the executor: logged as the seam's error, never a crash, and tasks go on."""
    data_dir = tmp_path / "data"
    backend = storage.open_backend(data_dir)
    dataset = backend.store.create_dataset("t", {"name": "ds", "parser_config": {}})
    uploads = [storage.Upload("a.txt", "txt", "doc", io.BytesIO(b"alpha beta gamma"))]
    (doc,) = backend.store.add_documents(dataset, uploads, "t")
    sqlite_conn(data_dir).execute("DROP TABLE executors")
    with executors(data_dir, [0], tmp_path) as (proc,):
        backend.tasks.enqueue_parse(dataset["id"], [doc["id"]])
        wait_for(
            lambda: (
                (found := backend.store.get_document(dataset["id"], doc["id"]))
                and found["run"] == storage.RUN_DONE
            ),
            60,
            "the document parsed",
        )
        assert proc.poll() is None  # still running
    log = (tmp_path / "executor_0.log").read_text()
    assert "heartbeat of test_0 failed: The database" in log and "no such table" in log, log
    assert "Traceback" not in log, log
