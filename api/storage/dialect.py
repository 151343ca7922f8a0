"""The dialect seam: what the shared SQL code (``queue_sql``, ``repository_sql``,
``document_state``) needs from a backend, and nothing else.

The shared code writes every statement once, with ``?`` placeholders and SQL both engines
speak. A backend (``sqlite/dialect.py``, ``postgres/dialect.py``) supplies only what truly
differs: how a session is opened (a thread's connection, or a pool's) and a write transaction
taken (SQLite's single writer, or PostgreSQL's row locks), how claims skip locked rows, the
spelling of case-insensitive names, LIKE and lists, the full-text index and its candidate query,
waking executors, uploaded files, health probes and the translation of its driver's errors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from api.storage.errors import StorageError


class Row(Protocol):
    """A stored row, read by position or by column name."""

    def __getitem__(self, key: Any, /) -> Any: ...
    def __iter__(self) -> Iterator[Any]: ...


class Result(Protocol):
    """What a statement returns (a DB-API cursor)."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Session(Protocol):
    """One connection: statements with ``?`` placeholders, rows as ``Row``."""

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> Result: ...


# A full-text hit, in this order: id, doc_id, docnm, content, important_keywords, questions,
# bm25 (lower is better).
SearchRow = Sequence[Any]


class Dialect(Protocol):
    """One backend's sessions and spellings (see the module's docstring)."""

    # -- sessions, transactions, errors ---------------------------------------------------
    driver_errors: tuple[type[Exception], ...]

    def read(self) -> AbstractContextManager[Session]:
        """A session for reads that see one state of the database (its statements all read
        the same snapshot): the thread's open transaction when there is one."""

    def write(self) -> AbstractContextManager[Session]:
        """One write transaction, or a savepoint inside the thread's open one."""

    def translated(self, exc: Exception) -> StorageError:
        """The seam's own error for one of ``driver_errors``."""

    # -- spellings --------------------------------------------------------------------------
    rowid: str  # the column that orders rows by insertion (ties of a sort)
    skip_locked: str  # appended to a claim's candidate query: skip rows another claim locks
    like: str  # the case-insensitive LIKE operator
    insert_batch: int  # rows one INSERT writes at most (document_state.insert_rows)

    def same_name(self, column: str) -> str:
        """``column`` equals one ``?``, letter case ignored (as the column's unique index)."""

    def among(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column`` is one of ``values``: the condition and its arguments."""

    # -- full text ----------------------------------------------------------------------------
    def prepared(self, contents: Sequence[str]) -> AbstractContextManager[None]:
        """Do what indexing ``contents`` needs before a write transaction takes a lock."""

    def chunk_index(
        self, c: Session, content: str, docnm: str, keywords: Any, questions: Any
    ) -> Mapping[str, tuple[str, Any]]:
        """The index columns a chunk inserted through the write session ``c`` carries:
        column -> (placeholder, value); none where the database maintains its index itself."""

    def reindex_chunks(self, c: Session, clause: str, args: Sequence[Any]) -> None:
        """Bring the index of the chunks ``WHERE clause`` up to date after an UPDATE."""

    def content_match(self, terms: Sequence[str]) -> tuple[str, list[Any]]:
        """Chunk ``c`` has one of ``terms`` in its content: the condition and its arguments."""

    def search(
        self,
        c: Session,
        dataset_ids: Sequence[str],
        doc_ids: Sequence[str],
        terms: Sequence[str],
        limit: int,
    ) -> Iterable[SearchRow]:
        """The full-text candidates: available chunks of ``dataset_ids`` (and ``doc_ids``)
        with any of ``terms``, best first, at most ``limit``."""

    # -- the queue ----------------------------------------------------------------------------
    def notify_enqueued(self, c: Session) -> None:
        """Tell waiting executors, at commit, that tasks were queued."""

    def wait_for_work(self, timeout: float) -> bool:
        """True as soon as tasks are queued; False after ``timeout`` seconds."""

    # -- uploaded files and health ------------------------------------------------------------
    def store_upload(self, c: Session, staged: Path, document: Mapping[str, Any]) -> Path | None:
        """Store a staged upload as the document's bytes, inside the transaction that records
        it; returns a file to remove should the transaction fail."""

    def file_path(self, document: Mapping[str, Any]) -> Path:
        """A local file holding the document's uploaded bytes."""

    def local_copy(self, document: Mapping[str, Any]) -> AbstractContextManager[Path]:
        """A local file holding the document's uploaded bytes for the time of the block
        (FileStore.local_copy)."""

    def check_read(self) -> None:
        """Raise Unavailable("db") unless the database answers a read."""

    def check_writes(self) -> None:
        """Raise Unavailable("writes") unless a write would succeed now (within a second)."""


_C = TypeVar("_C", bound=type)


def seam(cls: _C) -> _C:
    """Class decorator: every public method of ``cls`` (whose instances have ``db``, a
    Dialect) raises the seam's errors, never its driver's."""
    for name, attr in list(vars(cls).items()):
        if not name.startswith("_") and callable(attr):
            setattr(cls, name, _translating(attr))
    return cls


def _translating(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except self.db.driver_errors as exc:
            raise self.db.translated(exc)  # noqa: B904 (the dialect sets the cause)

    return call
