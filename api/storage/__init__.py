"""Storage: the interface (api.storage.base) and the SQLite backend (api.storage.sqlite).

Nothing here opens a connection at import; ``get_connection()`` and ``get_storage()``
read DATA_DIR when called and open this process's connection on first use.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from api import config
from api.storage.base import (
    Conflict,
    DocumentFilter,
    NotFound,
    Page,
    Row,
    Storage,
    StorageError,
    Unavailable,
    Upload,
)
from api.storage.sqlite import (
    SqliteStorage,
    chunk_id,
    close_all,
    connection,
    migrate,
    replace_document_chunks,
    transaction,
    words_prepared,
)

__all__ = [
    "Conflict",
    "DocumentFilter",
    "NotFound",
    "Page",
    "Row",
    "SqliteStorage",
    "Storage",
    "StorageError",
    "Unavailable",
    "Upload",
    "chunk_id",
    "close_all",
    "get_connection",
    "get_storage",
    "migrate",
    "replace_document_chunks",
    "transaction",
    "words_prepared",
]


def _data_dir(data_dir: Path | None) -> Path:
    return data_dir if data_dir is not None else config.load().data_dir


def get_connection(data_dir: Path | None = None) -> sqlite3.Connection:
    """This process's (and thread's) connection to DATA_DIR/ragflow.db, schema up to date."""
    return connection(_data_dir(data_dir) / "ragflow.db")


def get_storage(data_dir: Path | None = None) -> Storage:
    return SqliteStorage(_data_dir(data_dir))
