"""Writes on one document that both the repository and the task queue make inside their own
transactions, on either backend: its chunks with their counts (and full-text index), and the
cancelling of its open tasks."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from api import text
from api.storage.codec import json_list
from api.storage.dialect import Dialect, Row, Session
from api.storage.errors import NotFound
from api.storage.rows import chunk_id

CHUNK_ROW_COLUMNS = (
    "id",
    "doc_id",
    "dataset_id",
    "docnm",
    "content",
    "important_keywords",
    "questions",
    "available",
    "positions",
    "token_count",
    "create_time",
)


def insert_sql(
    table: str,
    columns: Sequence[str],
    index: Mapping[str, tuple[str, Any]],
    tail: str = "",
    rows: int = 1,
) -> str:
    """An INSERT of ``rows`` rows of ``columns`` and of a dialect's index columns ``index``
    (Dialect.chunk_index: each with its own placeholder) into ``table``."""
    names = [*columns, *index]
    marks = ", ".join(["?"] * len(columns) + [mark for mark, _ in index.values()])
    values = ", ".join([f"({marks})"] * rows)
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES {values}{tail}"


def insert_rows(
    db: Dialect,
    c: Session,
    table: str,
    columns: Sequence[str],
    index: Mapping[str, tuple[str, Any]],
    rows: Sequence[Sequence[Any]],
    tail: str = "",
) -> int:
    """Insert ``rows`` (the values of ``columns``, then of the index columns ``index``), the
    dialect's ``insert_batch`` to a statement; returns how many were stored."""
    stored = 0
    for start in range(0, len(rows), db.insert_batch):
        batch = rows[start : start + db.insert_batch]
        sql = insert_sql(table, columns, index, tail, len(batch))
        stored += c.execute(sql, [value for row in batch for value in row]).rowcount
    return stored


_KEEP_STORED = " ON CONFLICT (id) DO NOTHING"  # a chunk id already stored keeps its chunk


def count_chunk_change(c: Session, doc_id: str, added: int) -> None:
    """Move the document's chunk_count by ``added`` (negative: removed) and store the sum of
    its chunks' tokens. The count is RAGFlow's counter, not a recount: adding content that
    already exists replaces that chunk and still counts one more (its add_chunk); a parse
    sets it anew (replace_document_chunks)."""
    c.execute(
        "UPDATE documents SET chunk_count = chunk_count + ?, token_count ="
        " (SELECT COALESCE(SUM(token_count), 0) FROM chunks WHERE doc_id = ?) WHERE id = ?",
        (added, doc_id, doc_id),
    )


# The document's fields that writing its chunks takes (store_chunks): read once by the caller.
CHUNK_DOCUMENT_FIELDS = "dataset_id, name, status"


def replace_document_chunks(
    db: Dialect, c: Session, doc_id: str, chunks: Sequence[Mapping[str, Any]]
) -> tuple[int, int]:
    """Replace every chunk of ``doc_id`` inside the caller's transaction (store_chunks) and
    store the document's chunk_count/token_count; returns them."""
    doc = c.execute(
        f"SELECT {CHUNK_DOCUMENT_FIELDS} FROM documents WHERE id = ?", (doc_id,)
    ).fetchone()
    if doc is None:
        raise NotFound(f"Document {doc_id} does not exist")
    counts = store_chunks(db, c, doc_id, doc, chunks)
    c.execute(
        "UPDATE documents SET chunk_count = ?, token_count = ? WHERE id = ?", (*counts, doc_id)
    )
    return counts


def store_chunks(
    db: Dialect, c: Session, doc_id: str, doc: Row, chunks: Sequence[Mapping[str, Any]]
) -> tuple[int, int]:
    """Replace every chunk of ``doc_id`` inside the caller's transaction; ``doc``: the
    document's CHUNK_DOCUMENT_FIELDS. Returns the (chunk_count, token_count) of the chunks
    stored, for the caller to store with its own UPDATE of the document.

    Each chunk: ``content`` (str), optional ``important_keywords``, ``questions``,
    ``positions`` (lists), ``available`` (bool; a disabled document's chunks are never
    available), ``token_count`` (int; counted with api.text when absent). Identical
    contents collapse into one chunk (same id, the first one kept): the counts are those of
    the distinct chunks, counted here; recounted from the table only should a row not be
    stored (an id already taken)."""
    dataset_id, name, status = doc[0], str(doc[1]), doc[2]
    c.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
    created = time.time()
    rows: dict[str, tuple[Any, ...]] = {}
    for chunk in chunks:
        content = str(chunk.get("content", ""))
        row_id = chunk_id(content, doc_id)
        if row_id in rows:
            continue
        tokens = chunk.get("token_count")
        keywords, questions = chunk.get("important_keywords"), chunk.get("questions")
        index = db.chunk_index(c, content, name, keywords, questions)
        rows[row_id] = (
            row_id,
            doc_id,
            dataset_id,
            name,
            content,
            json_list(keywords),
            json_list(questions),
            1 if chunk.get("available", True) and status == "1" else 0,
            json_list(chunk.get("positions")),
            int(tokens) if isinstance(tokens, int) else text.count_tokens(content),
            created,
            *(value for _, value in index.values()),
        )
    if not rows:
        return 0, 0
    stored = insert_rows(
        db, c, "chunks", CHUNK_ROW_COLUMNS, index, list(rows.values()), _KEEP_STORED
    )
    if stored != len(rows):
        return count_chunks(c, doc_id)
    return len(rows), sum(int(row[9]) for row in rows.values())


def count_chunks(c: Session, doc_id: str) -> tuple[int, int]:
    """The number of the document's stored chunks and the sum of their tokens."""
    row = c.execute(
        "SELECT COUNT(*), COALESCE(SUM(token_count), 0) FROM chunks WHERE doc_id = ?", (doc_id,)
    ).fetchone()
    return int(row[0]), int(row[1])


def cancel_open_tasks(c: Session, doc_id: str, reason: str, now: float) -> None:
    """End the document's queued or leased tasks (a running executor notices at its next
    check, its claim no longer current)."""
    c.execute(
        "UPDATE tasks SET state = 'cancelled', finished_at = ?, lease_owner = NULL,"
        " lease_expires = NULL, last_error = ? WHERE doc_id = ? AND state IN ('queued', 'leased')",
        (now, reason, doc_id),
    )
