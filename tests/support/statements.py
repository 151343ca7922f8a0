"""Counting the statements and round trips a block of code sends to the database, on either
backend: SQLite's trace callback on the connections opened meanwhile (one statement, one
call, counted once each, trigger bodies included), libpq's protocol trace on PostgreSQL's
(every Query or Bind message is a statement; every Query or Sync a round trip). The
backend's connections are closed first and at the end, so the ones counted are opened inside
the block. For the benchmarks and the tests that keep a path's cost from creeping back."""

from __future__ import annotations

import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.pq import Trace

from api.storage.postgres import connections as pg_connections
from api.storage.sqlite import connections as sqlite_connections


@contextmanager
def counted(backend_name: str, url: str = "") -> Iterator[Counter[str]]:
    """Counts ("statements", "round trips") of what runs inside the block on the backend
    ``backend_name`` ("sqlite", or "postgresql" at ``url``), filled in when the block ends."""
    counts: Counter[str] = Counter()
    if backend_name == "sqlite":
        with _sqlite(counts):
            yield counts
    else:
        with _postgres(counts, url):
            yield counts


@contextmanager
def _sqlite(counts: Counter[str]) -> Iterator[None]:
    opened = sqlite_connections._open

    def traced(db_path: Path) -> sqlite3.Connection:
        conn = opened(db_path)
        conn.set_trace_callback(lambda sql: counts.update(["statements", "round trips"]))
        return conn

    sqlite_connections.close_all()
    sqlite_connections._open = traced
    try:
        yield
    finally:
        sqlite_connections._open = opened
        sqlite_connections.close_all()


@contextmanager
def _postgres(counts: Counter[str], url: str) -> Iterator[None]:
    connect = psycopg.Connection.connect
    with tempfile.TemporaryDirectory() as tmp, (Path(tmp) / "trace").open("w") as out:

        def traced(*args: Any, **kwargs: Any) -> Any:
            conn = connect(*args, **kwargs)
            conn.pgconn.trace(out.fileno())  # libpq writes it, line-buffered
            conn.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)
            return conn

        pg_connections.close_pools(url)
        psycopg.Connection.connect = traced  # type: ignore[method-assign]
        try:
            yield
        finally:
            psycopg.Connection.connect = connect  # type: ignore[method-assign]
            pg_connections.close_pools(url)
            for line in (Path(tmp) / "trace").read_text(errors="replace").splitlines():
                fields = line.split("\t")
                if len(fields) > 2 and fields[0] == "F":
                    message = fields[2].split(" ")[0]
                    if message in ("Query", "Bind"):
                        counts["statements"] += 1
                    if message in ("Query", "Sync"):
                        counts["round trips"] += 1
