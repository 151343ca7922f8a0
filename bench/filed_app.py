"""The application with SQLite's retrieval as it was when issue 15 was filed: one statement that
joins every match to its chunk, then sorts them all by FTS5's bm25() (its plan: ``SCAN chunks_fts
... SEARCH c USING INTEGER PRIMARY KEY ... USE TEMP B-TREE FOR ORDER BY``). bench.retrieval_scale
serves it beside the application and bench.exhaustive_app, so that issue 15's throughput target
("10x today's", at 1M chunks and 32 connections) is measured against the code it names, in the
same run. Everything else is the application's. The one file outside api/storage that speaks a
backend's dialect (tests/test_storage_seam.py, BASELINES)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from api.storage import bm25, codec, topk
from api.storage.dialect import SearchRow, Session
from api.storage.sqlite.dialect import SqliteDialect
from api.storage.sqlite.fulltext import in_scope
from api.wsgi import application


def _search(
    self: SqliteDialect,
    c: Session,
    dataset_ids: Sequence[str],
    doc_ids: Sequence[str],
    terms: Sequence[str],
    limit: int,
) -> Iterable[SearchRow]:
    where, args = in_scope(dataset_ids, doc_ids)
    cursor = self.conn.cursor()
    cursor.row_factory = None
    return cursor.execute(
        f"SELECT {topk.ROW_SQL}, bm25(chunks_fts, {bm25.SQL_WEIGHTS}) AS bm25 FROM chunks_fts"
        f" JOIN chunks c ON c.seq = chunks_fts.rowid WHERE chunks_fts MATCH ? AND {where}"
        " ORDER BY bm25 LIMIT ?",
        (codec.fts_query(terms), *args, limit),
    ).fetchall()


SqliteDialect.search = _search  # type: ignore[method-assign]

__all__ = ["application"]
