"""Inserting whole rows, as api.storage.data_copy moves them, in SQL both backends run (the
Transfer seam's ``put_rows``): a row whose key is stored already is left alone."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from api.storage.base import TABLES
from api.storage.dialect import Dialect
from api.storage.document_state import insert_rows


def put_rows(db: Dialect, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert the rows of ``table`` whose key is not stored yet, in one transaction (a chunk
    with its full-text index, where the dialect keeps one); returns how many."""
    key, columns = TABLES[table]
    index: Mapping[str, tuple[str, Any]] = {}
    values = []
    with db.write() as c:
        for row in rows:
            if table == "chunks":
                index = db.chunk_index(
                    c,
                    str(row["content"]),
                    str(row["docnm"]),
                    json.loads(row["important_keywords"]),
                    json.loads(row["questions"]),
                )
            values.append([*(row[col] for col in columns), *(value for _, value in index.values())])
        tail = f" ON CONFLICT ({key}) DO NOTHING"
        return insert_rows(db, c, table, columns, index, values, tail)
