"""The Transfer seam on SQLite: whole tables and uploaded files, for api.storage.data_copy."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from api.storage.base import TABLES
from api.storage.files import LocalFileStore, remove
from api.storage.sqlite.connections import connection, seam
from api.storage.sqlite.dialect import SqliteDialect
from api.storage.transfer_sql import put_rows


@seam
class SqliteTransfer:
    def __init__(self, data_dir: Path, db_path: Path) -> None:
        self.db_path = db_path
        self.files = LocalFileStore(data_dir)
        self.db = SqliteDialect(data_dir, db_path)

    @property
    def conn(self) -> sqlite3.Connection:
        return connection(self.db_path)

    def rows(self, table: str) -> Iterator[dict[str, Any]]:
        key, columns = TABLES[table]
        for row in self.conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {key}"):
            yield dict(row)

    def put_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        return put_rows(self.db, table, rows)

    def has_file(self, document: Mapping[str, Any]) -> bool:
        return self.files.file_path(document).exists()

    def open_file(self, document: Mapping[str, Any]) -> IO[bytes]:
        return self.files.file_path(document).open("rb")

    def put_file(self, document: Mapping[str, Any], stream: IO[bytes]) -> None:
        self.files.dataset_folder(str(document["dataset_id"]))
        staged, out, _ = self.files.stage(stream)
        try:
            self.files.put(staged, str(document["dataset_id"]), str(document["id"]))
        except BaseException:
            remove([staged])
            raise
        finally:
            out.close()
