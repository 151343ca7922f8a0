"""SQLite backend: per-process lazy connections, safe migrations, and every query."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import xxhash

from api import text
from api.storage import fs
from api.storage.base import (
    Conflict,
    DocumentFilter,
    NotFound,
    Page,
    Row,
    Unavailable,
    Upload,
)
from api.storage.schema import MIGRATIONS

BUSY_TIMEOUT_MS = 30_000
MMAP_SIZE = 1 << 30  # bytes of the database file read through mmap (see _open)
PROBE_LOCK_WAIT = 0.25  # seconds healthz waits for the writer lock
STALL_SECONDS = 10.0  # a writer lock seen held this long (by probes) means writes are blocked
PROBE_BUSY_TIMEOUT_MS = 250  # SQLite's own lock wait during the healthz write probe
APPLICATION_ID = 0x52474C54  # "RGLT": what the write probe writes (database header, page 1)
_local = threading.local()


class _Connection(sqlite3.Connection):
    """A connection with its own open file description of the database's writer lock file
    (``<db>.writer-lock``), closed with the connection or when it is garbage collected, and
    the identity (st_dev, st_ino) of the database file it opened."""

    writer_lock: IO[bytes] | None = None
    path: Path | None = None
    identity: tuple[int, int] | None = None

    def close(self) -> None:
        super().close()
        if self.writer_lock is not None:
            self.writer_lock.close()


def _lock_path(db_path: Path) -> Path:
    return Path(f"{db_path}.writer-lock")


def _holders(path: Path) -> str:
    pids = fs.flock_holders(path)
    return f"pid {', '.join(map(str, pids))}" if pids else "another process"


def _take_writer_lock(conn: sqlite3.Connection, timeout: float | None = None) -> IO[bytes] | None:
    """Wait for the cross-process writer lock (flock) before BEGIN IMMEDIATE.

    SQLite's own busy handler sleeps 1, 2, 5, 10 ... 100 ms between attempts, so with
    write transactions of about a millisecond (a parsed document's chunks) a waiting
    executor or web worker sleeps far longer than the lock is held. Polling the flock
    with sleeps of at most 1 ms hands the lock over promptly and keeps the same
    BUSY_TIMEOUT_MS bound; on timeout, Unavailable("writes") names the lock's holder."""
    if not isinstance(conn, _Connection) or conn.writer_lock is None:
        return None  # a connection not opened by this module
    lock = conn.writer_lock
    if timeout is None:
        timeout = BUSY_TIMEOUT_MS / 1000
    deadline = time.monotonic() + timeout
    delay = 0.00005
    while True:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() >= deadline:
                path = _lock_path(conn.path) if conn.path else Path("writer-lock")
                raise Unavailable(
                    "writes",
                    f"Writes are blocked: the database writer lock {path} was held by "
                    f"{_holders(path)} for more than {timeout:g} s. Stop the process holding "
                    "it; writes resume as soon as it is released.",
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.001)


def _unavailable(exc: sqlite3.Error, db_path: Path | None) -> Unavailable | None:
    """The storage-level cause of an SQLite error, or None for an error of the request."""
    name = str(getattr(exc, "sqlite_errorname", ""))
    where = db_path if db_path is not None else "the database"
    if name == "SQLITE_FULL":
        return Unavailable(
            "writes", f"Writes are blocked: the disk holding {where} is full; free disk space."
        )
    if name.startswith("SQLITE_READONLY"):
        return Unavailable(
            "writes",
            f"Writes are blocked: {where} is read-only ({exc}); remount the file system "
            "read-write or give the service's user write access.",
        )
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return Unavailable(
            "writes",
            f"Writes are blocked: {where} is locked by another connection ({exc}) beyond "
            f"{BUSY_TIMEOUT_MS // 1000} s; stop the program holding it.",
        )
    if name.startswith("SQLITE_IOERR") and db_path is not None:
        # SQLite does not say why; a write next to the database does (read-only, full, ...)
        problem = fs.write_problem(fs.staging_dir(db_path.parent / "files"))
        if problem is not None:
            return Unavailable(
                "writes", f"Writes are blocked: {db_path} cannot be written ({exc}): {problem}."
            )
    if name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_NOTADB", "SQLITE_CORRUPT")):
        return Unavailable("db", f"The database {where} cannot be used: {exc} ({name}).")
    return None


def _identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def check_identity(conn: sqlite3.Connection) -> None:
    """Raise Unavailable("db") when the database file this connection opened is no longer the
    file at its path (deleted, or replaced by another file): nothing is read from or written
    to a file the service no longer stores its data in. The stale connection stays open (the
    old file stays readable through /proc/<pid>/fd until a restart) and answers again if the
    original file comes back to the path (mv'd back)."""
    if not isinstance(conn, _Connection) or conn.path is None or conn.identity is None:
        return
    try:
        now = _identity(conn.path)
    except FileNotFoundError:
        raise Unavailable(
            "db",
            f"The database {conn.path} was deleted while the service was running; nothing more "
            "is written to it. Restore it (see the operations guide) and restart the service.",
        ) from None
    except OSError as exc:
        raise Unavailable("db", f"The database {conn.path} cannot be reached: {exc}") from None
    if now != conn.identity:
        raise Unavailable(
            "db",
            f"The database {conn.path} was replaced by another file while the service was "
            "running; nothing is written to either. Restart the service to use the new file.",
        )


def _words(value: object) -> str:
    if not isinstance(value, str):
        return ""
    prepared: dict[str, str] | None = getattr(_local, "words", None)
    if prepared is not None and (words := prepared.get(value)) is not None:
        return words
    return " ".join(text.tokens(value))


@contextmanager
def words_prepared(values: Iterable[object]) -> Iterator[None]:
    """Tokenise ``values`` for the full-text index now, in this thread, so that the
    rf_words() calls of the chunk triggers in a write transaction opened inside the
    block are look-ups: the write lock, which every executor needs, is held shorter."""
    outer: dict[str, str] = getattr(_local, "words", None) or {}
    _local.words = outer | {
        v: " ".join(text.tokens(v)) for v in values if isinstance(v, str) and v not in outer
    }
    try:
        yield
    finally:
        _local.words = outer or None


def _title(value: object) -> str:
    if not isinstance(value, str):
        return ""
    stem, dot, _ = value.rpartition(".")
    return _words(stem if dot and stem else value)


def _open(db_path: Path) -> sqlite3.Connection:
    try:
        return _open_private(db_path)
    except sqlite3.Error as exc:
        cause = _unavailable(exc, db_path)
        if cause is None:
            raise
        raise cause from exc
    except OSError as exc:
        raise Unavailable(
            "db", f"The database {db_path} cannot be opened: {fs.describe(exc)}"
        ) from exc


def _adopt(db_path: Path, lock_path: Path) -> None:
    """Refuse a database file that replaced another one still open in a process of the
    service: the two would share one WAL and SHM (those go by path), which corrupts the new
    file. The identity of the file in use is recorded in the writer lock file; a file put in
    place while nothing had the previous one open (a restore while stopped) is adopted."""
    identity = _identity(db_path)
    recorded = fs.read_identity(lock_path)
    if recorded == identity:
        return
    if recorded is not None and fs.in_use(recorded):
        raise Unavailable(
            "db",
            f"The database {db_path} was replaced by another file while the service was "
            "running (the previous file is still open in its processes); nothing is written to "
            "either. Restart the service to use the new file.",
        )
    fs.write_identity(lock_path, identity)


def _open_private(db_path: Path) -> sqlite3.Connection:
    """Open the database with every file of it private (0600, DATA_DIR 0700): SQLite gives
    the WAL and SHM files the mode of the database file, which is created here first."""
    fs.private_dir(db_path.parent)
    lock_path = _lock_path(db_path)
    if not db_path.exists() and lock_path.exists():
        raise Unavailable(
            "db",
            f"The database {db_path} is missing but {lock_path.name} shows that one existed: "
            "it was deleted. Restore it from a backup, or remove "
            f"{db_path.name}.writer-lock, {db_path.name}-wal and {db_path.name}-shm to start "
            "with an empty database.",
        )
    fs.create_private(db_path)
    _adopt(db_path, lock_path)
    lock = os.fdopen(fs.open_private(lock_path, os.O_WRONLY | os.O_APPEND), "ab")
    try:
        conn = sqlite3.connect(
            db_path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=True,
            factory=_Connection,
        )
    except BaseException:
        lock.close()
        raise
    conn.writer_lock = lock  # lives (and closes) with the connection
    conn.path = db_path
    conn.identity = _identity(db_path)
    conn.row_factory = sqlite3.Row
    conn.create_function("rf_words", 1, _words, deterministic=True)
    conn.create_function("rf_title", 1, _title, deterministic=True)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    _enable_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")
    # Read the database through a shared memory map rather than copying pages into each
    # connection's 2 MB cache: retrieval touches thousands of scattered chunk pages per query.
    # The mapped pages are the OS page cache, shared by every process (reads only; SQLite
    # still writes with write()); the size is an upper bound, mapped as the file grows.
    conn.execute(f"PRAGMA mmap_size = {MMAP_SIZE}")
    migrate(conn)
    for suffix in ("-wal", "-shm"):  # files created by an older version, or with a wide umask
        fs.private_file(Path(f"{db_path}{suffix}"))
    return conn


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch a new database to WAL, retrying while other processes race to do the same.

    Two connections that both read the header and then ask for the exclusive lock deadlock,
    and SQLite answers one of them SQLITE_BUSY at once instead of calling the busy handler."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorname != "SQLITE_BUSY" or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; safe when several processes do it at once."""
    if conn.execute("PRAGMA user_version").fetchone()[0] >= len(MIGRATIONS):
        return len(MIGRATIONS)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        for number in range(version, len(MIGRATIONS)):
            for statement in _statements(MIGRATIONS[number]):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return len(MIGRATIONS)


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements (sqlite3.complete_statement knows about triggers)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--") and not pending.strip():
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {pending.strip()[:80]}")


def connection(db_path: Path) -> sqlite3.Connection:
    """This process's and thread's connection to ``db_path``, opened on first use.

    Cached per pid, so a forked child never reuses its parent's connection."""
    cache: dict[tuple[int, Path], sqlite3.Connection] | None = getattr(_local, "conns", None)
    pid = os.getpid()
    if cache is None or getattr(_local, "pid", None) != pid:
        cache = {}  # inherited from the parent across fork: never touch those connections
        _local.conns = cache
        _local.pid = pid
    conn = cache.get((pid, db_path))
    if conn is None:
        conn = _open(db_path)
        cache[(pid, db_path)] = conn
    else:
        check_identity(conn)
    return conn


def close_all() -> None:
    cache: dict[tuple[int, Path], sqlite3.Connection] = getattr(_local, "conns", {})
    if getattr(_local, "pid", None) == os.getpid():
        for conn in cache.values():
            conn.close()
    _local.conns = {}


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (BEGIN IMMEDIATE), or a savepoint inside the caller's."""
    if conn.in_transaction:
        conn.execute("SAVEPOINT storage_op")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK TO storage_op")
            conn.execute("RELEASE storage_op")
            raise
        conn.execute("RELEASE storage_op")
        return
    lock = _take_writer_lock(conn)
    try:
        check_identity(conn)  # under the lock: no write reaches a deleted or replaced file
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        conn.commit()
    except sqlite3.Error as exc:
        cause = _unavailable(exc, conn.path if isinstance(conn, _Connection) else None)
        if cause is None:
            raise
        raise cause from exc
    finally:
        if lock is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def chunk_id(content: str, doc_id: str) -> str:
    return xxhash.xxh64((content + doc_id).encode("utf-8")).hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)


def _json_list(value: Any) -> str:
    return json.dumps(list(value) if isinstance(value, list | tuple) else [], ensure_ascii=False)


def _refresh_counts(conn: sqlite3.Connection, doc_id: str) -> tuple[int, int]:
    row = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(token_count), 0) FROM chunks WHERE doc_id = ?", (doc_id,)
    ).fetchone()
    counts = (int(row[0]), int(row[1]))
    conn.execute(
        "UPDATE documents SET chunk_count = ?, token_count = ? WHERE id = ?", (*counts, doc_id)
    )
    return counts


def replace_document_chunks(
    conn: sqlite3.Connection, doc_id: str, chunks: Sequence[Mapping[str, Any]]
) -> tuple[int, int]:
    """Replace every chunk of ``doc_id`` inside the caller's transaction.

    Each chunk: ``content`` (str), optional ``important_keywords``, ``questions``,
    ``positions`` (lists), ``available`` (bool; a disabled document's chunks are never
    available), ``token_count`` (int; counted with api.text when absent). Identical
    contents collapse into one chunk (same id). Updates the document's
    chunk_count/token_count and returns them."""
    doc = conn.execute(
        "SELECT dataset_id, name, status FROM documents WHERE id = ?", (doc_id,)
    ).fetchone()
    if doc is None:
        raise NotFound(f"Document {doc_id} does not exist")
    conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
    created = time.time()
    for chunk in chunks:
        content = str(chunk.get("content", ""))
        tokens = chunk.get("token_count")
        conn.execute(
            "INSERT OR IGNORE INTO chunks (id, doc_id, dataset_id, docnm, content,"
            " important_keywords, questions, available, positions, token_count, create_time)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                chunk_id(content, doc_id),
                doc_id,
                doc["dataset_id"],
                doc["name"],
                content,
                _json_list(chunk.get("important_keywords")),
                _json_list(chunk.get("questions")),
                1 if chunk.get("available", True) and doc["status"] == "1" else 0,
                _json_list(chunk.get("positions")),
                int(tokens) if isinstance(tokens, int) else text.count_tokens(content),
                created,
            ),
        )
    return _refresh_counts(conn, doc_id)


_DATASET_SELECT = (
    "SELECT d.*, (SELECT COUNT(*) FROM documents WHERE dataset_id = d.id) AS document_count,"
    " (SELECT COALESCE(SUM(chunk_count), 0) FROM documents WHERE dataset_id = d.id)"
    " AS chunk_count,"
    " (SELECT COALESCE(SUM(token_count), 0) FROM documents WHERE dataset_id = d.id) AS token_num"
    " FROM datasets d"
)
_DATASET_COLUMNS = (
    "name",
    "avatar",
    "description",
    "embedding_model",
    "permission",
    "chunk_method",
    "parser_config",
    "pagerank",
)
_DOCUMENT_COLUMNS = ("name", "chunk_method", "parser_config", "meta_fields", "status")
_CHUNK_COLUMNS = ("content", "important_keywords", "questions", "available", "positions")
_JSON_COLUMNS = frozenset(
    {"parser_config", "meta_fields", "important_keywords", "questions", "positions"}
)


def _row(row: sqlite3.Row | None) -> Row | None:
    if row is None:
        return None
    out: Row = {}
    for key in row.keys():  # noqa: SIM118 (sqlite3.Row has no __iter__ over keys)
        value = row[key]
        out[key] = json.loads(value) if key in _JSON_COLUMNS and isinstance(value, str) else value
    return out


def _json_list_value(raw: str) -> Any:
    return [] if raw == "[]" else json.loads(raw)  # most chunks have no keywords/questions


def _rows(rows: Iterable[sqlite3.Row]) -> list[Row]:
    return [r for r in (_row(x) for x in rows) if r is not None]


def _encode(column: str, value: Any) -> Any:
    if column in _JSON_COLUMNS:
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return int(value)
    return value


def _like(value: str) -> str:
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _fts_query(terms: Sequence[str]) -> str:
    return " OR ".join(f'"{t}"' for t in terms)


_FTS_ROWIDS = "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?"


class SqliteStorage:
    """The Storage interface on one SQLite file under DATA_DIR."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.db_path = data_dir / "ragflow.db"
        self.files_dir = data_dir / "files"

    @property
    def conn(self) -> sqlite3.Connection:
        return connection(self.db_path)

    def check(self) -> None:
        try:
            self.conn.execute("SELECT 1 FROM datasets LIMIT 1").fetchone()
        except sqlite3.Error as exc:
            raise _unavailable(exc, self.db_path) or Unavailable(
                "db", f"The database {self.db_path} cannot be read: {exc}"
            ) from exc

    def check_writes(self) -> None:
        """A real write (the database header's application_id) under the writer lock, when
        the locks come free within about PROBE_LOCK_WAIT; otherwise how long probes have seen
        them held decides (STALL_SECONDS), so the answer never waits for the 30 s bound."""
        if fs.read_only(self.data_dir):
            raise Unavailable(
                "writes",
                f"Writes are blocked: {self.data_dir} is on a read-only file system; remount "
                "it read-write.",
            )
        conn = self.conn
        lock_path = _lock_path(self.db_path)
        stamp = Path(f"{lock_path}.held-since")
        try:
            lock = _take_writer_lock(conn, PROBE_LOCK_WAIT)
        except Unavailable:
            self._stalled(stamp, f"the database writer lock {lock_path}", _holders(lock_path))
            return
        try:
            check_identity(conn)
            conn.execute(f"PRAGMA busy_timeout = {PROBE_BUSY_TIMEOUT_MS}")
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.commit()
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.rollback()
                if not str(getattr(exc, "sqlite_errorname", "")).startswith("SQLITE_BUSY"):
                    raise _unavailable(exc, self.db_path) or Unavailable(
                        "writes", f"Writes to {self.db_path} fail: {exc}"
                    ) from exc
                # SQLite's own lock, held by a program outside the writer-lock protocol
                self._stalled(stamp, f"the database {self.db_path}", "another connection")
                return
            finally:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            fs.held_since(stamp, busy=False)
        finally:
            if lock is not None:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _stalled(stamp: Path, what: str, holder: str) -> None:
        """A probe found ``what`` locked: fine for a while (a big transaction), Unavailable
        once probes have seen it held for STALL_SECONDS."""
        since = fs.held_since(stamp, busy=True)
        held = 0.0 if since is None else time.time() - since
        if held >= STALL_SECONDS:
            raise Unavailable(
                "writes",
                f"Writes are blocked: {what} has been held by {holder} for {held:.0f} s "
                f"(writes give up after {BUSY_TIMEOUT_MS // 1000} s). Stop the process holding "
                "it; writes resume as soon as it is released.",
            )

    def check_files(self) -> None:
        fs.probe_write(fs.staging_dir(self.files_dir))

    def free_bytes(self) -> int:
        return fs.free_bytes(self.data_dir)

    def sweep_staging(self) -> int:
        return fs.sweep(self.files_dir)

    # keys ----------------------------------------------------------------------------
    def add_key(self, key_hash: str, prefix: str, tenant_id: str, name: str) -> None:
        with transaction(self.conn) as c:
            c.execute(
                "INSERT INTO api_keys (key_hash, prefix, tenant_id, name, create_time)"
                " VALUES (?, ?, ?, ?, ?)",
                (key_hash, prefix, tenant_id, name, now_ms()),
            )

    def key_tenant(self, key_hash: str) -> str | None:
        row = self.conn.execute(
            "SELECT key_hash, tenant_id FROM api_keys WHERE key_hash = ? AND revoked_time IS NULL",
            (key_hash,),
        ).fetchone()
        return None if row is None else str(row["tenant_id"])

    def list_keys(self) -> list[Row]:
        return _rows(
            self.conn.execute(
                "SELECT prefix, tenant_id, name, create_time, revoked_time FROM api_keys"
                " ORDER BY create_time"
            )
        )

    def revoke_keys(self, prefix: str) -> int:
        with transaction(self.conn) as c:
            cur = c.execute(
                "UPDATE api_keys SET revoked_time = ? WHERE revoked_time IS NULL"
                " AND (substr(key_hash, 1, length(?)) = ? OR prefix = ?)",
                (now_ms(), prefix, prefix, prefix),
            )
            return cur.rowcount

    # datasets ------------------------------------------------------------------------
    def create_dataset(self, tenant_id: str, fields: Mapping[str, Any]) -> Row:
        dataset_id = uuid.uuid1().hex
        now = now_ms()
        with transaction(self.conn) as c:
            base = str(fields["name"])
            name = base
            for n in range(1, 10_000):
                if not c.execute(
                    "SELECT 1 FROM datasets WHERE tenant_id = ? AND name = ? COLLATE NOCASE",
                    (tenant_id, name),
                ).fetchone():
                    break
                name = f"{base}({n})"
            values = {col: _encode(col, fields[col]) for col in _DATASET_COLUMNS if col in fields}
            values["name"] = name
            columns = ["id", "tenant_id", "create_time", "update_time", *values]
            c.execute(
                f"INSERT INTO datasets ({', '.join(columns)})"
                f" VALUES ({', '.join('?' * len(columns))})",
                (dataset_id, tenant_id, now, now, *values.values()),
            )
        found = self.get_dataset(tenant_id, dataset_id)
        if found is None:
            raise NotFound(f"Dataset {dataset_id} vanished after creation")
        return found

    def get_dataset(self, tenant_id: str, dataset_id: str) -> Row | None:
        return _row(
            self.conn.execute(
                f"{_DATASET_SELECT} WHERE d.tenant_id = ? AND d.id = ?", (tenant_id, dataset_id)
            ).fetchone()
        )

    def dataset_named(self, tenant_id: str, name: str) -> Row | None:
        return _row(
            self.conn.execute(
                f"{_DATASET_SELECT} WHERE d.tenant_id = ? AND d.name = ? COLLATE NOCASE",
                (tenant_id, name),
            ).fetchone()
        )

    def list_datasets(
        self,
        tenant_id: str,
        page: Page,
        orderby: str,
        desc: bool,
        dataset_id: str | None = None,
        name: str | None = None,
    ) -> tuple[list[Row], int]:
        where, args = ["d.tenant_id = ?"], [tenant_id]
        if dataset_id:
            where.append("d.id = ?")
            args.append(dataset_id)
        if name:
            where.append("d.name = ? COLLATE NOCASE")
            args.append(name)
        clause = " AND ".join(where)
        total = self.conn.execute(
            f"SELECT COUNT(*) FROM datasets d WHERE {clause}", args
        ).fetchone()[0]
        order = "update_time" if orderby == "update_time" else "create_time"
        direction = "DESC" if desc else "ASC"  # ties: insertion order, same direction
        rows = self.conn.execute(
            f"{_DATASET_SELECT} WHERE {clause} ORDER BY d.{order} {direction},"
            f" d.rowid {direction} LIMIT ? OFFSET ?",
            (*args, page.size, page.offset),
        )
        return _rows(rows), int(total)

    def update_dataset(self, tenant_id: str, dataset_id: str, changes: Mapping[str, Any]) -> Row:
        with transaction(self.conn) as c:
            if "name" in changes:
                clash = c.execute(
                    "SELECT 1 FROM datasets WHERE tenant_id = ? AND name = ? COLLATE NOCASE"
                    " AND id != ?",
                    (tenant_id, changes["name"], dataset_id),
                ).fetchone()
                if clash:
                    raise Conflict(f"Dataset name '{changes['name']}' already exists")
            values = {col: _encode(col, changes[col]) for col in _DATASET_COLUMNS if col in changes}
            sets = ", ".join(f"{col} = ?" for col in values)
            cur = c.execute(
                f"UPDATE datasets SET {sets}{', ' if sets else ''}update_time = ?"
                " WHERE tenant_id = ? AND id = ?",
                (*values.values(), now_ms(), tenant_id, dataset_id),
            )
            if cur.rowcount != 1:
                raise NotFound(dataset_id)
        found = self.get_dataset(tenant_id, dataset_id)
        if found is None:
            raise NotFound(dataset_id)
        return found

    def delete_datasets(self, tenant_id: str, dataset_ids: Sequence[str]) -> int:
        """Delete the datasets (with documents, chunks, tasks, files) in one transaction."""
        with transaction(self.conn) as c:
            deleted = 0
            for dataset_id in dataset_ids:
                deleted += c.execute(
                    "DELETE FROM datasets WHERE tenant_id = ? AND id = ?", (tenant_id, dataset_id)
                ).rowcount
        for dataset_id in dataset_ids:
            shutil.rmtree(self.files_dir / dataset_id, ignore_errors=True)
        return deleted

    def tenant_dataset_ids(self, tenant_id: str) -> list[str]:
        rows = self.conn.execute("SELECT id FROM datasets WHERE tenant_id = ?", (tenant_id,))
        return [str(r[0]) for r in rows]

    # documents -----------------------------------------------------------------------
    def file_path(self, document: Mapping[str, Any]) -> Path:
        return self.files_dir / str(document["dataset_id"]) / str(document["id"])

    def add_documents(
        self, dataset: Mapping[str, Any], uploads: Sequence[Upload], created_by: str
    ) -> list[Row]:
        """Store the files and their rows together: all of them, or none."""
        folder = self.files_dir / str(dataset["id"])
        written: list[Path] = []  # every file this call created; removed if anything fails
        held: list[IO[bytes]] = []  # staged files stay open and flocked until renamed (fs.sweep)
        ids: list[str] = []
        try:
            with self._storing():
                fs.private_dir(folder)
            staged: list[tuple[Path, int]] = []
            for upload in uploads:
                with self._storing():
                    tmp, out = fs.stage(self.files_dir)
                held.append(out)
                written.append(tmp)
                staged.append((tmp, self._copy(upload.stream, out)))
            with transaction(self.conn) as c:
                for upload, (tmp, size) in zip(uploads, staged, strict=True):
                    doc_id = uuid.uuid1().hex
                    name = _free_name(c, str(dataset["id"]), upload.name)
                    now = now_ms()
                    c.execute(
                        "INSERT INTO documents (id, dataset_id, name, suffix, type, size,"
                        " location, created_by, chunk_method, parser_config, create_time,"
                        " update_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            doc_id,
                            dataset["id"],
                            name,
                            upload.suffix,
                            upload.file_type,
                            size,
                            name,
                            created_by,
                            upload.chunk_method or dataset["chunk_method"],
                            json.dumps(dataset["parser_config"], ensure_ascii=False),
                            now,
                            now,
                        ),
                    )
                    final = folder / doc_id
                    written.append(final)
                    with self._storing():
                        os.replace(tmp, final)
                    ids.append(doc_id)
        except BaseException:
            _remove(written)
            raise
        finally:
            for out in held:
                out.close()
        return [d for d in (self.get_document(str(dataset["id"]), i) for i in ids) if d]

    @contextmanager
    def _storing(self) -> Iterator[None]:
        """A file-system error while storing an upload is the storage's, not the request's."""
        try:
            yield
        except OSError as exc:
            raise Unavailable(
                "storage", f"Storing the upload under {self.files_dir} failed: {fs.describe(exc)}"
            ) from exc

    def _copy(self, stream: IO[bytes], out: IO[bytes]) -> int:
        """Copy an upload into its staged file: errors reading ``stream`` (the client) pass
        through, errors writing are Unavailable("storage")."""
        size = 0
        while block := stream.read(1024 * 1024):
            with self._storing():
                out.write(block)
            size += len(block)
        with self._storing():
            out.flush()
            os.fsync(out.fileno())
        return size

    def get_document(self, dataset_id: str, doc_id: str) -> Row | None:
        return _row(
            self.conn.execute(
                "SELECT * FROM documents WHERE dataset_id = ? AND id = ?", (dataset_id, doc_id)
            ).fetchone()
        )

    def document_named(self, dataset_id: str, name: str) -> Row | None:
        return _row(
            self.conn.execute(
                "SELECT * FROM documents WHERE dataset_id = ? AND name = ?", (dataset_id, name)
            ).fetchone()
        )

    def list_documents(
        self, dataset_id: str, flt: DocumentFilter, page: Page
    ) -> tuple[list[Row], int]:
        where, args = ["dataset_id = ?"], [dataset_id]
        if flt.keywords:
            where.append("name LIKE ? ESCAPE '\\'")
            args.append(_like(flt.keywords))
        if flt.doc_id:
            where.append("id = ?")
            args.append(flt.doc_id)
        if flt.name:
            where.append("name = ?")
            args.append(flt.name)
        if flt.suffixes:
            where.append(f"suffix IN ({', '.join('?' * len(flt.suffixes))})")
            args.extend(flt.suffixes)
        if flt.runs:
            where.append(f"run IN ({', '.join('?' * len(flt.runs))})")
            args.extend(flt.runs)
        if flt.create_time_from:
            where.append("create_time >= ?")
            args.append(str(flt.create_time_from))
        if flt.create_time_to:
            where.append("create_time <= ?")
            args.append(str(flt.create_time_to))
        clause = " AND ".join(where)
        total = self.conn.execute(f"SELECT COUNT(*) FROM documents WHERE {clause}", args)
        order = flt.orderby if flt.orderby in ("update_time", "name", "size") else "create_time"
        direction = "DESC" if flt.desc else "ASC"  # ties: insertion order, same direction
        rows = self.conn.execute(
            f"SELECT * FROM documents WHERE {clause} ORDER BY {order} {direction},"
            f" rowid {direction} LIMIT ? OFFSET ?",
            (*args, page.size, page.offset),
        )
        return _rows(rows), int(total.fetchone()[0])

    def update_document(
        self, doc: Mapping[str, Any], changes: Mapping[str, Any], reset: bool = False
    ) -> Row:
        """Apply ``changes``; ``reset`` also drops the chunks and sets the document UNSTART."""
        doc_id = str(doc["id"])
        with transaction(self.conn) as c:
            if (
                "name" in changes
                and c.execute(
                    "SELECT 1 FROM documents WHERE dataset_id = ? AND name = ? AND id != ?",
                    (doc["dataset_id"], changes["name"], doc_id),
                ).fetchone()
            ):
                raise Conflict("Duplicated document name in the same dataset.")
            values = {
                col: _encode(col, changes[col]) for col in _DOCUMENT_COLUMNS if col in changes
            }
            if "name" in values:
                values["location"] = values["name"]
                c.execute("UPDATE chunks SET docnm = ? WHERE doc_id = ?", (values["name"], doc_id))
            if reset:
                replace_document_chunks(c, doc_id, [])
                c.execute(
                    "UPDATE tasks SET state = 'cancelled', finished_at = ?, lease_owner = NULL,"
                    " lease_expires = NULL, last_error = 'chunk method changed'"
                    " WHERE doc_id = ? AND state IN ('queued', 'leased')",
                    (time.time(), doc_id),
                )
                values.update(run="0", progress=0, progress_msg="", process_duration=0)
            if "status" in values:
                c.execute(
                    "UPDATE chunks SET available = ? WHERE doc_id = ?",
                    (int(values["status"]), doc_id),
                )
            sets = "".join(f"{col} = ?, " for col in values)
            c.execute(
                f"UPDATE documents SET {sets}update_time = ? WHERE id = ?",
                (*values.values(), now_ms(), doc_id),
            )
        found = self.get_document(str(doc["dataset_id"]), doc_id)
        if found is None:
            raise NotFound(doc_id)
        return found

    def delete_documents(self, dataset_id: str, doc_ids: Sequence[str]) -> list[str]:
        """Delete the documents that exist; returns the ids that did not."""
        missing: list[str] = []
        with transaction(self.conn) as c:
            for doc_id in doc_ids:
                cur = c.execute(
                    "DELETE FROM documents WHERE dataset_id = ? AND id = ?", (dataset_id, doc_id)
                )
                if cur.rowcount == 0:
                    missing.append(doc_id)
        for doc_id in doc_ids:
            if doc_id not in missing:
                (self.files_dir / dataset_id / doc_id).unlink(missing_ok=True)
        return missing

    def document_ids(self, dataset_id: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT id FROM documents WHERE dataset_id = ? ORDER BY create_time", (dataset_id,)
        )
        return [str(r[0]) for r in rows]

    # chunks --------------------------------------------------------------------------
    def list_chunks(
        self, doc_id: str, page: Page, keywords: str = "", chunk: str = ""
    ) -> tuple[list[Row], int]:
        where, args = ["c.doc_id = ?"], [doc_id]
        if chunk:
            where.append("c.id = ?")
            args.append(chunk)
        terms = text.query_terms(keywords) if keywords else []
        if terms:
            # The full-text query runs once, as a list subquery; joined to chunks, SQLite
            # would run it again for every chunk of the document (seconds per request).
            # The chunk content only, as RAGFlow's list filter (not the document name).
            where.append(f"c.seq IN ({_FTS_ROWIDS})")
            args.append(f"content : ({_fts_query(terms)})")
        clause = " AND ".join(where)
        total = self.conn.execute(f"SELECT COUNT(*) FROM chunks c WHERE {clause}", args)
        rows = self.conn.execute(
            f"SELECT c.* FROM chunks c WHERE {clause} ORDER BY c.seq LIMIT ? OFFSET ?",
            (*args, page.size, page.offset),
        )
        return _rows(rows), int(total.fetchone()[0])

    def get_chunk(self, doc_id: str, chunk: str) -> Row | None:
        return _row(
            self.conn.execute(
                "SELECT * FROM chunks WHERE doc_id = ? AND id = ?", (doc_id, chunk)
            ).fetchone()
        )

    def add_chunk(self, doc: Mapping[str, Any], fields: Mapping[str, Any]) -> Row:
        doc_id = str(doc["id"])
        content = str(fields["content"])
        new_id = chunk_id(content, doc_id)
        with transaction(self.conn) as c:
            if c.execute("SELECT 1 FROM chunks WHERE id = ?", (new_id,)).fetchone():
                raise Conflict(f"Chunk {new_id} with the same content already exists")
            c.execute(
                "INSERT INTO chunks (id, doc_id, dataset_id, docnm, content, important_keywords,"
                " questions, available, token_count, create_time)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new_id,
                    doc_id,
                    doc["dataset_id"],
                    doc["name"],
                    content,
                    _json_list(fields.get("important_keywords")),
                    _json_list(fields.get("questions")),
                    1 if str(doc.get("status", "1")) == "1" else 0,
                    text.count_tokens(content),
                    time.time(),
                ),
            )
            _refresh_counts(c, doc_id)
        found = self.get_chunk(doc_id, new_id)
        if found is None:
            raise NotFound(new_id)
        return found

    def update_chunk(self, doc_id: str, chunk: str, changes: Mapping[str, Any]) -> Row:
        values = {col: _encode(col, changes[col]) for col in _CHUNK_COLUMNS if col in changes}
        if "content" in values:
            values["token_count"] = text.count_tokens(str(values["content"]))
        with transaction(self.conn) as c:
            if values:
                sets = ", ".join(f"{col} = ?" for col in values)
                cur = c.execute(
                    f"UPDATE chunks SET {sets} WHERE doc_id = ? AND id = ?",
                    (*values.values(), doc_id, chunk),
                )
                if cur.rowcount != 1:
                    raise NotFound(chunk)
            _refresh_counts(c, doc_id)
        found = self.get_chunk(doc_id, chunk)
        if found is None:
            raise NotFound(chunk)
        return found

    def delete_chunks(self, doc_id: str, chunk_ids: Sequence[str] | None) -> int:
        with transaction(self.conn) as c:
            if chunk_ids is None:
                deleted = c.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,)).rowcount
            else:
                deleted = sum(
                    c.execute(
                        "DELETE FROM chunks WHERE doc_id = ? AND id = ?", (doc_id, cid)
                    ).rowcount
                    for cid in chunk_ids
                )
            _refresh_counts(c, doc_id)
        return deleted

    def search_chunks(
        self,
        dataset_ids: Sequence[str],
        doc_ids: Sequence[str],
        terms: Sequence[str],
        limit: int,
    ) -> list[Row]:
        """Available chunks matching any term, best BM25 first (content < title < keywords
        < questions in weight), at most ``limit``: only the columns retrieval scores on
        (id, doc_id, docnm, content, important_keywords, questions) and bm25."""
        if not terms or not dataset_ids:
            return []
        where = [
            "chunks_fts MATCH ?",
            "c.available = 1",
            f"c.dataset_id IN ({', '.join('?' * len(dataset_ids))})",
        ]
        args: list[Any] = [_fts_query(terms), *dataset_ids]
        if doc_ids:
            where.append(f"c.doc_id IN ({', '.join('?' * len(doc_ids))})")
            args.extend(doc_ids)
        cursor = self.conn.cursor()
        cursor.row_factory = None  # plain tuples: cheaper than sqlite3.Row for many rows
        rows = cursor.execute(
            "SELECT c.id, c.doc_id, c.docnm, c.content, c.important_keywords, c.questions,"
            " bm25(chunks_fts, 1.0, 2.0, 3.0, 4.0) AS bm25 FROM chunks_fts"
            f" JOIN chunks c ON c.seq = chunks_fts.rowid WHERE {' AND '.join(where)}"
            " ORDER BY bm25 LIMIT ?",
            (*args, limit),
        )
        return [
            {
                "id": chunk,
                "doc_id": doc_id,
                "docnm": docnm,
                "content": content,
                "important_keywords": _json_list_value(keywords),
                "questions": _json_list_value(questions),
                "bm25": bm25,
            }
            for chunk, doc_id, docnm, content, keywords, questions, bm25 in rows
        ]

    def chunks_by_id(self, chunk_ids: Sequence[str]) -> dict[str, Row]:
        """The chunks with these ids, by id (ids that no longer exist are absent)."""
        if not chunk_ids:
            return {}
        rows = self.conn.execute(
            f"SELECT * FROM chunks WHERE id IN ({', '.join('?' * len(chunk_ids))})",
            tuple(chunk_ids),
        )
        return {str(r["id"]): r for r in _rows(rows)}

    def documents_in(self, dataset_ids: Sequence[str]) -> set[str]:
        if not dataset_ids:
            return set()
        rows = self.conn.execute(
            f"SELECT id FROM documents WHERE dataset_id IN ({', '.join('?' * len(dataset_ids))})",
            tuple(dataset_ids),
        )
        return {str(r[0]) for r in rows}


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def _free_name(conn: sqlite3.Connection, dataset_id: str, name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    candidate = name
    for n in range(1, 100_000):
        if not conn.execute(
            "SELECT 1 FROM documents WHERE dataset_id = ? AND name = ?", (dataset_id, candidate)
        ).fetchone():
            return candidate
        candidate = f"{stem}({n}).{ext}" if dot else f"{stem}({n})"
    raise Conflict(f"Too many documents named {name!r}")
