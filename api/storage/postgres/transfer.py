"""The Transfer seam on PostgreSQL: whole tables (read through a server-side cursor) and
uploaded files (streamed block by block), for api.storage.data_copy."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

from psycopg.rows import dict_row

from api.storage.base import TABLES
from api.storage.dialect import seam
from api.storage.postgres import files as db_files
from api.storage.postgres.connections import connection, transaction
from api.storage.postgres.dialect import PostgresDialect
from api.storage.transfer_sql import put_rows

FETCH = 1000


@seam
class PostgresTransfer:
    def __init__(self, db: PostgresDialect) -> None:
        self.db = db
        self.url = db.url
        self.options = db.options
        self.cache = db.files

    def rows(self, table: str) -> Iterator[dict[str, Any]]:
        key, columns = TABLES[table]
        with transaction(self.url, self.options) as c:
            cursor = c.cursor(name=f"transfer_{table}", row_factory=dict_row)
            cursor.itersize = FETCH
            cursor.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {key}")
            yield from cursor

    def put_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        return put_rows(self.db, table, rows)

    def has_file(self, document: Mapping[str, Any]) -> bool:
        if int(document["size"]) == 0:
            return True
        with connection(self.url, self.options) as c:
            found = c.execute(
                "SELECT 1 FROM file_blocks WHERE doc_id = %s AND n = 0", (str(document["id"]),)
            )
            return found.fetchone() is not None

    def open_file(self, document: Mapping[str, Any]) -> IO[bytes]:
        with connection(self.url, self.options) as c:
            return db_files.materialize(c, self.cache, document).open("rb")

    def put_file(self, document: Mapping[str, Any], stream: IO[bytes]) -> None:
        with transaction(self.url, self.options) as c:
            c.execute("DELETE FROM file_blocks WHERE doc_id = %s", (str(document["id"]),))
            db_files.write_blocks(c, str(document["id"]), stream)
