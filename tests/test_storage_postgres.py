"""The PostgreSQL backend (api.storage.postgres) on a throwaway cluster: a pool per process
opened after fork, migrations under an advisory lock with many processes starting at once,
uploads streamed in and out of the database, executors woken by NOTIFY, the session limits
(DB_LOCK_TIMEOUT_MS, DB_IDLE_IN_TRANSACTION_TIMEOUT_MS): a stopped client inside a transaction
blocking nobody, a held lock failing the waiter fast; connection loss as Unavailable, and the
password in no message."""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.backends import PostgresInspector, add_documents
from support.postgres import PASSWORD, Cluster
from support.waiting import wait_for

from api import config, storage
from api.config import ConfigError
from api.storage.postgres import connections as pg_connections
from api.storage.postgres import fulltext as pg_fulltext
from api.storage.postgres import schema as pg_schema

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def backend(tmp_path: Path, pg_database: str) -> storage.Backend:
    return storage.open_backend(tmp_path / "data", pg_database)


def _session_pids(url: str) -> set[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'ragflow-bundle'"
            " AND datname = current_database()"
        ).fetchall()
    return {int(r[0]) for r in rows}


def _child_uses_the_backend(data_dir: str, url: str, out: Any) -> None:
    backend = storage.open_backend(Path(data_dir), url)
    try:
        keys = backend.store.list_keys()
        pool_pids = [key[0] for key in pg_connections._pools]
        out.send(("ok", len(keys), pool_pids, os.getpid()))
    except Exception as exc:  # reported to the parent, which fails the test
        out.send(("error", repr(exc), [], os.getpid()))


def test_a_forked_child_opens_its_own_pool_and_the_parent_keeps_working(
    tmp_path: Path, pg_database: str, backend: storage.Backend
) -> None:
    backend.store.add_key("h" * 64, "prefix", "tenant", "parent's")
    parent_sessions = _session_pids(pg_database)
    assert parent_sessions, "the parent's pool holds a session"
    reader, writer = multiprocessing.get_context("fork").Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(
        target=_child_uses_the_backend, args=(str(tmp_path / "data"), pg_database, writer)
    )
    child.start()
    assert reader.poll(60), "the child answered"
    status, keys, pool_pids, child_pid = reader.recv()
    child.join(30)
    assert (status, keys) == ("ok", 1), keys
    assert pool_pids == [child_pid], "the child's only pool is its own, opened after the fork"
    assert child.exitcode == 0
    # the parent's sessions survived the child (nothing closed them from the child's side)
    assert backend.store.list_keys()[0]["name"] == "parent's"
    assert parent_sessions <= _session_pids(pg_database)


MIGRATE_AT_ONCE = r"""
import sys, time
from pathlib import Path
from api import config, storage
from api.config import ConfigError
start = float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
print(storage.open_backend(Path(sys.argv[1]), sys.argv[2]).migrations.migrate())
"""


def test_many_processes_starting_at_once_migrate_exactly_once(
    tmp_path: Path, pg_database: str
) -> None:
    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                MIGRATE_AT_ONCE,
                str(tmp_path / f"d{n}"),
                pg_database,
                str(start),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(6)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [err for _, err in results]
    assert {out.strip() for out, _ in results} == {str(len(pg_schema.MIGRATIONS))}
    with psycopg.connect(pg_database, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (len(pg_schema.MIGRATIONS),)
        ]


class _Bytes(io.RawIOBase):
    """``size`` bytes of a repeating pattern, read in whatever blocks the reader asks for."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
        self.left -= n
        return n


UPLOAD_RSS = r"""
import io, resource, sys
from pathlib import Path
sys.path.insert(0, "tests")
from test_storage_postgres import _Bytes
from api import config, storage
from api.config import ConfigError
size = int(sys.argv[3])
backend = storage.open_backend(Path(sys.argv[1]), sys.argv[2])
dataset = backend.store.create_dataset("t", {"name": "big", "parser_config": {}})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
upload = storage.Upload("big.bin", "bin", "doc", io.BufferedReader(_Bytes(size), 1 << 20))
doc = backend.store.add_documents(dataset, [upload], "t")[0]
after_upload = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
path = backend.store.file_path(doc)
after_read = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(doc["size"], path.stat().st_size, before, after_upload, after_read)
"""


def test_a_200_mb_upload_streams_through_the_database_in_bounded_memory(
    tmp_path: Path, pg_database: str
) -> None:
    size = 200 * 1024 * 1024
    done = subprocess.run(
        [sys.executable, "-c", UPLOAD_RSS, str(tmp_path / "data"), pg_database, str(size)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    stored, cached, before, after_upload, after_read = map(int, done.stdout.split())
    assert stored == cached == size
    grown_kib = max(after_upload, after_read) - before
    print(
        f"peak RSS: {before / 1024:.1f} MiB before, {after_upload / 1024:.1f} MiB after a 200 MB"
        f" upload, {after_read / 1024:.1f} MiB after reading it back"
    )
    assert grown_kib < 64 * 1024, f"peak RSS grew by {grown_kib} KiB: the upload sat in memory"


def test_any_process_reads_an_upload_through_its_own_file_cache(
    tmp_path: Path, pg_database: str, backend: storage.Backend
) -> None:
    dataset_id, (doc_id,) = add_documents(backend.store, "t", ["a.txt"], {})
    other_machine = storage.open_backend(tmp_path / "elsewhere", pg_database)
    doc = other_machine.store.get_document(dataset_id, doc_id)
    assert doc is not None
    path = other_machine.store.file_path(doc)
    assert path.is_relative_to(tmp_path / "elsewhere")
    assert path.read_bytes() == b"text of a.txt"
    assert other_machine.store.delete_documents(dataset_id, [doc_id]) == []
    assert not path.exists()


def test_a_parse_reads_an_upload_from_a_copy_removed_after_it(
    tmp_path: Path, pg_database: str, backend: storage.Backend
) -> None:
    dataset_id, (doc_id,) = add_documents(backend.store, "t", ["a.txt"], {})
    other_machine = storage.open_backend(tmp_path / "elsewhere", pg_database)
    document = {"id": doc_id, "dataset_id": dataset_id}
    with other_machine.store.local_copy(document) as path:
        assert path.read_bytes() == b"text of a.txt"
        assert other_machine.store.sweep_staging() == 0  # a copy in use is spared
        assert path.exists()
    assert not path.exists()
    assert not (tmp_path / "elsewhere" / "files" / dataset_id / doc_id).exists()  # no cache
    gone = {"id": "gone", "dataset_id": dataset_id}
    with pytest.raises(storage.NotFound), other_machine.store.local_copy(gone):
        pass
    assert list((tmp_path / "elsewhere" / "files" / ".staging").iterdir()) == []
    cached = other_machine.store.file_path(document)  # a download caches the file
    with other_machine.store.local_copy(document) as path:
        assert path == cached  # and a parse reads it there
    assert cached.read_bytes() == b"text of a.txt"


def test_an_enqueue_wakes_a_waiting_executor_at_once(backend: storage.Backend) -> None:
    dataset_id, (doc, _) = add_documents(backend.store, "t", ["a.txt", "b.txt"], {})
    woke: list[float] = []
    early: list[bool] = []
    listening = threading.Event()

    def wait() -> None:
        early.append(backend.tasks.wait_for_work(0.05))  # sets up this thread's LISTEN
        listening.set()
        if backend.tasks.wait_for_work(30):
            woke.append(time.monotonic())

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert listening.wait(30), "the waiter did not start listening"
    assert early == [False], "woken with nothing queued"
    enqueued = time.monotonic()
    backend.tasks.enqueue_parse(dataset_id, [doc])
    waiter.join(30)
    assert woke, "the waiting executor was not woken within 30 s"
    print(f"enqueue to wake-up: {(woke[0] - enqueued) * 1000:.1f} ms")
    assert woke[0] - enqueued < 5, "woken by the notification, not by a timeout"


# argv: url, task id, DB_IDLE_IN_TRANSACTION_TIMEOUT_MS of the client that stops
LOCK_AND_STOP = r"""
import os, signal, sys
from api.storage import PoolSettings
from api.storage.postgres import connections
options = PoolSettings(idle_in_transaction_timeout_ms=int(sys.argv[3]))
with connections.transaction(sys.argv[1], options) as conn:
    conn.execute("SELECT id FROM tasks WHERE id = %s FOR UPDATE", (sys.argv[2],))
    print("locked", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
"""
IDLE_MS = 2000


def test_a_client_stopped_inside_a_transaction_blocks_no_one(
    backend: storage.Backend, pg_database: str
) -> None:
    dataset_id, docs = add_documents(backend.store, "t", ["a.txt", "b.txt"], {})
    first, second = backend.tasks.enqueue_parse(dataset_id, docs)
    frozen = subprocess.Popen(
        [sys.executable, "-c", LOCK_AND_STOP, pg_database, first, str(IDLE_MS)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert frozen.stdout is not None and frozen.stdout.readline().strip() == "locked"
        stat = Path(f"/proc/{frozen.pid}/stat")
        wait_for(lambda: stat.read_text().split()[2] == "T", 10, "the stop")
        # the others skip the locked task instead of waiting behind the stopped client
        started = time.monotonic()
        task = backend.tasks.claim("c_other", 30)
        assert task is not None and task.id == second
        assert time.monotonic() - started < 5
        # the server ends the stopped session (DB_IDLE_IN_TRANSACTION_TIMEOUT_MS): its task
        # becomes claimable again without anyone touching the stopped process
        claimed = wait_for(
            lambda: backend.tasks.claim("c_other", 30),
            IDLE_MS / 1000 + 20,
            "the stopped client's lock to be released",
        )
        assert claimed.id == first
    finally:
        frozen.send_signal(signal.SIGKILL)
        frozen.wait(10)


def test_an_unreachable_server_is_unavailable_and_never_shows_the_password(
    tmp_path: Path,
) -> None:
    from support.ports import refusing_port

    with refusing_port() as port:
        url = f"postgresql://user:{PASSWORD}@127.0.0.1:{port}/nothing"
        settings = storage.PoolSettings(size=1, connect_timeout=1, statement_timeout_ms=1000)
        backend = storage.open_backend(tmp_path, url, settings)
        with pytest.raises(storage.Unavailable) as down:
            backend.store.list_keys()
        assert down.value.component == "db"
        assert PASSWORD not in str(down.value) and "127.0.0.1" in str(down.value)
        with pytest.raises(storage.Unavailable):
            backend.store.check()
        assert PASSWORD not in backend.location


def test_a_server_restart_is_unavailable_then_service_resumes(
    tmp_path: Path, own_cluster: Cluster
) -> None:
    url = own_cluster.create_database()
    backend = storage.open_backend(tmp_path, url)
    dataset_id, docs = add_documents(backend.store, "t", ["a.txt"], {})
    own_cluster.restart()
    failures: list[storage.StorageError] = []

    def listed() -> bool:
        try:
            return backend.store.document_ids(dataset_id) == docs
        except storage.StorageError as exc:
            failures.append(exc)
            return False

    wait_for(listed, 60, "service to resume after the restart")
    assert all(isinstance(f, storage.Unavailable) for f in failures), failures
    assert all(PASSWORD not in str(f) for f in failures)
    assert PostgresInspector(url).document(docs[0])["name"] == "a.txt"
    assert "PANIC" not in own_cluster.log()


LIMITS = storage.PoolSettings(
    size=2, statement_timeout_ms=20_000, lock_timeout_ms=700, idle_in_transaction_timeout_ms=9000
)


def test_the_session_limits_are_set_on_every_pooled_connection(
    tmp_path: Path, pg_database: str
) -> None:
    backend = storage.open_backend(tmp_path, pg_database, LIMITS)
    backend.store.list_keys()
    with pg_connections.connection(pg_database, LIMITS) as conn:
        shown = conn.execute(
            "SELECT current_setting('lock_timeout') AS lock,"
            " current_setting('idle_in_transaction_session_timeout') AS idle,"
            " current_setting('statement_timeout') AS statement,"
            " current_setting('jit') AS jit"
        ).fetchone()
    assert shown == {"lock": "700ms", "idle": "9s", "statement": "20s", "jit": "off"}
    defaults = storage.PoolSettings()  # the settings table's defaults
    with pg_connections.connection(pg_database, defaults) as conn:
        shown = conn.execute(
            "SELECT current_setting('lock_timeout') AS lock,"
            " current_setting('idle_in_transaction_session_timeout') AS idle"
        ).fetchone()
    assert shown == {"lock": "10s", "idle": "15s"}


def test_the_session_limits_are_settings_of_the_one_table() -> None:
    env = {"DB_LOCK_TIMEOUT_MS": "700", "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS": "9000"}
    pool = config.load(env).pool
    assert (pool.lock_timeout_ms, pool.idle_in_transaction_timeout_ms) == (700, 9000)
    assert config.load({}).pool == storage.PoolSettings()  # the same defaults, from the table
    for name, raw in [
        ("DB_LOCK_TIMEOUT_MS", "0"),
        ("DB_LOCK_TIMEOUT_MS", "10s"),
        ("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", "999"),
        ("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", "86400001"),
    ]:
        with pytest.raises(ConfigError, match=f"{name}={raw!r}: invalid; accepted: an integer"):
            config.load({name: raw})


def test_a_lock_held_past_the_lock_timeout_fails_the_waiter_fast_and_clearly(
    tmp_path: Path, pg_database: str
) -> None:
    """Another session holds the datasets table; a write that needs it waits no longer than
    DB_LOCK_TIMEOUT_MS (not the statement timeout, not forever), then fails with the seam's
    Unavailable("writes") naming the cause; once the lock is gone, the write succeeds."""
    backend = storage.open_backend(tmp_path, pg_database, LIMITS)
    backend.store.list_keys()  # migrated, pooled
    with psycopg.connect(pg_database) as holder:  # a transaction until the block ends
        holder.execute("LOCK TABLE datasets IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(storage.Unavailable) as blocked:
            backend.store.create_dataset("t", {"name": "waits"})
        waited = time.monotonic() - started
        assert blocked.value.component == "writes"
        assert "lock timeout" in str(blocked.value) and "another session holds a lock" in str(
            blocked.value
        )
        assert PASSWORD not in str(blocked.value)
        assert LIMITS.lock_timeout_ms / 1000 <= waited < LIMITS.statement_timeout_ms / 1000 / 2
    assert backend.store.create_dataset("t", {"name": "waits"})["name"] == "waits"


def test_admin_migrate_reports_the_version_without_the_password(
    tmp_path: Path, pg_database: str
) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": pg_database}
    runs = [
        subprocess.run(
            [sys.executable, "-m", "api.admin", "migrate"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        for _ in range(2)  # the second finds the schema current
    ]
    for done in runs:
        assert done.returncode == 0, done.stderr
        assert PASSWORD not in done.stdout + done.stderr
        assert done.stdout.strip() == (
            f"postgresql storage at {pg_database.split('@')[1]}"
            f" is at schema version {len(pg_schema.MIGRATIONS)}"
        )


def test_an_executor_without_its_database_logs_the_cause_never_the_password(
    tmp_path: Path,
) -> None:
    from support.ports import refusing_port

    with refusing_port() as port:
        _executor_without_database(tmp_path, f"postgresql://rf:{PASSWORD}@127.0.0.1:{port}/ragflow")
    text = (tmp_path / "executor.log").read_text()
    assert PASSWORD not in text, text
    assert "127.0.0.1" in text and "Traceback" not in text, text


def _executor_without_database(tmp_path: Path, url: str) -> None:
    """Run an executor on ``url`` until it logs that it cannot claim tasks, then stop it."""
    from support.executors import executor_env

    log = tmp_path / "executor.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.task_executor", "--consumer-num", "1"],
            cwd=ROOT,
            env=executor_env(tmp_path / "data", DATABASE_URL=url, DB_CONNECT_TIMEOUT="1"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: "cannot claim tasks" in log.read_text(), 60, "the executor's complaint")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


class _Explained:
    """A session that keeps the plan (EXPLAIN) of each statement that reads chunks, and
    answers it."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.plans: list[str] = []

    def execute(self, sql: str, args: Any = ()) -> Any:
        if "FROM chunks" in sql:
            rows = self.session.execute(f"EXPLAIN {sql}", args).fetchall()
            self.plans.append("\n".join(str(row[0]) for row in rows))
        return self.session.execute(sql, args)


def test_search_candidates_come_from_the_full_text_index_whatever_the_statistics(
    backend: storage.Backend, pg_database: str
) -> None:
    """Statistics taken before a bulk ingest into a new dataset estimate it at one row: the
    planner must still take the candidates from the GIN indexes, not test every chunk of the
    dataset against the query (migration 2), through the bound and when ranking every
    match."""
    store = backend.store
    _, (old_doc,) = add_documents(store, "t", ["old.txt"], {})
    store.replace_chunks(old_doc, [{"content": f"alpha beta {n}"} for n in range(2000)])
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("ANALYZE")  # the statistics know nothing of the next dataset
    fresh, (doc,) = add_documents(store, "t", ["new.txt"], {})
    store.replace_chunks(doc, [{"content": f"gamma delta {n}"} for n in range(3000)])
    dialect = store.db  # type: ignore[attr-defined]
    for limit in (10, 1024):  # through the bound; every match ranked
        with dialect.read() as session:
            explained = _Explained(session)
            found = list(dialect.search(explained, [fresh], [], ["gamma"], limit))
        assert len(found) == limit and all(row[1] == doc for row in found)
        for plan in explained.plans:
            assert "Seq Scan on chunks" not in plan, plan
        assert any("chunks_fts" in plan for plan in explained.plans), explained.plans


def test_a_search_reads_its_terms_counts_through_the_primary_key(
    backend: storage.Backend, pg_database: str
) -> None:
    """The statement reading a question's word and impact counts can take them from
    fulltext_terms' primary key (a table of every word and impact of the index is read for a
    few of them), and it finds them."""
    store = backend.store
    _, (doc,) = add_documents(store, "t", ["a.txt"], {})
    store.replace_chunks(doc, [{"content": "alpha alpha alpha beta"}])
    args = (["alpha", "beta"], [pg_fulltext.impact_word("alpha", b) for b in range(60)])
    sql = pg_fulltext._TERMS.replace("?", "%s")
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(str(row[0]) for row in conn.execute(f"EXPLAIN {sql}", args).fetchall())
        assert "fulltext_terms_pkey" in plan and "Seq Scan" not in plan, plan
        found = {(impact, lexeme[:5]): int(n) for impact, lexeme, n in conn.execute(sql, args)}
    assert found[(False, "alpha")] == found[(False, "beta")] == 1
    assert found[(True, "alpha")] == 1
