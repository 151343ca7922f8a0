"""The Transfer seam on SQLite: whole tables and uploaded files, for api.storage.data_copy."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

from api.storage.base import TABLES
from api.storage.dialect import seam
from api.storage.files import remove
from api.storage.sqlite.dialect import SqliteDialect
from api.storage.transfer_sql import put_rows


@seam
class SqliteTransfer:
    def __init__(self, db: SqliteDialect) -> None:
        self.db = db
        self.files = db.files

    def rows(self, table: str) -> Iterator[dict[str, Any]]:
        key, columns = TABLES[table]
        for row in self.db.conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {key}"):
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
