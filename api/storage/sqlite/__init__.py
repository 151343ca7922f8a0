"""The SQLite backend of the storage seam: only its dialect, one module per role.

``connections``: per-process and per-thread connections, the writer lock, file identity, error
translation and health probes; ``schema``: the migrations and their runner; ``dialect``: what
the shared queue and repository (api.storage.queue_sql, api.storage.repository_sql) need from
SQLite; ``transfer``: whole tables and files for moving data between backends.
"""

from __future__ import annotations

from pathlib import Path

from api.storage.base import Backend
from api.storage.dialect import seam
from api.storage.queue_sql import SqlHeartbeats, SqlTaskQueue
from api.storage.repository_sql import SqlStorage
from api.storage.sqlite.connections import close_all, connection
from api.storage.sqlite.dialect import SqliteDialect
from api.storage.sqlite.schema import migrate
from api.storage.sqlite.transfer import SqliteTransfer


@seam
class SqliteMigrations:
    """The Migrations seam on one database file."""

    def __init__(self, db: SqliteDialect) -> None:
        self.db = db

    def migrate(self) -> int:
        return migrate(connection(self.db.db_path))  # opening migrates; this reports the version


def open_sqlite(data_dir: Path, db_path: Path) -> Backend:
    db = SqliteDialect(data_dir, db_path)
    return Backend(
        name="sqlite",
        location=str(db_path),
        store=SqlStorage(db, data_dir),
        tasks=SqlTaskQueue(db),
        heartbeats=SqlHeartbeats(db),
        migrations=SqliteMigrations(db),
        transfer=SqliteTransfer(db),
        close=close_all,
    )
