"""The SQLite backend of the storage seam, one module per role:

``connections``: per-process and per-thread connections, the writer lock, file identity, error
translation and health probes; ``schema``: the migrations and their runner; ``codec``: values
to columns and back; ``document_state``: writes on a document that the repository and the queue
share; ``repository``: the Storage seam; ``tasks``: the TaskQueue and Heartbeats seams;
``transfer``: whole tables and files for moving data between backends.
"""

from __future__ import annotations

from pathlib import Path

from api.storage.base import Backend
from api.storage.sqlite.connections import close_all, connection, seam
from api.storage.sqlite.repository import SqliteStorage
from api.storage.sqlite.schema import migrate
from api.storage.sqlite.tasks import SqliteHeartbeats, SqliteTaskQueue
from api.storage.sqlite.transfer import SqliteTransfer


@seam
class SqliteMigrations:
    """The Migrations seam on one database file."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path

    def migrate(self) -> int:
        return migrate(connection(self.db_path))  # opening migrates; this reports the version


def open_sqlite(data_dir: Path, db_path: Path) -> Backend:
    return Backend(
        name="sqlite",
        location=str(db_path),
        store=SqliteStorage(data_dir, db_path),
        tasks=SqliteTaskQueue(db_path),
        heartbeats=SqliteHeartbeats(db_path),
        migrations=SqliteMigrations(db_path),
        transfer=SqliteTransfer(data_dir, db_path),
        close=close_all,
    )
