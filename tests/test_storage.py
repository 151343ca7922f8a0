"""The SQLite backend (api.storage.sqlite): pragmas, migrations under concurrency, per-process
connections, chunk replacement inside the caller's transaction, the FTS index, atomic uploads,
the writer lock and the database file's identity."""

from __future__ import annotations

import io
import multiprocessing
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import xxhash
from support.backends import SqliteStore
from support.waiting import wait_for

from api import storage
from api.storage import document_state
from api.storage.sqlite import connections as sqlite_backend
from api.storage.sqlite.schema import MIGRATIONS, migrate


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path)


def _doc(store: SqliteStore, name: str = "a.txt") -> storage.DocumentRow:
    ds = store.create_dataset("t", {"name": "ds", "chunk_method": "naive", "parser_config": {}})
    upload = storage.Upload(name, "txt", "doc", io.BytesIO(b"bytes"))
    return store.add_documents(ds, [upload], "t")[0]


def test_connection_pragmas(tmp_path: Path) -> None:
    conn = sqlite_backend.connection(tmp_path / "ragflow.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert sqlite_backend.connection(tmp_path / "ragflow.db") is conn


def test_contract_tables_exist_exactly(tmp_path: Path) -> None:
    conn = sqlite_backend.connection(tmp_path / "ragflow.db")
    columns = {
        table: [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        for table in ("tasks", "executors")
    }
    assert columns["tasks"] == [
        "id", "doc_id", "dataset_id", "state", "attempts", "lease_owner", "lease_expires",
        "enqueued_at", "started_at", "finished_at", "last_error", "tenant_id", "turn",
    ]  # fmt: skip
    assert columns["executors"] == [
        "consumer", "host", "pid", "current_task", "done", "failed", "started_at", "last_beat",
        "state",
    ]  # fmt: skip
    indexes = {r[1] for r in conn.execute("PRAGMA index_list(tasks)")}
    assert {"tasks_ready", "tasks_fair", "tasks_tenant_turn"} <= indexes


def _migrate_in_child(data_dir: str, barrier: Any, results: Any) -> None:
    barrier.wait(timeout=30)
    conn = sqlite_backend.connection(Path(data_dir) / "ragflow.db")
    results.put(conn.execute("PRAGMA user_version").fetchone()[0])


def test_concurrent_first_starts_migrate_exactly_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(6), ctx.Queue()
    procs = [
        ctx.Process(target=_migrate_in_child, args=(str(tmp_path), barrier, results))
        for _ in range(6)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    assert sorted(results.get(timeout=5) for _ in procs) == [len(MIGRATIONS)] * 6
    conn = sqlite3.connect(tmp_path / "ragflow.db")
    assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'tasks'").fetchone() == (
        1,
    )


def test_writers_queue_on_the_writer_lock_and_time_out_naming_the_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every thread's connection has its own handle on the flock, so a second writer waits
    for the first (and gets Unavailable naming the lock and its holder when BUSY_TIMEOUT_MS
    passes), then writes."""
    monkeypatch.setattr(sqlite_backend, "BUSY_TIMEOUT_MS", 300)
    store = SqliteStore(tmp_path)
    outcome: list[str] = []
    release = threading.Event()
    written = threading.Event()

    def other_writer() -> None:
        try:
            store.create_dataset("t", {"name": "second"})
        except storage.Unavailable as exc:
            outcome.append(f"{exc.component}: {exc}")
        release.wait(10)
        store.create_dataset("t", {"name": "third"})
        written.set()
        sqlite_backend.close_all()

    with sqlite_backend.transaction(store.conn) as conn:
        conn.execute("UPDATE datasets SET name = name")
        thread = threading.Thread(target=other_writer)
        thread.start()
        wait_for(lambda: outcome, 5, "the second writer to give up after BUSY_TIMEOUT_MS")
        (message,) = outcome
        assert message.startswith("writes: Writes are blocked: the database writer lock ")
        held = f"ragflow.db.writer-lock was held by pid {os.getpid()} for more than 0.3 s"
        assert held in message
    release.set()
    assert written.wait(10)
    thread.join(10)
    names = {r[0] for r in store.conn.execute("SELECT name FROM datasets")}
    assert names == {"third"}


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    conn = sqlite_backend.connection(tmp_path / "ragflow.db")
    assert migrate(conn) == len(MIGRATIONS)
    assert migrate(conn) == len(MIGRATIONS)


def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    parent = sqlite_backend.connection(tmp_path / "ragflow.db")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's sqlite3 object
        try:
            child = sqlite_backend.connection(tmp_path / "ragflow.db")
            os.write(write, b"new" if child is not parent else b"same")
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"new"
    os.close(read)


def test_replace_document_chunks_in_the_callers_transaction(
    store: SqliteStore, tmp_path: Path
) -> None:
    doc = _doc(store)
    conn = sqlite_backend.connection(tmp_path / "ragflow.db")
    chunks: list[dict[str, Any]] = [
        {"content": "first piece", "token_count": 7, "important_keywords": ["k"]},
        {"content": "second piece"},
        {"content": "first piece"},  # same content: same id, kept once
    ]
    with sqlite_backend.transaction(conn):
        counts = document_state.replace_document_chunks(store.db, conn, doc["id"], chunks)
        assert conn.in_transaction
    assert counts[0] == 2 and counts[1] == 7 + 2
    expected_id = xxhash.xxh64(("first piece" + doc["id"]).encode()).hexdigest()
    rows, total = store.list_chunks(doc["id"], storage.Page())
    assert total == 2 and rows[0]["id"] == expected_id == storage.chunk_id("first piece", doc["id"])
    assert store.get_document(doc["dataset_id"], doc["id"])["chunk_count"] == 2  # type: ignore[index]

    with pytest.raises(RuntimeError), sqlite_backend.transaction(conn):
        document_state.replace_document_chunks(
            store.db, conn, doc["id"], [{"content": "replacement"}]
        )
        raise RuntimeError("the caller fails after replacing")
    assert store.list_chunks(doc["id"], storage.Page())[1] == 2  # rolled back with the caller
    assert store.search_chunks([doc["dataset_id"]], [], ["replacement"], 10) == []


def test_a_disabled_documents_new_chunks_are_not_available(
    store: SqliteStore, tmp_path: Path
) -> None:
    doc = store.update_document(_doc(store), {"status": "0"})
    conn = sqlite_backend.connection(tmp_path / "ragflow.db")
    with sqlite_backend.transaction(conn):
        document_state.replace_document_chunks(
            store.db, conn, doc["id"], [{"content": "hidden words"}]
        )
    assert store.search_chunks([doc["dataset_id"]], [], ["hidden"], 10) == []
    store.update_document(doc, {"status": "1"})
    assert len(store.search_chunks([doc["dataset_id"]], [], ["hidden"], 10)) == 1


def test_fts_index_follows_updates_deletes_and_cascades(store: SqliteStore, tmp_path: Path) -> None:
    doc = _doc(store, "Quarterly Report.txt")
    chunk = store.add_chunk(doc, {"content": "revenue grew"})
    ds = [doc["dataset_id"]]
    assert [r["id"] for r in store.search_chunks(ds, [], ["revenue"], 10)] == [chunk["id"]]
    assert len(store.search_chunks(ds, [], ["quarterly"], 10)) == 1  # the title is indexed
    store.update_chunk(doc["id"], chunk["id"], {"content": "costs fell"})
    assert store.search_chunks(ds, [], ["revenue"], 10) == []
    assert len(store.search_chunks(ds, [], ["costs"], 10)) == 1
    store.update_document(doc, {"name": "Annual Summary.txt"})
    assert store.search_chunks(ds, [], ["quarterly"], 10) == []
    assert len(store.search_chunks(ds, [], ["annual"], 10)) == 1
    store.delete_datasets("t", ds)
    conn = sqlite_backend.connection(tmp_path / "ragflow.db")
    assert conn.execute("SELECT COUNT(*) FROM chunks_fts").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] == 0


class _FailingStream(io.BytesIO):
    def read(self, size: int | None = -1) -> bytes:
        raise OSError("client went away")


def test_an_upload_that_fails_midway_leaves_nothing(store: SqliteStore) -> None:
    ds = store.create_dataset("t", {"name": "ds", "chunk_method": "naive", "parser_config": {}})
    uploads = [
        storage.Upload("ok.txt", "txt", "doc", io.BytesIO(b"fine")),
        storage.Upload("bad.txt", "txt", "doc", _FailingStream()),
    ]
    with pytest.raises(OSError, match="client went away"):
        store.add_documents(ds, uploads, "t")
    assert store.list_documents(ds["id"], storage.DocumentFilter(), storage.Page())[1] == 0
    assert list((store.files.files_dir / ds["id"]).iterdir()) == []
    assert list((store.files.files_dir / ".staging").iterdir()) == []


def test_name_conflicts(store: SqliteStore) -> None:
    a = store.create_dataset("t", {"name": "A"})
    store.create_dataset("t", {"name": "B"})
    with pytest.raises(storage.Conflict, match="Dataset name 'b' already exists"):
        store.update_dataset("t", a["id"], {"name": "b"})
    assert store.create_dataset("other", {"name": "a"})["name"] == "a"


def test_a_deleted_database_is_refused_and_never_recreated(store: SqliteStore) -> None:
    store.create_dataset("t", {"name": "kept"})
    store.db_path.unlink()
    with pytest.raises(storage.Unavailable, match="was deleted while the service was running"):
        store.create_dataset("t", {"name": "lost"})
    sqlite_backend.close_all()  # a new process or thread opens its own connection
    missing = r"is missing but ragflow\.db\.writer-lock shows"
    with pytest.raises(storage.Unavailable, match=missing) as exc:
        store.check()
    assert exc.value.component == "db" and not store.db_path.exists()


def test_a_replaced_database_is_refused_until_the_original_is_back(
    store: SqliteStore,
) -> None:
    store.create_dataset("t", {"name": "kept"})
    saved = store.db_path.with_name("saved.db")
    os.link(store.db_path, saved)
    replacement = store.db_path.with_name("replacement.db")
    replacement.write_bytes(store.db_path.read_bytes())
    os.replace(replacement, store.db_path)
    for attempt in (
        store.check,
        store.check_writes,
        lambda: store.create_dataset("t", {"name": "x"}),
    ):
        with pytest.raises(storage.Unavailable, match="was replaced by another file"):
            attempt()
    os.replace(saved, store.db_path)
    store.check_writes()
    assert [
        d["name"] for d in store.list_datasets("t", storage.Page(), "create_time", False)[0]
    ] == ["kept"]


def test_new_database_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "data"
    store = SqliteStore(data)
    store.create_dataset("t", {"name": "a"})
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in [data, *data.iterdir()]}
    assert modes == {
        "data": "0o700",
        "ragflow.db": "0o600",
        "ragflow.db-wal": "0o600",
        "ragflow.db-shm": "0o600",
        "ragflow.db.writer-lock": "0o600",
    }


def test_writer_lock_probe_answers_fast_and_reports_a_long_hold(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl
    import time

    store.check_writes()
    monkeypatch.setattr(sqlite_backend, "STALL_SECONDS", 0.5)
    with open(f"{store.db_path}.writer-lock", "ab") as other:  # another open file description
        fcntl.flock(other, fcntl.LOCK_EX)
        started = time.monotonic()
        store.check_writes()  # held, but not for long yet
        assert time.monotonic() - started < 1.0
        stamp = Path(f"{store.db_path}.writer-lock.held-since")
        assert stamp.exists()

        def blocked() -> str | None:
            try:
                store.check_writes()
            except storage.Unavailable as exc:
                return str(exc)
            return None

        message = wait_for(blocked, 5, "the probe to report the held lock")
        assert "Writes are blocked" in message and f"pid {os.getpid()}" in message
    store.check_writes()
    assert not stamp.exists()


def test_a_database_restored_while_nothing_has_it_open_is_adopted(
    store: SqliteStore,
) -> None:
    store.create_dataset("t", {"name": "before-backup"})
    backup = store.db_path.with_name("backup.db")
    store.conn.execute(f"VACUUM INTO '{backup}'")
    store.create_dataset("t", {"name": "after-backup"})
    sqlite_backend.close_all()  # the service stops: nothing has the database open any more
    for suffix in ("-wal", "-shm"):
        Path(f"{store.db_path}{suffix}").unlink(missing_ok=True)
    os.replace(backup, store.db_path)  # the operator restores the backup
    listed, _ = store.list_datasets("t", storage.Page(), "create_time", False)
    assert [d["name"] for d in listed] == ["before-backup"]
    store.check_writes()


def test_sqlites_own_lock_held_outside_the_protocol_is_reported_after_a_while(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A program that writes without the writer lock (the sqlite3 shell) holds SQLite's own
    write lock: the probe answers within about half a second and reports it once it lasts."""
    import time

    store.check_writes()
    monkeypatch.setattr(sqlite_backend, "STALL_SECONDS", 0.5)
    shell = sqlite3.connect(store.db_path, isolation_level=None)
    shell.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        store.check_writes()
        assert time.monotonic() - started < 1.0

        def blocked() -> str | None:
            try:
                store.check_writes()
            except storage.Unavailable as exc:
                return str(exc)
            return None

        message = wait_for(blocked, 5, "the probe to report the held database lock")
        assert "has been held by another connection" in message
    finally:
        shell.execute("ROLLBACK")
        shell.close()
    store.check_writes()
