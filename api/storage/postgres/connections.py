"""PostgreSQL connections: one pool per process (opened lazily after fork, never inherited),
transactions that nest on the thread's current connection, the session limits that keep a
frozen client from blocking the others, and the translation of driver errors into the seam's.

A URL's password never reaches a message: messages name the host, port and database only."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from api.storage.base import PoolSettings
from api.storage.errors import BackendError, Conflict, StorageError, Unavailable
from api.storage.postgres.schema import migrate

_pools: dict[tuple[int, str, PoolSettings], ConnectionPool[Any]] = {}
_inherited: list[Any] = []  # a parent's pools: kept, never used nor closed
_pools_lock = threading.Lock()
_local = threading.local()


def _after_fork() -> None:
    # Closing (or garbage-collecting) a parent's connections in the child would send the
    # server a Terminate on sockets the parent still uses: keep them referenced, unused.
    _inherited.extend(_pools.values())
    _inherited.extend(_local.__dict__.get("listeners", {}).values())
    _inherited.extend(_local.__dict__.get("current", {}).values())
    _pools.clear()
    global _pools_lock
    _pools_lock = threading.Lock()
    _local.__dict__.clear()


os.register_at_fork(after_in_child=_after_fork)


def where(url: str) -> str:
    """host:port/database of ``url``, for messages: never the user's password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return "the PostgreSQL database"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def _configure(options: PoolSettings) -> Callable[[psycopg.Connection[Any]], None]:
    """Every pooled session's limits: a statement running past DB_STATEMENT_TIMEOUT_MS is
    cancelled; one waiting DB_LOCK_TIMEOUT_MS for a row or table lock gives up
    (Unavailable("writes")); a session idle DB_IDLE_IN_TRANSACTION_TIMEOUT_MS inside a
    transaction (a frozen or stopped client) is ended by the server, its locks released: a
    stuck process never blocks the others for longer. JIT compilation is off: it compiled each
    retrieval statement that ranks many chunks anew, 25-30 ms a time (at 1M chunks), more than
    it saved."""

    def configure(conn: psycopg.Connection[Any]) -> None:
        conn.autocommit = True
        migrate(conn)  # a version check once the schema is current
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false),"
            " set_config('lock_timeout', %s, false),"
            " set_config('idle_in_transaction_session_timeout', %s, false),"
            " set_config('jit', 'off', false)",
            (
                str(options.statement_timeout_ms),
                str(min(options.lock_timeout_ms, options.statement_timeout_ms)),
                str(options.idle_in_transaction_timeout_ms),
            ),
        )

    return configure


def pool(url: str, options: PoolSettings) -> ConnectionPool[Any]:
    """This process's pool for ``url``, opened on first use (after any fork)."""
    key = (os.getpid(), url, options)
    found = _pools.get(key)
    if found is not None:
        return found
    with _pools_lock:
        found = _pools.get(key)
        if found is None:
            found = ConnectionPool(
                url,
                min_size=1,
                max_size=max(options.size, 1),
                kwargs={
                    "connect_timeout": max(int(options.connect_timeout), 1),
                    "row_factory": dict_row,
                    "application_name": "ragflow-bundle",
                },
                configure=_configure(options),
                # a connection is checked (one round trip) before it is handed out, so the
                # first request after a server restart gets a new one instead of failing
                check=ConnectionPool.check_connection,
                timeout=options.connect_timeout,
                reconnect_timeout=0,  # a failed attempt gives up; the next request tries anew
                open=False,
                name=f"ragflow-{os.getpid()}",
            )
            found.open(wait=False)
            _pools[key] = found
    return found


def listener(url: str, options: PoolSettings, channel: str) -> psycopg.Connection[Any]:
    """This process's and thread's connection that LISTENs on ``channel`` (opened on first use,
    outside the pool: it stays idle between notifications)."""
    key = (os.getpid(), url, channel)
    conns: dict[tuple[int, str, str], psycopg.Connection[Any]] = _local.__dict__.setdefault(
        "listeners", {}
    )
    conn = conns.get(key)
    if conn is None or conn.closed:
        try:
            conn = psycopg.connect(
                url,
                autocommit=True,
                connect_timeout=max(int(options.connect_timeout), 1),
                application_name="ragflow-bundle-listen",
            )
        except psycopg.OperationalError as exc:
            raise translated(exc, url) from None
        conn.execute(f"LISTEN {channel}")
        conns[key] = conn
    return conn


def drop_listener(url: str, channel: str) -> None:
    conns = _local.__dict__.get("listeners", {})
    conn = conns.pop((os.getpid(), url, channel), None)
    if conn is not None:
        conn.close()


def close_pools(url: str) -> None:
    """Close this process's pools of ``url`` (a process done with that database)."""
    with _pools_lock:
        for key in [k for k in _pools if k[0] == os.getpid() and k[1] == url]:
            _pools.pop(key).close()


def release_thread() -> None:
    """A thread that ends: its connections went back to the process's pool after each
    operation; forget any transaction it left (the pool serves the other threads on) and
    close its LISTEN connections."""
    for conn in _local.__dict__.get("listeners", {}).values():
        conn.close()
    _local.__dict__.clear()


@contextmanager
def connection(url: str, options: PoolSettings) -> Iterator[psycopg.Connection[Any]]:
    """The thread's connection of the current transaction, or one from the pool."""
    current = _current().get(url)
    if current is not None:
        yield current
        return
    try:
        with pool(url, options).connection() as conn:
            yield conn
    except PoolTimeout as exc:
        raise Unavailable(
            "db",
            f"The PostgreSQL database {where(url)} cannot be reached within "
            f"{options.connect_timeout:g} s ({exc}). Check that the server runs and accepts "
            "connections; service resumes as soon as it does.",
        ) from None


@contextmanager
def snapshot(url: str, options: PoolSettings) -> Iterator[psycopg.Connection[Any]]:
    """Reads of one state of the database (a REPEATABLE READ, READ ONLY transaction), or of
    the thread's current transaction."""
    with connection(url, options) as conn:
        if _current().get(url) is conn:
            yield conn
            return
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield conn


@contextmanager
def transaction(url: str, options: PoolSettings) -> Iterator[psycopg.Connection[Any]]:
    """One transaction, or a savepoint inside the thread's current one."""
    with connection(url, options) as conn:
        current = _current()
        outer = current.get(url) is conn
        current[url] = conn
        try:
            with conn.transaction():
                yield conn
        finally:
            if not outer:
                del current[url]


def _current() -> dict[str, psycopg.Connection[Any]]:
    """The thread's connections inside a transaction, by database URL."""
    found: dict[str, psycopg.Connection[Any]] = _local.__dict__.setdefault("current", {})
    return found


def translated(exc: psycopg.Error, url: str) -> StorageError:
    """The seam's own error for a driver error."""
    place = where(url)
    if isinstance(exc, pg_errors.IntegrityError):
        return Conflict(f"The change conflicts with stored data: {exc.diag.message_primary}")
    if isinstance(exc, pg_errors.LockNotAvailable | pg_errors.QueryCanceled):
        return Unavailable(
            "writes",
            f"Writes are blocked on {place}: {exc.diag.message_primary} (another session holds "
            "a lock, or the statement ran past its time limit); it resumes once released.",
        )
    if isinstance(exc, pg_errors.DiskFull):
        return Unavailable("writes", f"Writes are blocked: the disk of {place} is full.")
    if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
        return Unavailable("writes", f"Writes are blocked: {place} is read-only (a standby?).")
    if isinstance(exc, psycopg.OperationalError | pg_errors.AdminShutdown):
        return Unavailable(
            "db",
            f"The PostgreSQL database {place} is unavailable ({type(exc).__name__}: "
            f"{(exc.diag.message_primary or str(exc)).splitlines()[0] if str(exc) else ''}). "
            "Service resumes as soon as it answers again.",
        )
    return BackendError(f"The PostgreSQL database {place} failed: {exc} ({type(exc).__name__}).")
