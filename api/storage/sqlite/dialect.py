"""The Dialect of SQLite (api.storage.dialect): the thread's connection and the single writer's
transaction, FTS5 kept by triggers, executors that poll, uploads renamed into DATA_DIR/files."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, cast

from api.storage import codec
from api.storage.dialect import SearchRow, Session
from api.storage.errors import StorageError
from api.storage.files import LocalFileStore
from api.storage.sqlite.connections import (
    check_read,
    connection,
    probe_writes,
    transaction,
    translated,
    words_prepared,
)

_FTS_ROWIDS = "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?"


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


class SqliteDialect:
    """SQLite's sessions and spellings for the shared SQL code."""

    driver_errors: tuple[type[Exception], ...] = (sqlite3.Error,)
    rowid = "rowid"
    skip_locked = ""  # one writer at a time: nothing to skip
    like = "LIKE"  # case-insensitive for ASCII letters

    def __init__(self, data_dir: Path, db_path: Path) -> None:
        self.db_path = db_path
        self.files = LocalFileStore(data_dir)

    @property
    def conn(self) -> sqlite3.Connection:
        return connection(self.db_path)

    @contextmanager
    def read(self) -> Iterator[Session]:
        yield self.conn

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
        self, content: str, docnm: str, keywords: Any, questions: Any
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
        """BM25 over the four columns, weighted 1, 2, 3, 4."""
        where = [
            "chunks_fts MATCH ?",
            "c.available = 1",
            f"c.dataset_id IN ({_marks(dataset_ids)})",
        ]
        args: list[Any] = [codec.fts_query(terms), *dataset_ids]
        if doc_ids:
            where.append(f"c.doc_id IN ({_marks(doc_ids)})")
            args.extend(doc_ids)
        cursor = self.conn.cursor()
        cursor.row_factory = None  # plain tuples: cheaper than sqlite3.Row for many rows
        return cursor.execute(
            "SELECT c.id, c.doc_id, c.docnm, c.content, c.important_keywords, c.questions,"
            " bm25(chunks_fts, 1.0, 2.0, 3.0, 4.0) AS bm25 FROM chunks_fts"
            f" JOIN chunks c ON c.seq = chunks_fts.rowid WHERE {' AND '.join(where)}"
            " ORDER BY bm25 LIMIT ?",
            (*args, limit),
        )

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
