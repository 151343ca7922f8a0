"""Counting the statements and round trips that code sends to the database, on either
backend. SQLite: its trace callback on the connections opened meanwhile counts statements (what
SQLite runs, trigger bodies included); the calls of execute, executemany and commit are its
"round trips" (no network: what the code asks for). PostgreSQL: libpq's protocol trace (every
Query or Bind message is a statement; every Query or Sync a round trip).
The backend's connections are closed on entry and on exit, so those counted are opened inside
the block; ``take`` between steps leaves out what came before (opening a connection, say). For the
benchmarks and the tests that keep a path's cost from creeping back."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.pq import Trace

from api.storage.postgres import connections as pg_connections
from api.storage.sqlite import connections as sqlite_connections


class Counting:
    """What was sent since the last ``take``."""

    def __init__(self, trace: Path | None = None) -> None:
        self.trace = trace  # libpq's trace (PostgreSQL); None: ``live`` is kept (SQLite)
        self.fd = -1  # the trace, open for appending (libpq writes to it)
        self.traced: list[psycopg.Connection[Any]] = []
        self.live: Counter[str] = Counter()
        self._offset = 0

    def _trace(self, conn: psycopg.Connection[Any]) -> None:
        conn.pgconn.trace(self.fd)  # a FILE libpq buffers, on the descriptor kept open
        conn.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)

    def connected(self, conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
        self._trace(conn)
        self.traced.append(conn)
        return conn

    def sqlite_statement(self, sql: str) -> None:
        self.live["statements"] += 1

    def take(self) -> Counter[str]:
        """The counts ("statements", "round trips") since the last take."""
        if self.trace is None:
            counts, self.live = self.live, Counter()
            return counts
        for conn in self.traced:
            if not conn.closed:  # libpq buffers its trace: flushed when it stops
                conn.pgconn.untrace()
                self._trace(conn)
        counts = Counter[str]()
        with self.trace.open("rb") as lines:
            lines.seek(self._offset)
            for raw in lines:
                if not raw.endswith(b"\n"):  # a line still being written
                    break
                self._offset += len(raw)
                fields = raw.decode(errors="replace").rstrip("\n").split("\t")
                if len(fields) > 2 and fields[0] == "F":
                    message = fields[2].split(" ")[0]
                    if message in ("Query", "Bind"):
                        counts["statements"] += 1
                    if message in ("Query", "Sync"):
                        counts["round trips"] += 1
        return counts


@contextmanager
def counting(backend_name: str, url: str = "") -> Iterator[Counting]:
    """Count what runs inside the block on the backend ``backend_name`` ("sqlite", or
    "postgresql" at ``url``)."""
    if backend_name == "sqlite":
        with _sqlite() as found:
            yield found
    else:
        with _postgres(url) as found:
            yield found


@contextmanager
def _sqlite() -> Iterator[Counting]:
    found = Counting(None)
    opened = sqlite_connections._open
    cls = sqlite_connections._Connection
    calls = {name: getattr(cls, name) for name in ("execute", "executemany", "commit")}

    def traced(db_path: Path) -> sqlite3.Connection:
        conn = opened(db_path)
        conn.set_trace_callback(found.sqlite_statement)
        return conn

    def counted(method: Callable[..., Any]) -> Callable[..., Any]:
        def call(self: sqlite3.Connection, *args: Any) -> Any:
            found.live["round trips"] += 1
            return method(self, *args)

        return call

    sqlite_connections.close_all()
    sqlite_connections._open = traced
    for name, method in calls.items():
        setattr(cls, name, counted(method))
    try:
        yield found
    finally:
        sqlite_connections._open = opened
        for name, method in calls.items():
            setattr(cls, name, method)
        sqlite_connections.close_all()


@contextmanager
def _postgres(url: str) -> Iterator[Counting]:
    connect = psycopg.Connection.connect
    with tempfile.TemporaryDirectory() as tmp:
        found = Counting(Path(tmp) / "trace")
        found.fd = os.open(Path(tmp) / "trace", os.O_WRONLY | os.O_CREAT | os.O_APPEND)

        def traced(*args: Any, **kwargs: Any) -> Any:
            return found.connected(connect(*args, **kwargs))

        pg_connections.close_pools(url)
        psycopg.Connection.connect = traced  # type: ignore[method-assign]
        try:
            yield found
        finally:
            psycopg.Connection.connect = connect  # type: ignore[method-assign]
            pg_connections.close_pools(url)
            os.close(found.fd)
