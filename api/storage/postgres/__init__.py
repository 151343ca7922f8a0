"""The PostgreSQL backend of the storage seam, one module per role (as the SQLite backend):

``connections``: the per-process pool (opened after fork, never inherited), transactions,
session limits and error translation; ``schema``: the migrations under an advisory lock;
``document_state``: chunk writes shared by the repository and the queue; ``files``: uploaded
bytes in the database; ``repository``: the Storage seam; ``tasks``: TaskQueue and Heartbeats;
``transfer``: whole tables and files for moving data between backends.
"""

from __future__ import annotations

from pathlib import Path

from api.storage.base import Backend, PoolSettings
from api.storage.postgres.connections import connection, release_thread, seam, where
from api.storage.postgres.repository import PostgresStorage
from api.storage.postgres.schema import migrate
from api.storage.postgres.tasks import PostgresHeartbeats, PostgresTaskQueue
from api.storage.postgres.transfer import PostgresTransfer


@seam
class PostgresMigrations:
    def __init__(self, url: str, options: PoolSettings) -> None:
        self.url = url
        self.options = options

    def migrate(self) -> int:
        with connection(self.url, self.options) as conn:  # a new connection migrates
            return migrate(conn)


def open_postgres(data_dir: Path, url: str, opts: PoolSettings) -> Backend:
    migrations = PostgresMigrations(url, opts)
    return Backend(
        name="postgresql",
        location=where(url),
        store=PostgresStorage(data_dir, url, opts),
        tasks=PostgresTaskQueue(url, opts),
        heartbeats=PostgresHeartbeats(url, opts),
        migrations=migrations,
        transfer=PostgresTransfer(data_dir, url, opts),
        close=release_thread,
    )
