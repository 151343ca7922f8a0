"""The PostgreSQL backend of the storage seam: only its dialect, one module per role (as the
SQLite backend):

``connections``: the per-process pool (opened after fork, never inherited), transactions,
session limits and error translation; ``schema``: the migrations under an advisory lock;
``dialect``: what the shared queue and repository (api.storage.queue_sql,
api.storage.repository_sql) need from PostgreSQL; ``fulltext``: the tsvector index of chunks;
``files``: uploaded bytes in the database; ``transfer``: whole tables and files for moving data
between backends.
"""

from __future__ import annotations

from pathlib import Path

from api.storage.base import Backend, PoolSettings
from api.storage.dialect import seam
from api.storage.postgres.connections import connection, release_thread, where
from api.storage.postgres.dialect import PostgresDialect
from api.storage.postgres.schema import migrate
from api.storage.postgres.transfer import PostgresTransfer
from api.storage.queue_sql import SqlHeartbeats, SqlTaskQueue
from api.storage.repository_sql import SqlStorage


@seam
class PostgresMigrations:
    def __init__(self, db: PostgresDialect) -> None:
        self.db = db

    def migrate(self) -> int:
        with connection(self.db.url, self.db.options) as conn:  # a new connection migrates
            return migrate(conn)


def open_postgres(data_dir: Path, url: str, opts: PoolSettings) -> Backend:
    db = PostgresDialect(data_dir, url, opts)
    return Backend(
        name="postgresql",
        location=where(url),
        store=SqlStorage(db, data_dir),
        tasks=SqlTaskQueue(db),
        heartbeats=SqlHeartbeats(db),
        migrations=PostgresMigrations(db),
        transfer=PostgresTransfer(db),
        close=release_thread,
    )
