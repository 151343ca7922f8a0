"""Storage: the seam (``base``: protocols; ``rows``: the types crossing it; ``errors``: the only
exceptions it raises), the file store (``files``, ``fs``) and the backends (``sqlite``,
``postgres``).

``open_backend`` is the one factory: DATABASE_URL picks the backend (unset: SQLite at
DATA_DIR/ragflow.db; or PostgreSQL). Nothing opens a connection at import; each backend opens
this process's connection (SQLite: and thread's; PostgreSQL: its pool) on first use.
"""

from __future__ import annotations

from pathlib import Path

from api.storage.base import (
    Backend,
    ChunkInput,
    FileStore,
    Heartbeats,
    Migrations,
    PoolSettings,
    Storage,
    TaskQueue,
)
from api.storage.errors import BackendError, Conflict, NotFound, StorageError, Unavailable
from api.storage.rows import (
    RUN_CANCEL,
    RUN_DONE,
    RUN_FAIL,
    RUN_RUNNING,
    RUN_UNSTART,
    ApiKeyRow,
    ChunkHit,
    ChunkRow,
    DatasetRow,
    DocumentFilter,
    DocumentRow,
    ExecutorStatus,
    Page,
    QueueDepth,
    Task,
    Upload,
    chunk_id,
)
from shared import database_url

__all__ = [
    "RUN_CANCEL",
    "RUN_DONE",
    "RUN_FAIL",
    "RUN_RUNNING",
    "RUN_UNSTART",
    "ApiKeyRow",
    "Backend",
    "BackendError",
    "ChunkHit",
    "ChunkInput",
    "ChunkRow",
    "Conflict",
    "DatasetRow",
    "DocumentFilter",
    "DocumentRow",
    "ExecutorStatus",
    "FileStore",
    "Heartbeats",
    "Migrations",
    "NotFound",
    "Page",
    "PoolSettings",
    "QueueDepth",
    "Storage",
    "StorageError",
    "Task",
    "TaskQueue",
    "Unavailable",
    "Upload",
    "chunk_id",
    "import_backends",
    "open_backend",
]

DEFAULT_DB_NAME = "ragflow.db"


def import_backends() -> None:
    """Import both backends now, which opens nothing: in Gunicorn's master (preload_app) they
    are then imported once and shared by every worker, instead of in each worker at its first
    request (about 80 ms, 200 where no bytecode is written)."""
    import api.storage.postgres
    import api.storage.sqlite  # noqa: F401


def open_backend(data_dir: Path, url: str = "", pool: PoolSettings | None = None) -> Backend:
    """The backend DATABASE_URL ``url`` names ("" for the default: SQLite at
    DATA_DIR/ragflow.db); uploaded files live under ``data_dir`` (PostgreSQL: in the database,
    ``data_dir`` caching them). ``pool``: a server backend's connection settings. Opens nothing
    yet. ``url`` was validated with the same rule by the renderer and ``api.config``."""
    try:
        parsed = database_url.parse(url)
    except ValueError as exc:
        raise Unavailable(
            "db", f"DATABASE_URL is not usable: {exc}; accepted: {database_url.ACCEPTS}"
        ) from None
    if parsed.scheme == "postgresql":
        from api.storage.postgres import open_postgres

        return open_postgres(data_dir, parsed.url, pool or PoolSettings())
    from api.storage.sqlite import open_sqlite

    db_path = Path(parsed.path) if parsed.path is not None else data_dir / DEFAULT_DB_NAME
    return open_sqlite(data_dir, db_path)
