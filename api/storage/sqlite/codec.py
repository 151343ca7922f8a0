"""The SQLite row codec: Python values to column values and back (JSON columns, booleans as
integers), chunk ids, timestamps, LIKE and FTS5 query text."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import xxhash

from api.storage.rows import Row


def chunk_id(content: str, doc_id: str) -> str:
    return xxhash.xxh64((content + doc_id).encode("utf-8")).hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)


def json_list(value: Any) -> str:
    return json.dumps(list(value) if isinstance(value, list | tuple) else [], ensure_ascii=False)


# the columns a caller may change
DATASET_COLUMNS = (
    "name",
    "avatar",
    "description",
    "embedding_model",
    "permission",
    "chunk_method",
    "parser_config",
    "pagerank",
)
DOCUMENT_COLUMNS = ("name", "chunk_method", "parser_config", "meta_fields", "status")
CHUNK_COLUMNS = ("content", "important_keywords", "questions", "available", "positions")
JSON_COLUMNS = frozenset(
    {"parser_config", "meta_fields", "important_keywords", "questions", "positions"}
)


def row(found: sqlite3.Row | None) -> Row | None:
    """A stored row as the seam's Row, JSON columns decoded."""
    if found is None:
        return None
    out: Row = {}
    for key in found.keys():  # noqa: SIM118 (sqlite3.Row has no __iter__ over keys)
        value = found[key]
        out[key] = json.loads(value) if key in JSON_COLUMNS and isinstance(value, str) else value
    return out


def json_list_value(raw: str) -> Any:
    return [] if raw == "[]" else json.loads(raw)  # most chunks have no keywords/questions


def rows(found: Iterable[sqlite3.Row]) -> list[Row]:
    return [r for r in (row(x) for x in found) if r is not None]


def encode(column: str, value: Any) -> Any:
    if column in JSON_COLUMNS:
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return int(value)
    return value


def encoded(values: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """The column values of ``values`` for the ``columns`` a caller may change."""
    return {col: encode(col, values[col]) for col in columns if col in values}


def like(value: str) -> str:
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def fts_query(terms: Sequence[str]) -> str:
    return " OR ".join(f'"{t}"' for t in terms)
