"""The Dialect of SQLite (api.storage.dialect): the thread's connection and the single writer's
transaction, FTS5 kept by triggers, executors that poll, uploads renamed into DATA_DIR/files."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, cast

from api.storage import bm25, codec, topk
from api.storage.dialect import SearchRow, Session
from api.storage.errors import StorageError
from api.storage.files import LocalFileStore
from api.storage.sqlite.connections import (
    check_read,
    connection,
    impact_index,
    probe_writes,
    snapshot,
    transaction,
    translated,
    words_prepared,
)
from api.storage.sqlite.fulltext import in_scope

_FTS_ROWIDS = "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?"


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


class SqliteDialect:
    """SQLite's sessions and spellings for the shared SQL code."""

    driver_errors: tuple[type[Exception], ...] = (sqlite3.Error,)
    rowid = "rowid"
    skip_locked = ""  # one writer at a time: nothing to skip
    like = "LIKE"  # case-insensitive for ASCII letters
    # a chunk's write took 117-141 us a hundred per INSERT, 190-206 one per INSERT (20,000-chunk
    # documents)
    insert_batch = 100

    def __init__(self, data_dir: Path, db_path: Path) -> None:
        self.db_path = db_path
        self.files = LocalFileStore(data_dir)

    @property
    def conn(self) -> sqlite3.Connection:
        return connection(self.db_path)

    def read(self) -> AbstractContextManager[Session]:
        return snapshot(self.conn)

    def write(self) -> AbstractContextManager[Session]:
        return transaction(self.conn)

    def translated(self, exc: Exception) -> StorageError:
        error = translated(cast(sqlite3.Error, exc), self.db_path)  # one of driver_errors
        error.__cause__ = exc
        return error

    def same_name(self, column: str) -> str:
        return f"{column} = ? COLLATE NOCASE"

    def among(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} IN ({_marks(values)})", list(values)

    # -- full text: FTS5, kept by the chunks triggers (schema.py) --------------------------
    def prepared(self, contents: Sequence[str]) -> AbstractContextManager[None]:
        return words_prepared(contents)

    def chunk_index(
        self, c: Session, content: str, docnm: str, keywords: Any, questions: Any
    ) -> Mapping[str, tuple[str, Any]]:
        return {}

    def reindex_chunks(self, c: Session, clause: str, args: Sequence[Any]) -> None:
        return None

    def content_match(self, terms: Sequence[str]) -> tuple[str, list[Any]]:
        # The full-text query runs once, as a list subquery; joined to chunks, SQLite would
        # run it again for every chunk of the document (seconds per request).
        return f"c.seq IN ({_FTS_ROWIDS})", [f"content : ({codec.fts_query(terms)})"]

    def search(
        self,
        c: Session,
        dataset_ids: Sequence[str],
        doc_ids: Sequence[str],
        terms: Sequence[str],
        limit: int,
    ) -> Iterable[SearchRow]:
        """BM25 over the four columns (bm25.FIELD_WEIGHTS), ties to the older chunk: through
        the impact index when that is cheaper (topk.py), else by ranking every match."""
        return topk.search(
            impact_index(self.db_path),
            dataset_ids,
            doc_ids,
            terms,
            limit,
            lambda ordered: self._rank_all(dataset_ids, doc_ids, ordered, limit),
        )

    def _rank_all(
        self,
        dataset_ids: Sequence[str],
        doc_ids: Sequence[str],
        terms: Sequence[str],
        limit: int,
    ) -> list[SearchRow]:
        """Every match ranked in the full-text index alone, then the best few read from chunks
        and kept when in scope; when fewer than ``limit`` of those are (a small dataset beside
        large ones, or documents given), the scope is applied while ranking instead."""
        scope, args = in_scope(dataset_ids, doc_ids)
        cursor = self.conn.cursor()
        cursor.row_factory = None  # plain tuples: cheaper than sqlite3.Row for many rows
        match = codec.fts_query(terms)
        columns = topk.ROW_SQL
        ranked = f"bm25(chunks_fts, {bm25.SQL_WEIGHTS})"
        if not doc_ids:  # a quarter more than asked: room for chunks out of scope
            window = limit + limit // 4
            rows = cursor.execute(
                f"WITH r AS (SELECT rowid, {ranked} AS bm25 FROM chunks_fts"
                " WHERE chunks_fts MATCH ? ORDER BY bm25, rowid LIMIT ?)"
                f" SELECT {columns}, r.bm25, r.rowid FROM r JOIN chunks c ON c.seq = r.rowid"
                f" WHERE {scope} ORDER BY r.bm25, r.rowid",
                (match, window, *args),
            ).fetchall()
            if len(rows) >= limit or self._fewer_matches(match, window):
                return [row[:7] for row in rows[:limit]]
        return cursor.execute(
            f"SELECT {columns}, {ranked} AS bm25 FROM chunks_fts"
            f" JOIN chunks c ON c.seq = chunks_fts.rowid WHERE chunks_fts MATCH ?"
            f" AND {scope} ORDER BY bm25, c.seq LIMIT ?",
            (match, *args, limit),
        ).fetchall()

    def _fewer_matches(self, match: str, count: int) -> bool:
        """Fewer than ``count`` chunks match: the ranked window held every one of them."""
        found = self.conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM chunks_fts WHERE chunks_fts MATCH ? LIMIT ?)",
            (match, count),
        ).fetchone()
        return int(found[0]) < count

    # -- the queue: SQLite cannot tell another process; executors poll ------------------------
    def notify_enqueued(self, c: Session) -> None:
        return None

    def wait_for_work(self, timeout: float) -> bool:
        time.sleep(max(timeout, 0.0))
        return False

    # -- uploaded files under DATA_DIR/files, and health ------------------------------------
    def store_upload(self, c: Session, staged: Path, document: Mapping[str, Any]) -> Path | None:
        return self.files.put(staged, str(document["dataset_id"]), str(document["id"]))

    def file_path(self, document: Mapping[str, Any]) -> Path:
        return self.files.file_path(document)

    @contextmanager
    def local_copy(self, document: Mapping[str, Any]) -> Iterator[Path]:
        yield self.files.file_path(document)  # the stored file is local

    def check_read(self) -> None:
        check_read(self.conn, "SELECT 1 FROM datasets LIMIT 1")

    def check_writes(self) -> None:
        probe_writes(self.conn, self.files.data_dir)
