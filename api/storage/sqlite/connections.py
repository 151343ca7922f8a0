"""SQLite connections and locking: one lazily opened connection per process and thread,
private files, the cross-process writer lock (flock) taken before every write transaction, the
database file's identity, and the translation of SQLite's errors into the seam's own."""

from __future__ import annotations

import fcntl
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from api import text
from api.storage import fs
from api.storage.errors import BackendError, Conflict, StorageError, Unavailable
from api.storage.sqlite.fulltext import SqliteImpacts, impacts, reference, terms
from api.storage.sqlite.schema import migrate

BUSY_TIMEOUT_MS = 30_000
PROBE_LOCK_WAIT = 0.25  # seconds healthz waits for the writer lock
STALL_SECONDS = 10.0  # a writer lock seen held this long (by probes) means writes are blocked
PROBE_BUSY_TIMEOUT_MS = 250  # SQLite's own lock wait during the healthz write probe
APPLICATION_ID = 0x52474C54  # "RGLT": what the write probe writes (database header, page 1)
_local = threading.local()


class _Connection(sqlite3.Connection):
    """A connection with its own open file description of the database's writer lock file
    (``<db>.writer-lock``), closed with the connection or when it is garbage collected, and
    the identity (st_dev, st_ino) of the database file it opened, and its ImpactIndex (what it
    remembers of terms lives as long as the connection, across requests)."""

    writer_lock: IO[bytes] | None = None
    path: Path | None = None
    identity: tuple[int, int] | None = None
    impacts: SqliteImpacts | None = None

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
        problem = fs.write_problem(db_path.parent)
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
    return _tokenised(value)


# A chunk trigger splits each column three times (the FTS5 row, the impact index, the term
# counts): the last few columns' words are kept, so they are split once.
@functools.lru_cache(maxsize=16)
def _tokenised(value: str) -> str:
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
    return _words(text.title(value)) if isinstance(value, str) else ""


def _open(db_path: Path) -> sqlite3.Connection:
    try:
        return _open_private(db_path)
    except sqlite3.Error as exc:
        raise translated(exc, db_path) from exc
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
    conn.create_function("rf_impacts", 6, functools.partial(impacts, _words), deterministic=True)
    conn.create_function("rf_reference", 2, reference, deterministic=True)
    conn.create_function("rf_terms", 4, functools.partial(terms, _words), deterministic=True)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    _enable_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")
    # Read pages with read(), not through a memory map: SQLite unmaps the whole file whenever
    # another connection commits (an executor's heartbeat every TASK_HEARTBEAT_SECONDS), and the
    # next search maps and faults in every page again. At 1M chunks a search right after such a
    # write took 61-65% longer than between writes, mapped; 5-18% read, whose searches between
    # writes take 5-22% longer than mapped ones (docs/BENCHMARKS.md, section 11).
    conn.execute("PRAGMA mmap_size = 0")
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


def impact_index(db_path: Path) -> SqliteImpacts:
    """This thread's ImpactIndex (topk.py), over its connection to ``db_path``."""
    conn = connection(db_path)
    if not isinstance(conn, _Connection):
        return SqliteImpacts(conn)
    if conn.impacts is None:
        conn.impacts = SqliteImpacts(conn)
    return conn.impacts


def close_all() -> None:
    cache: dict[tuple[int, Path], sqlite3.Connection] = getattr(_local, "conns", {})
    if getattr(_local, "pid", None) == os.getpid():
        for conn in cache.values():
            conn.close()
    _local.conns = {}


@contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Reads of one state of the database (a read transaction: WAL keeps its snapshot from
    the first read), or of the caller's open transaction."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if conn.in_transaction:  # not ended by an error that rolled it back
            conn.execute("COMMIT")  # the read ends; nothing was written


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
        raise translated(exc, conn.path if isinstance(conn, _Connection) else None) from exc
    finally:
        if lock is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def translated(exc: sqlite3.Error, db_path: Path | None) -> StorageError:
    """The seam's own error for an SQLite error: Unavailable for a storage-level cause,
    Conflict for a violated constraint, BackendError for anything else."""
    cause = _unavailable(exc, db_path)
    if cause is not None:
        return cause
    if isinstance(exc, sqlite3.IntegrityError):
        return Conflict(f"The change conflicts with stored data: {exc}")
    name = str(getattr(exc, "sqlite_errorname", "")) or type(exc).__name__
    where = db_path if db_path is not None else "the database"
    return BackendError(f"The database {where} failed: {exc} ({name}).")


# -- health probes --------------------------------------------------------------------------


def check_read(conn: sqlite3.Connection, query: str) -> None:
    """Raise Unavailable("db") unless ``query`` (a cheap read) answers."""
    path = conn.path if isinstance(conn, _Connection) else None
    try:
        conn.execute(query).fetchone()
    except sqlite3.Error as exc:
        raise _unavailable(exc, path) or Unavailable(
            "db", f"The database {path} cannot be read: {exc}"
        ) from exc


def probe_writes(conn: sqlite3.Connection, data_dir: Path) -> None:
    """A real write (the database header's application_id) under the writer lock, when
    the locks come free within about PROBE_LOCK_WAIT; otherwise how long probes have seen
    them held decides (STALL_SECONDS), so the answer never waits for the 30 s bound."""
    if fs.read_only(data_dir):
        raise Unavailable(
            "writes",
            f"Writes are blocked: {data_dir} is on a read-only file system; remount it read-write.",
        )
    if not isinstance(conn, _Connection) or conn.path is None:
        return  # a connection not opened by this module
    db_path = conn.path
    lock_path = _lock_path(db_path)
    stamp = Path(f"{lock_path}.held-since")
    try:
        lock = _take_writer_lock(conn, PROBE_LOCK_WAIT)
    except Unavailable:
        _stalled(stamp, f"the database writer lock {lock_path}", _holders(lock_path))
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
                raise _unavailable(exc, db_path) or Unavailable(
                    "writes", f"Writes to {db_path} fail: {exc}"
                ) from exc
            # SQLite's own lock, held by a program outside the writer-lock protocol
            _stalled(stamp, f"the database {db_path}", "another connection")
            return
        finally:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        fs.held_since(stamp, busy=False)
    finally:
        if lock is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


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
