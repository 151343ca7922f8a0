"""The Storage seam (keys, datasets, documents, chunks, files, database health) on
PostgreSQL: the SQLite repository's queries in PostgreSQL's dialect, rows through the shared
codec, uploaded bytes in the database (postgres/files.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import psycopg

from api import text
from api.storage import codec
from api.storage.base import PoolSettings
from api.storage.errors import Conflict, NotFound, Unavailable
from api.storage.files import LocalFileStore, remove
from api.storage.postgres import files as db_files
from api.storage.postgres.connections import connection, seam, transaction, where
from api.storage.postgres.document_state import (
    FTS_VALUE,
    cancel_open_tasks,
    count_chunk_change,
    fit_lexeme,
    fts_words,
    replace_document_chunks,
)
from api.storage.rows import (
    ApiKeyRow,
    ChunkHit,
    ChunkRow,
    DatasetRow,
    DocumentFilter,
    DocumentRow,
    Page,
    Upload,
    chunk_id,
)

_DATASET_SELECT = (
    "SELECT d.*, (SELECT COUNT(*) FROM documents WHERE dataset_id = d.id) AS document_count,"
    " (SELECT COALESCE(SUM(chunk_count), 0) FROM documents WHERE dataset_id = d.id)"
    " AS chunk_count,"
    " (SELECT COALESCE(SUM(token_count), 0) FROM documents WHERE dataset_id = d.id) AS token_num"
    " FROM datasets d"
)
# ts_rank weights {D, C, B, A}: content 1, title 2, keywords 3, questions 4 (as the SQLite
# backend's bm25 column weights)
_WEIGHTS = "'{0.25, 0.5, 0.75, 1.0}'"
_QUERY = "(SELECT string_agg(quote_literal(t), ' | ')::tsquery FROM unnest(%s::text[]) t)"
# the same, for the content's words only (weight D), as RAGFlow's chunk-list keywords filter
_CONTENT_QUERY = (
    "(SELECT string_agg(quote_literal(t) || ':D', ' | ')::tsquery FROM unnest(%s::text[]) t)"
)


def _ints(row: Mapping[str, Any], *names: str) -> dict[str, Any]:
    out = dict(row)
    for name in names:
        out[name] = int(out[name])
    return out


@seam
class PostgresStorage:
    """The Storage interface on one PostgreSQL database; the file cache under DATA_DIR."""

    def __init__(self, data_dir: Path, url: str, options: PoolSettings) -> None:
        self.data_dir = data_dir
        self.url = url
        self.options = options
        self.files = LocalFileStore(data_dir)

    def _tx(self) -> Any:
        return transaction(self.url, self.options)

    def _read(self) -> Any:
        return connection(self.url, self.options)

    def check(self) -> None:
        try:
            with self._read() as c:
                c.execute("SELECT 1 FROM datasets LIMIT 1").fetchone()
        except psycopg.Error as exc:
            raise Unavailable(
                "db",
                f"The PostgreSQL database {where(self.url)} does not answer: {type(exc).__name__}.",
            ) from None

    def check_writes(self) -> None:
        with self._tx() as c:
            row = c.execute(
                "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'"
                " AS read_only"
            ).fetchone()
            if row and row["read_only"]:
                raise Unavailable(
                    "writes",
                    f"Writes are blocked: {where(self.url)} is read-only (a standby, or"
                    " default_transaction_read_only); point DATABASE_URL at the primary.",
                )

    def check_files(self) -> None:
        self.files.check_files()

    def free_bytes(self) -> int:
        return self.files.free_bytes()

    def sweep_staging(self) -> int:
        return self.files.sweep_staging()

    def file_path(self, document: Mapping[str, Any]) -> Path:
        with self._read() as c:
            return db_files.materialize(c, self.files, document)

    # keys ----------------------------------------------------------------------------
    def add_key(self, key_hash: str, prefix: str, tenant_id: str, name: str) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO api_keys (key_hash, prefix, tenant_id, name, create_time)"
                " VALUES (%s, %s, %s, %s, %s)",
                (key_hash, prefix, tenant_id, name, codec.now_ms()),
            )

    def key_tenant(self, key_hash: str) -> str | None:
        with self._read() as c:
            row = c.execute(
                "SELECT tenant_id FROM api_keys WHERE key_hash = %s AND revoked_time IS NULL",
                (key_hash,),
            ).fetchone()
        return None if row is None else str(row["tenant_id"])

    def list_keys(self) -> list[ApiKeyRow]:
        with self._read() as c:
            rows = c.execute(
                "SELECT prefix, tenant_id, name, create_time, revoked_time FROM api_keys"
                " ORDER BY create_time"
            ).fetchall()
        return [codec.api_key(r) for r in rows]

    def revoke_keys(self, prefix: str) -> int:
        with self._tx() as c:
            cur = c.execute(
                "UPDATE api_keys SET revoked_time = %s WHERE revoked_time IS NULL"
                " AND (left(key_hash, length(%s)) = %s OR prefix = %s)",
                (codec.now_ms(), prefix, prefix, prefix),
            )
            return int(cur.rowcount)

    # datasets ------------------------------------------------------------------------
    def create_dataset(self, tenant_id: str, fields: Mapping[str, Any]) -> DatasetRow:
        dataset_id = uuid.uuid1().hex
        now = codec.now_ms()
        with self._tx() as c:
            base = str(fields["name"])
            name = base
            for n in range(1, 10_000):
                if not c.execute(
                    "SELECT 1 FROM datasets WHERE tenant_id = %s AND lower(name) = lower(%s)",
                    (tenant_id, name),
                ).fetchone():
                    break
                name = f"{base}({n})"
            values = codec.encoded(fields, codec.DATASET_COLUMNS)
            values["name"] = name
            columns = ["id", "tenant_id", "create_time", "update_time", *values]
            c.execute(
                f"INSERT INTO datasets ({', '.join(columns)})"
                f" VALUES ({', '.join(['%s'] * len(columns))})",
                (dataset_id, tenant_id, now, now, *values.values()),
            )
        found = self.get_dataset(tenant_id, dataset_id)
        if found is None:
            raise NotFound(f"Dataset {dataset_id} vanished after creation")
        return found

    def _dataset(self, clause: str, args: Sequence[Any]) -> DatasetRow | None:
        with self._read() as c:
            row = c.execute(f"{_DATASET_SELECT} WHERE {clause}", args).fetchone()
        return None if row is None else codec.dataset(_dataset_ints(row))

    def get_dataset(self, tenant_id: str, dataset_id: str) -> DatasetRow | None:
        return self._dataset("d.tenant_id = %s AND d.id = %s", (tenant_id, dataset_id))

    def dataset_named(self, tenant_id: str, name: str) -> DatasetRow | None:
        return self._dataset("d.tenant_id = %s AND lower(d.name) = lower(%s)", (tenant_id, name))

    def list_datasets(
        self,
        tenant_id: str,
        page: Page,
        orderby: str,
        desc: bool,
        dataset_id: str | None = None,
        name: str | None = None,
    ) -> tuple[list[DatasetRow], int]:
        where_, args = ["d.tenant_id = %s"], [tenant_id]
        if dataset_id:
            where_.append("d.id = %s")
            args.append(dataset_id)
        if name:
            where_.append("lower(d.name) = lower(%s)")
            args.append(name)
        clause = " AND ".join(where_)
        order = "update_time" if orderby == "update_time" else "create_time"
        direction = "DESC" if desc else "ASC"
        with self._read() as c:
            total = c.execute(f"SELECT COUNT(*) AS n FROM datasets d WHERE {clause}", args)
            count = int(total.fetchone()["n"])
            rows = c.execute(
                f"{_DATASET_SELECT} WHERE {clause} ORDER BY d.{order} {direction},"
                f" d.seq {direction} LIMIT %s OFFSET %s",
                (*args, page.size, page.offset),
            ).fetchall()
        return [codec.dataset(_dataset_ints(r)) for r in rows], count

    def update_dataset(
        self, tenant_id: str, dataset_id: str, changes: Mapping[str, Any]
    ) -> DatasetRow:
        with self._tx() as c:
            if "name" in changes:
                clash = c.execute(
                    "SELECT 1 FROM datasets WHERE tenant_id = %s AND lower(name) = lower(%s)"
                    " AND id != %s",
                    (tenant_id, changes["name"], dataset_id),
                ).fetchone()
                if clash:
                    raise Conflict(f"Dataset name '{changes['name']}' already exists")
            values = codec.encoded(changes, codec.DATASET_COLUMNS)
            sets = "".join(f"{col} = %s, " for col in values)
            cur = c.execute(
                f"UPDATE datasets SET {sets}update_time = %s WHERE tenant_id = %s AND id = %s",
                (*values.values(), codec.now_ms(), tenant_id, dataset_id),
            )
            if cur.rowcount != 1:
                raise NotFound(dataset_id)
        found = self.get_dataset(tenant_id, dataset_id)
        if found is None:
            raise NotFound(dataset_id)
        return found

    def delete_datasets(self, tenant_id: str, dataset_ids: Sequence[str]) -> int:
        with self._tx() as c:
            deleted = 0
            for dataset_id in dataset_ids:
                deleted += c.execute(
                    "DELETE FROM datasets WHERE tenant_id = %s AND id = %s",
                    (tenant_id, dataset_id),
                ).rowcount
        for dataset_id in dataset_ids:
            self.files.delete_dataset(dataset_id)
        return deleted

    def tenant_dataset_ids(self, tenant_id: str) -> list[str]:
        with self._read() as c:
            rows = c.execute("SELECT id FROM datasets WHERE tenant_id = %s", (tenant_id,))
            return [str(r["id"]) for r in rows]

    # documents -----------------------------------------------------------------------
    def add_documents(
        self, dataset: Mapping[str, Any], uploads: Sequence[Upload], created_by: str
    ) -> list[DocumentRow]:
        """Store the files and their rows together, in one transaction: all, or none. Each
        upload is staged in a local file first (as fast as the client sends it), so the
        transaction copies from local disk and never waits on a client."""
        dataset_id = str(dataset["id"])
        ids: list[str] = []
        staged: list[tuple[Path, IO[bytes]]] = []
        try:
            for upload in uploads:
                path, out, _ = self.files.stage(upload.stream)
                staged.append((path, out))
            with self._tx() as c:
                for upload, (path, _) in zip(uploads, staged, strict=True):
                    doc_id = uuid.uuid1().hex
                    name = _free_name(c, dataset_id, upload.name)
                    now = codec.now_ms()
                    c.execute(
                        "INSERT INTO documents (id, dataset_id, name, suffix, type, size,"
                        " location, created_by, chunk_method, parser_config, create_time,"
                        " update_time) VALUES (%s, %s, %s, %s, %s, 0, %s, %s, %s, %s, %s, %s)",
                        (
                            doc_id,
                            dataset_id,
                            name,
                            upload.suffix,
                            upload.file_type,
                            name,
                            created_by,
                            upload.chunk_method or dataset["chunk_method"],
                            codec.encode("parser_config", dataset["parser_config"]),
                            now,
                            now,
                        ),
                    )
                    with self.files.storing(), path.open("rb") as local:
                        size = db_files.write_blocks(c, doc_id, local)
                    c.execute("UPDATE documents SET size = %s WHERE id = %s", (size, doc_id))
                    ids.append(doc_id)
        finally:
            for _, out in staged:
                out.close()
            remove([path for path, _ in staged])
        return [d for d in (self.get_document(dataset_id, i) for i in ids) if d]

    def _document(self, clause: str, args: Sequence[Any]) -> DocumentRow | None:
        with self._read() as c:
            row = c.execute(f"SELECT * FROM documents WHERE {clause}", args).fetchone()
        return None if row is None else codec.document(row)

    def get_document(self, dataset_id: str, doc_id: str) -> DocumentRow | None:
        return self._document("dataset_id = %s AND id = %s", (dataset_id, doc_id))

    def document_named(self, dataset_id: str, name: str) -> DocumentRow | None:
        return self._document("dataset_id = %s AND name = %s", (dataset_id, name))

    def list_documents(
        self, dataset_id: str, flt: DocumentFilter, page: Page
    ) -> tuple[list[DocumentRow], int]:
        where_, args = ["dataset_id = %s"], [dataset_id]
        if flt.keywords:
            where_.append("name ILIKE %s ESCAPE '\\'")
            args.append(codec.like(flt.keywords))
        if flt.doc_id:
            where_.append("id = %s")
            args.append(flt.doc_id)
        if flt.name:
            where_.append("name = %s")
            args.append(flt.name)
        if flt.suffixes:
            where_.append("suffix = ANY(%s)")
            args.append(list(flt.suffixes))  # type: ignore[arg-type]
        if flt.runs:
            where_.append("run = ANY(%s)")
            args.append(list(flt.runs))  # type: ignore[arg-type]
        if flt.create_time_from:
            where_.append("create_time >= %s")
            args.append(flt.create_time_from)  # type: ignore[arg-type]
        if flt.create_time_to:
            where_.append("create_time <= %s")
            args.append(flt.create_time_to)  # type: ignore[arg-type]
        clause = " AND ".join(where_)
        order = flt.orderby if flt.orderby in ("update_time", "name", "size") else "create_time"
        direction = "DESC" if flt.desc else "ASC"
        with self._read() as c:
            total = int(
                c.execute(f"SELECT COUNT(*) AS n FROM documents WHERE {clause}", args).fetchone()[
                    "n"
                ]
            )
            rows = c.execute(
                f"SELECT * FROM documents WHERE {clause} ORDER BY {order} {direction},"
                f" seq {direction} LIMIT %s OFFSET %s",
                (*args, page.size, page.offset),
            ).fetchall()
        return [codec.document(r) for r in rows], total

    def update_document(
        self, doc: Mapping[str, Any], changes: Mapping[str, Any], reset: bool = False
    ) -> DocumentRow:
        doc_id = str(doc["id"])
        with self._tx() as c:
            if (
                "name" in changes
                and c.execute(
                    "SELECT 1 FROM documents WHERE dataset_id = %s AND name = %s AND id != %s",
                    (doc["dataset_id"], changes["name"], doc_id),
                ).fetchone()
            ):
                raise Conflict("Duplicated document name in the same dataset.")
            values = codec.encoded(changes, codec.DOCUMENT_COLUMNS)
            if "name" in values:
                values["location"] = values["name"]
                self._rename_chunks(c, doc_id, str(values["name"]))
            if reset:
                replace_document_chunks(c, doc_id, [])
                cancel_open_tasks(c, doc_id, "chunk method changed", time.time())
                values.update(run="0", progress=0, progress_msg="", process_duration=0)
            if "status" in values:
                c.execute(
                    "UPDATE chunks SET available = %s WHERE doc_id = %s",
                    (int(values["status"]), doc_id),
                )
            sets = "".join(f"{col} = %s, " for col in values)
            c.execute(
                f"UPDATE documents SET {sets}update_time = %s WHERE id = %s",
                (*values.values(), codec.now_ms(), doc_id),
            )
        found = self.get_document(str(doc["dataset_id"]), doc_id)
        if found is None:
            raise NotFound(doc_id)
        return found

    @staticmethod
    def _rename_chunks(c: psycopg.Connection[Any], doc_id: str, name: str) -> None:
        rows = c.execute(
            "SELECT seq, content, important_keywords, questions FROM chunks WHERE doc_id = %s",
            (doc_id,),
        ).fetchall()
        for r in rows:
            _set_chunk_fts(c, r["seq"], r["content"], name, r["important_keywords"], r["questions"])
        c.execute("UPDATE chunks SET docnm = %s WHERE doc_id = %s", (name, doc_id))

    def delete_documents(self, dataset_id: str, doc_ids: Sequence[str]) -> list[str]:
        missing: list[str] = []
        with self._tx() as c:
            for doc_id in doc_ids:
                cur = c.execute(
                    "DELETE FROM documents WHERE dataset_id = %s AND id = %s", (dataset_id, doc_id)
                )
                if cur.rowcount == 0:
                    missing.append(doc_id)
        for doc_id in doc_ids:
            if doc_id not in missing:
                self.files.delete_document(dataset_id, doc_id)
        return missing

    def document_ids(self, dataset_id: str) -> list[str]:
        with self._read() as c:
            rows = c.execute(
                "SELECT id FROM documents WHERE dataset_id = %s ORDER BY create_time, seq",
                (dataset_id,),
            )
            return [str(r["id"]) for r in rows]

    def documents_in(self, dataset_ids: Sequence[str]) -> set[str]:
        if not dataset_ids:
            return set()
        with self._read() as c:
            rows = c.execute(
                "SELECT id FROM documents WHERE dataset_id = ANY(%s)", (list(dataset_ids),)
            )
            return {str(r["id"]) for r in rows}

    # chunks --------------------------------------------------------------------------
    def list_chunks(
        self, doc_id: str, page: Page, keywords: str = "", chunk: str = ""
    ) -> tuple[list[ChunkRow], int]:
        where_, args = ["c.doc_id = %s"], [doc_id]
        if chunk:
            where_.append("c.id = %s")
            args.append(chunk)
        terms = text.query_terms(keywords) if keywords else []
        if terms:
            where_.append(f"c.fts @@ {_CONTENT_QUERY}")
            args.append([fit_lexeme(t) for t in terms])  # type: ignore[arg-type]
        clause = " AND ".join(where_)
        with self._read() as c:
            total = int(
                c.execute(f"SELECT COUNT(*) AS n FROM chunks c WHERE {clause}", args).fetchone()[
                    "n"
                ]
            )
            rows = c.execute(
                f"SELECT c.* FROM chunks c WHERE {clause} ORDER BY c.seq LIMIT %s OFFSET %s",
                (*args, page.size, page.offset),
            ).fetchall()
        return [codec.chunk(r) for r in rows], total

    def get_chunk(self, doc_id: str, chunk: str) -> ChunkRow | None:
        with self._read() as c:
            row = c.execute(
                "SELECT * FROM chunks WHERE doc_id = %s AND id = %s", (doc_id, chunk)
            ).fetchone()
        return None if row is None else codec.chunk(row)

    def add_chunk(self, doc: Mapping[str, Any], fields: Mapping[str, Any]) -> ChunkRow:
        doc_id = str(doc["id"])
        content = str(fields["content"])
        new_id = chunk_id(content, doc_id)
        keywords, questions = fields.get("important_keywords"), fields.get("questions")
        with self._tx() as c:
            # the same content again replaces the chunk (its id is a hash of content and
            # document), as RAGFlow's document store does, and still counts one more
            c.execute(
                "INSERT INTO chunks (id, doc_id, dataset_id, docnm, content, important_keywords,"
                " questions, available, token_count, create_time, fts)"
                f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, {FTS_VALUE})"
                " ON CONFLICT (id) DO UPDATE SET"
                " important_keywords = excluded.important_keywords,"
                " questions = excluded.questions, available = excluded.available,"
                " positions = excluded.positions, create_time = excluded.create_time,"
                " fts = excluded.fts",
                (
                    new_id,
                    doc_id,
                    doc["dataset_id"],
                    doc["name"],
                    content,
                    codec.json_list(keywords),
                    codec.json_list(questions),
                    1 if str(doc.get("status", "1")) == "1" else 0,
                    text.count_tokens(content),
                    time.time(),
                    *fts_words(content, str(doc["name"]), keywords, questions),
                ),
            )
            count_chunk_change(c, doc_id, 1)
        found = self.get_chunk(doc_id, new_id)
        if found is None:
            raise NotFound(new_id)
        return found

    def update_chunk(self, doc_id: str, chunk: str, changes: Mapping[str, Any]) -> ChunkRow:
        values = codec.encoded(changes, codec.CHUNK_COLUMNS)
        if "content" in values:
            values["token_count"] = text.count_tokens(str(values["content"]))
        with self._tx() as c:
            if values:
                sets = ", ".join(f"{col} = %s" for col in values)
                row = c.execute(
                    f"UPDATE chunks SET {sets} WHERE doc_id = %s AND id = %s"
                    " RETURNING seq, docnm, content, important_keywords, questions",
                    (*values.values(), doc_id, chunk),
                ).fetchone()
                if row is None:
                    raise NotFound(chunk)
                _set_chunk_fts(
                    c,
                    row["seq"],
                    row["content"],
                    row["docnm"],
                    row["important_keywords"],
                    row["questions"],
                )
            count_chunk_change(c, doc_id, 0)
        found = self.get_chunk(doc_id, chunk)
        if found is None:
            raise NotFound(chunk)
        return found

    def delete_chunks(self, doc_id: str, chunk_ids: Sequence[str] | None) -> int:
        with self._tx() as c:
            if chunk_ids is None:
                deleted = c.execute("DELETE FROM chunks WHERE doc_id = %s", (doc_id,)).rowcount
            else:
                deleted = c.execute(
                    "DELETE FROM chunks WHERE doc_id = %s AND id = ANY(%s)",
                    (doc_id, list(chunk_ids)),
                ).rowcount
            count_chunk_change(c, doc_id, -int(deleted))
        return int(deleted)

    def replace_chunks(self, doc_id: str, chunks: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        with self._tx() as c:
            return replace_document_chunks(c, doc_id, chunks)

    def search_chunks(
        self,
        dataset_ids: Sequence[str],
        doc_ids: Sequence[str],
        terms: Sequence[str],
        limit: int,
    ) -> list[ChunkHit]:
        """Available chunks matching any term (the GIN index on ``fts``), best rank first
        (content < title < keywords < questions in weight), at most ``limit``. ``bm25`` carries
        the negated rank: lower is better, as the SQLite backend's."""
        if not terms or not dataset_ids:
            return []
        where_ = ["c.fts @@ q.query", "c.available = 1", "c.dataset_id = ANY(%s)"]
        args: list[Any] = [[fit_lexeme(t) for t in terms], list(dataset_ids)]
        if doc_ids:
            where_.append("c.doc_id = ANY(%s)")
            args.append(list(doc_ids))
        with self._read() as c:
            rows = c.execute(
                "SELECT c.id, c.doc_id, c.docnm, c.content, c.important_keywords, c.questions,"
                f" -ts_rank({_WEIGHTS}, c.fts, q.query) AS bm25"
                f" FROM chunks c, {_QUERY} AS q(query)"
                f" WHERE {' AND '.join(where_)} ORDER BY bm25, c.seq LIMIT %s",
                (*args, limit),
            ).fetchall()
        return [
            {
                "id": r["id"],
                "doc_id": r["doc_id"],
                "docnm": r["docnm"],
                "content": r["content"],
                "important_keywords": codec.json_list_value(r["important_keywords"]),
                "questions": codec.json_list_value(r["questions"]),
                "bm25": float(r["bm25"]),
            }
            for r in rows
        ]

    def chunks_by_id(self, chunk_ids: Sequence[str]) -> dict[str, ChunkRow]:
        if not chunk_ids:
            return {}
        with self._read() as c:
            rows = c.execute("SELECT * FROM chunks WHERE id = ANY(%s)", (list(chunk_ids),))
            return {str(r["id"]): codec.chunk(r) for r in rows}


def _set_chunk_fts(
    c: psycopg.Connection[Any], seq: int, content: str, docnm: str, keywords: str, questions: str
) -> None:
    words = fts_words(
        content, docnm, codec.json_list_value(keywords), codec.json_list_value(questions)
    )
    c.execute(f"UPDATE chunks SET fts = {FTS_VALUE} WHERE seq = %s", (*words, seq))


def _dataset_ints(row: Mapping[str, Any]) -> dict[str, Any]:
    return _ints(row, "document_count", "chunk_count", "token_num")


def _free_name(conn: psycopg.Connection[Any], dataset_id: str, name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    candidate = name
    for n in range(1, 100_000):
        if not conn.execute(
            "SELECT 1 FROM documents WHERE dataset_id = %s AND name = %s", (dataset_id, candidate)
        ).fetchone():
            return candidate
        candidate = f"{stem}({n}).{ext}" if dot else f"{stem}({n})"
    raise Conflict(f"Too many documents named {name!r}")
