"""The row codec of both backends (they store the same column values): the seam's row types from
stored rows (JSON columns decoded, booleans from integers), column values from Python values,
timestamps, LIKE and FTS5 query text. Chunk ids come from rows.chunk_id."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from api.storage.rows import ApiKeyRow, ChunkRow, DatasetRow, DocumentRow, Task


class Record(Protocol):
    """A stored row read by column name (sqlite3.Row, or a dict)."""

    def __getitem__(self, key: str, /) -> Any: ...


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


def _json(raw: object) -> Any:
    return json.loads(raw) if isinstance(raw, str) else raw


def api_key(r: Record) -> ApiKeyRow:
    return {
        "prefix": r["prefix"],
        "tenant_id": r["tenant_id"],
        "name": r["name"],
        "create_time": r["create_time"],
        "revoked_time": r["revoked_time"],
    }


def dataset(r: Record) -> DatasetRow:
    return {
        "id": r["id"],
        "tenant_id": r["tenant_id"],
        "name": r["name"],
        "avatar": r["avatar"],
        "description": r["description"],
        "embedding_model": r["embedding_model"],
        "permission": r["permission"],
        "chunk_method": r["chunk_method"],
        "parser_config": _json(r["parser_config"]),
        "pagerank": r["pagerank"],
        "language": r["language"],
        "create_time": r["create_time"],
        "update_time": r["update_time"],
        "document_count": r["document_count"],
        "chunk_count": r["chunk_count"],
        "token_num": r["token_num"],
    }


def document(r: Record) -> DocumentRow:
    return {
        "id": r["id"],
        "dataset_id": r["dataset_id"],
        "name": r["name"],
        "suffix": r["suffix"],
        "type": r["type"],
        "size": r["size"],
        "location": r["location"],
        "created_by": r["created_by"],
        "chunk_method": r["chunk_method"],
        "parser_config": _json(r["parser_config"]),
        "meta_fields": _json(r["meta_fields"]),
        "status": r["status"],
        "run": r["run"],
        "progress": r["progress"],
        "progress_msg": r["progress_msg"],
        "process_begin_at": r["process_begin_at"],
        "process_duration": r["process_duration"],
        "chunk_count": r["chunk_count"],
        "token_count": r["token_count"],
        "create_time": r["create_time"],
        "update_time": r["update_time"],
    }


# what a chunk is read with (``chunk``): ChunkRow's fields, never the full-text index's columns
# (PostgreSQL's fts, freqs and impacts are several times the rest of a row)
CHUNK_READ = tuple(ChunkRow.__annotations__)


def chunk_columns(alias: str = "") -> str:
    """CHUNK_READ as a select list, each prefixed with ``alias`` (``c.``)."""
    return ", ".join(alias + column for column in CHUNK_READ)


def chunk(r: Record) -> ChunkRow:
    return {
        "id": r["id"],
        "doc_id": r["doc_id"],
        "dataset_id": r["dataset_id"],
        "docnm": r["docnm"],
        "content": r["content"],
        "important_keywords": json_list_value(r["important_keywords"]),
        "questions": json_list_value(r["questions"]),
        "available": bool(r["available"]),
        "positions": json_list_value(r["positions"]),
        "token_count": r["token_count"],
        "create_time": r["create_time"],
    }


def json_list_value(raw: str) -> Any:
    return [] if raw == "[]" else json.loads(raw)  # most chunks have no keywords/questions


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


def append_msg(old: str, line: str) -> str:
    """A document's progress message with one more line."""
    return f"{old}\n{line}" if old else line


def stamp(now: float) -> str:
    """The time prefix of a progress-message line."""
    return time.strftime("%H:%M:%S", time.localtime(now))


def owned(task: Task) -> tuple[str, str, int]:
    """The fencing key of a claimed task: (id, lease_owner, attempts), in that order."""
    return (task.id, task.lease_owner, task.attempts)
