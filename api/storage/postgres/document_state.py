"""Writes on one document that both the repository and the task queue make inside their own
transactions (PostgreSQL): its chunks with their counts and full-text vectors, and the
cancelling of its open tasks."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from api import text
from api.storage.codec import json_list
from api.storage.errors import NotFound
from api.storage.rows import chunk_id

# The weighted vector of a chunk from the words api.text finds (no PostgreSQL parser: both
# backends index the same words): content D, title C, keywords B, questions A. Each group has its
# own position (1-4): PostgreSQL keeps a weight only on a position, and a lexeme without one
# would match a query restricted to the content's weight (`'word':D`) from any group.
FTS_VALUE = "%s::tsvector"
_GROUPS = ((1, "D"), (2, "C"), (3, "B"), (4, "A"))


def _title(name: str) -> str:
    stem, dot, _ = name.rpartition(".")
    return stem if dot and stem else name


LEXEME_BYTES = 2046  # PostgreSQL's longest lexeme, in UTF-8 bytes


def fit_lexeme(word: str) -> str:
    """The word as PostgreSQL can index and query it: its first LEXEME_BYTES bytes (whole
    characters). Index and queries cut alike, so a longer word still finds itself."""
    data = word.encode("utf-8")
    return word if len(data) <= LEXEME_BYTES else data[:LEXEME_BYTES].decode("utf-8", "ignore")


def _lexeme(word: str) -> str:
    """A word as a quoted tsvector lexeme (cut to fit, quotes and backslashes doubled)."""
    return "'" + fit_lexeme(word).replace("\\", "\\\\").replace("'", "''") + "'"


def fts_words(content: str, docnm: str, keywords: Any, questions: Any) -> tuple[str]:
    """The parameter of FTS_VALUE: the tsvector text of the four word groups."""

    def words(value: Any) -> list[str]:
        if isinstance(value, list | tuple):
            value = " ".join(str(v) for v in value)
        return list(dict.fromkeys(text.tokens(str(value or ""))))

    positions: dict[str, list[str]] = {}
    for (position, weight), group in zip(
        _GROUPS,
        (words(content), words(_title(docnm)), words(keywords), words(questions)),
        strict=True,
    ):
        for word in group:
            positions.setdefault(word, []).append(f"{position}{weight}")
    return (" ".join(f"{_lexeme(w)}:{','.join(p)}" for w, p in positions.items()),)


def refresh_counts(conn: psycopg.Connection[Any], doc_id: str) -> tuple[int, int]:
    row = conn.execute(
        "SELECT COUNT(*) AS n, COALESCE(SUM(token_count), 0) AS t FROM chunks WHERE doc_id = %s",
        (doc_id,),
    ).fetchone()
    counts = (int(row["n"]), int(row["t"])) if row else (0, 0)
    conn.execute(
        "UPDATE documents SET chunk_count = %s, token_count = %s WHERE id = %s", (*counts, doc_id)
    )
    return counts


def count_chunk_change(conn: psycopg.Connection[Any], doc_id: str, added: int) -> None:
    """Move the document's chunk_count by ``added`` (negative: removed) and store the sum of
    its chunks' tokens. The count is RAGFlow's counter, not a recount: adding content that
    already exists replaces that chunk and still counts one more (its add_chunk); a parse
    sets it anew (refresh_counts)."""
    conn.execute(
        "UPDATE documents SET chunk_count = chunk_count + %s, token_count ="
        " (SELECT COALESCE(SUM(token_count), 0) FROM chunks WHERE doc_id = %s) WHERE id = %s",
        (added, doc_id, doc_id),
    )


def replace_document_chunks(
    conn: psycopg.Connection[Any], doc_id: str, chunks: Sequence[Mapping[str, Any]]
) -> tuple[int, int]:
    """Replace every chunk of ``doc_id`` inside the caller's transaction (the SQLite backend's
    rules: identical contents collapse, a disabled document's chunks are never available)."""
    doc = conn.execute(
        "SELECT dataset_id, name, status FROM documents WHERE id = %s", (doc_id,)
    ).fetchone()
    if doc is None:
        raise NotFound(f"Document {doc_id} does not exist")
    conn.execute("DELETE FROM chunks WHERE doc_id = %s", (doc_id,))
    created = time.time()
    rows = []
    for chunk in chunks:
        content = str(chunk.get("content", ""))
        tokens = chunk.get("token_count")
        keywords, questions = chunk.get("important_keywords"), chunk.get("questions")
        rows.append(
            (
                chunk_id(content, doc_id),
                doc_id,
                doc["dataset_id"],
                doc["name"],
                content,
                json_list(keywords),
                json_list(questions),
                1 if chunk.get("available", True) and doc["status"] == "1" else 0,
                json_list(chunk.get("positions")),
                int(tokens) if isinstance(tokens, int) else text.count_tokens(content),
                created,
                *fts_words(content, str(doc["name"]), keywords, questions),
            )
        )
    if rows:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO chunks (id, doc_id, dataset_id, docnm, content, important_keywords,"
                " questions, available, positions, token_count, create_time, fts)"
                f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, {FTS_VALUE})"
                " ON CONFLICT (id) DO NOTHING",
                rows,
            )
    return refresh_counts(conn, doc_id)


def cancel_open_tasks(conn: psycopg.Connection[Any], doc_id: str, reason: str, now: float) -> None:
    conn.execute(
        "UPDATE tasks SET state = 'cancelled', finished_at = %s, lease_owner = NULL,"
        " lease_expires = NULL, last_error = %s WHERE doc_id = %s"
        " AND state IN ('queued', 'leased')",
        (now, reason, doc_id),
    )
