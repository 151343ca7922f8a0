"""The Dialect of PostgreSQL (api.storage.dialect): the pool's sessions with ``?`` placeholders
and rows read by position or name, claims that skip locked rows, the tsvector index the shared
code fills (postgres/fulltext.py), LISTEN/NOTIFY, uploads stored in the database."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg.rows import RowMaker

from api.storage import codec, fs, topk
from api.storage import files as local_files
from api.storage.base import PoolSettings
from api.storage.dialect import SearchRow, Session
from api.storage.errors import StorageError, Unavailable
from api.storage.files import LocalFileStore
from api.storage.postgres import files as db_files
from api.storage.postgres.connections import (
    connection,
    drop_listener,
    listener,
    snapshot,
    transaction,
    translated,
    where,
)
from api.storage.postgres.fulltext import (
    SCORE,
    PostgresImpacts,
    any_word,
    bm25_sql,
    impact_reference,
    in_scope,
    index_columns,
    record_reference,
)

CHANNEL = "ragflow_tasks"  # every enqueue NOTIFYs it; waiting executors LISTEN


@functools.lru_cache(maxsize=512)
def _placeholders(sql: str) -> str:
    """The shared code's ``?`` placeholders in psycopg's spelling (a literal % doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Row:
    """A row read by position or by column name (as sqlite3.Row)."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: Mapping[str, int], values: Sequence[Any]) -> None:
        self._names = names
        self._values = values

    def __getitem__(self, key: Any) -> Any:
        return self._values[self._names[key] if isinstance(key, str) else key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _row_factory(cursor: Any) -> RowMaker[_Row]:
    names = {column.name: i for i, column in enumerate(cursor.description or ())}
    return functools.partial(_Row, names)


class _Session:
    """One pooled connection speaking the shared code's SQL."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.reference: float | None = None  # the mean length its chunks' impacts use

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> Any:
        return self.conn.cursor(row_factory=_row_factory).execute(_placeholders(sql), args)


class PostgresDialect:
    """PostgreSQL's sessions and spellings for the shared SQL code."""

    driver_errors: tuple[type[Exception], ...] = (psycopg.Error,)
    rowid = "seq"  # an identity column: insertion order
    skip_locked = " FOR UPDATE SKIP LOCKED"
    like = "ILIKE"
    # few statements per transaction: each one's triggers add to the same rows of
    # fulltext_totals and fulltext_terms, whose row versions a transaction cannot prune, so
    # every statement finds longer chains (docs/architecture.md "Retrieval"); 2,000 rows of up
    # to 32 columns fit PostgreSQL's 65,535 parameters
    insert_batch = 2000

    def __init__(self, data_dir: Path, url: str, options: PoolSettings) -> None:
        self.url = url
        self.options = options
        self.files = LocalFileStore(data_dir)  # the local cache of uploaded files

    @contextmanager
    def read(self) -> Iterator[Session]:
        with snapshot(self.url, self.options) as conn:
            yield _Session(conn)

    @contextmanager
    def write(self) -> Iterator[Session]:
        with transaction(self.url, self.options) as conn:
            yield _Session(conn)

    def translated(self, exc: Exception) -> StorageError:
        error = translated(cast(psycopg.Error, exc), self.url)
        error.__suppress_context__ = True  # the driver's words are in the message already
        return error

    def same_name(self, column: str) -> str:
        return f"lower({column}) = lower(?)"

    def among(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(?)", [list(values)]

    # -- full text: the index columns (postgres/fulltext.py) ---------------------------------
    def prepared(self, contents: Sequence[str]) -> AbstractContextManager[None]:
        return nullcontext()

    def chunk_index(
        self, c: Session, content: str, docnm: str, keywords: Any, questions: Any
    ) -> Mapping[str, tuple[str, Any]]:
        session = cast(_Session, c)
        if session.reference is None:
            session.reference = impact_reference(c)
        columns, used = index_columns(content, docnm, keywords, questions, session.reference)
        if not session.reference:  # an empty index: the session's chunks use the first's length
            session.reference = record_reference(c, used)
        return columns

    def reindex_chunks(self, c: Session, clause: str, args: Sequence[Any]) -> None:
        """The chunks' index columns computed anew, set by one UPDATE per ``insert_batch``
        chunks (few statements: see insert_batch)."""
        rows = c.execute(
            f"SELECT seq, content, docnm, important_keywords, questions FROM chunks WHERE {clause}",
            args,
        ).fetchall()
        for start in range(0, len(rows), self.insert_batch):
            batch = rows[start : start + self.insert_batch]
            values: list[Any] = []
            for seq, content, docnm, keywords, questions in batch:
                columns = self.chunk_index(
                    c,
                    content,
                    docnm,
                    codec.json_list_value(keywords),
                    codec.json_list_value(questions),
                )
                values += [seq, *(value for _, value in columns.values())]
            marks = "(?::bigint, " + ", ".join(mark for mark, _ in columns.values()) + ")"
            sets = ", ".join(f"{name} = v.{name}" for name in columns)
            c.execute(
                f"UPDATE chunks c SET {sets} FROM (VALUES {', '.join([marks] * len(batch))})"
                f" AS v(seq, {', '.join(columns)}) WHERE c.seq = v.seq",
                values,
            )

    def content_match(self, terms: Sequence[str]) -> tuple[str, list[Any]]:
        return "c.fts @@ ?::tsquery", [any_word(terms, "D")]

    def search(
        self,
        c: Session,
        dataset_ids: Sequence[str],
        doc_ids: Sequence[str],
        terms: Sequence[str],
        limit: int,
    ) -> Iterable[SearchRow]:
        """BM25 (the SQLite backend's, bit for bit: api.storage.bm25), ties to the older
        chunk: through the impact index when that is cheaper (api.storage.topk), else every
        match ranked in SQL (postgres/fulltext.bm25_sql) from the GIN index's candidates."""
        index = PostgresImpacts(c)

        def rank_all(ordered: list[str]) -> list[SearchRow]:
            scored, args = bm25_sql(index.stats(ordered), ordered)
            where, scope = in_scope(dataset_ids, doc_ids)
            # the best seqs first: the rows of the others are never read
            return c.execute(
                f"SELECT {topk.ROW_SQL}, b.bm25 FROM (SELECT c.seq, -{SCORE} AS bm25 FROM chunks c"
                f" {scored} WHERE c.fts @@ ?::tsquery AND {where} ORDER BY bm25, c.seq"
                " LIMIT ?) b JOIN chunks c ON c.seq = b.seq ORDER BY b.bm25, b.seq",
                (*args, any_word(ordered), *scope, limit),
            ).fetchall()

        return topk.search(index, dataset_ids, doc_ids, terms, limit, rank_all)

    # -- the queue: LISTEN/NOTIFY ---------------------------------------------------------------
    def notify_enqueued(self, c: Session) -> None:
        c.execute("SELECT pg_notify(?, '')", (CHANNEL,))  # delivered at commit

    def wait_for_work(self, timeout: float) -> bool:
        """LISTEN on CHANNEL (a connection of this process and thread kept for it, outside the
        pool); True as soon as an enqueue's NOTIFY arrives."""
        conn = listener(self.url, self.options, CHANNEL)
        try:
            for _ in conn.notifies(timeout=max(timeout, 0.0), stop_after=1):
                return True
        except psycopg.Error:
            drop_listener(self.url, CHANNEL)
            raise
        return False

    # -- uploaded files in the database (postgres/files.py), and health -----------------------
    def store_upload(self, c: Session, staged: Path, document: Mapping[str, Any]) -> Path | None:
        conn = cast(_Session, c).conn
        with self.files.storing(), staged.open("rb") as local:
            db_files.write_blocks(conn, str(document["id"]), local)
        return None  # the bytes roll back with the transaction

    def file_path(self, document: Mapping[str, Any]) -> Path:
        with connection(self.url, self.options) as conn:
            return db_files.materialize(conn, self.files, document)

    @contextmanager
    def local_copy(self, document: Mapping[str, Any]) -> Iterator[Path]:
        """The cached file when there is one, else a staged copy for the block: a parse needs
        no durable cache (one fsync per document), nor the connection while it parses."""
        cached = self.files.file_path(document)
        if cached.exists():
            yield cached
            return
        with self.files.storing():
            staged, out = fs.stage(self.files.files_dir)
        try:
            with out:  # open (and flocked: sweep_staging spares it) until the block ends
                try:  # the seam translates its methods' errors, not a block's
                    with connection(self.url, self.options) as conn:
                        db_files.copy_blocks(conn, self.files, str(document["id"]), out)
                except psycopg.Error as exc:
                    raise self.translated(exc) from None
                with self.files.storing():
                    out.flush()
                yield staged
        finally:
            local_files.remove([staged])

    def check_read(self) -> None:
        try:
            with connection(self.url, self.options) as conn:
                conn.execute("SELECT 1 FROM datasets LIMIT 1").fetchone()
        except psycopg.Error as exc:
            raise Unavailable(
                "db",
                f"The PostgreSQL database {where(self.url)} does not answer: {type(exc).__name__}.",
            ) from None

    def check_writes(self) -> None:
        with self.write() as c:
            row = c.execute(
                "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'"
            ).fetchone()
            if row and row[0]:
                raise Unavailable(
                    "writes",
                    f"Writes are blocked: {where(self.url)} is read-only (a standby, or"
                    " default_transaction_read_only); point DATABASE_URL at the primary.",
                )
