"""The Storage seam (keys, datasets, documents, chunks, database health), in SQL both backends
run (their differences behind api.storage.dialect): every query of the HTTP layer. Uploads are
staged by the file store and stored by the dialect; rows decode through the codec."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any

from api import text
from api.storage import codec
from api.storage import files as file_store
from api.storage.dialect import Dialect, Row, Session, seam
from api.storage.document_state import (
    CHUNK_ROW_COLUMNS,
    cancel_open_tasks,
    count_chunk_change,
    insert_sql,
    replace_document_chunks,
)
from api.storage.errors import Conflict, NotFound
from api.storage.files import LocalFileStore
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
# a chunk added by hand has no positions
_ADDED_CHUNK = tuple(c for c in CHUNK_ROW_COLUMNS if c != "positions")


def _dataset(row: Row) -> DatasetRow:
    found = codec.dataset(row)
    for name in ("document_count", "chunk_count", "token_num"):  # a server's SUM may be wider
        found[name] = int(found[name])
    return found


@seam
class SqlStorage:
    """The Storage interface on one database; uploaded files staged under DATA_DIR."""

    def __init__(self, db: Dialect, data_dir: Path) -> None:
        self.db = db
        self.data_dir = data_dir
        self.files = LocalFileStore(data_dir)

    def check(self) -> None:
        self.db.check_read()

    def check_writes(self) -> None:
        self.db.check_writes()

    def check_files(self) -> None:
        self.files.check_files()

    def free_bytes(self) -> int:
        return self.files.free_bytes()

    def sweep_staging(self) -> int:
        return self.files.sweep_staging()

    def file_path(self, document: Mapping[str, Any]) -> Path:
        return self.db.file_path(document)

    def local_copy(self, document: Mapping[str, Any]) -> AbstractContextManager[Path]:
        return self.db.local_copy(document)

    def _one(self, sql: str, args: Sequence[Any]) -> Row | None:
        with self.db.read() as c:
            found: Row | None = c.execute(sql, args).fetchone()
            return found

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        with self.db.read() as c:
            return list(c.execute(sql, args).fetchall())

    def _page(
        self, select: str, table: str, clause: str, args: Sequence[Any], order: str, page: Page
    ) -> tuple[list[Row], int]:
        """One page of ``select WHERE clause ORDER BY order``, and how many rows match."""
        with self.db.read() as c:
            total = c.execute(f"SELECT COUNT(*) FROM {table} WHERE {clause}", args).fetchone()
            rows = c.execute(
                f"{select} WHERE {clause} ORDER BY {order} LIMIT ? OFFSET ?",
                (*args, page.size, page.offset),
            ).fetchall()
        return list(rows), int(total[0])

    # keys ----------------------------------------------------------------------------
    def add_key(self, key_hash: str, prefix: str, tenant_id: str, name: str) -> None:
        with self.db.write() as c:
            c.execute(
                "INSERT INTO api_keys (key_hash, prefix, tenant_id, name, create_time)"
                " VALUES (?, ?, ?, ?, ?)",
                (key_hash, prefix, tenant_id, name, codec.now_ms()),
            )

    def key_tenant(self, key_hash: str) -> str | None:
        row = self._one(
            "SELECT tenant_id FROM api_keys WHERE key_hash = ? AND revoked_time IS NULL",
            (key_hash,),
        )
        return None if row is None else str(row[0])

    def list_keys(self) -> list[ApiKeyRow]:
        rows = self._all(
            "SELECT prefix, tenant_id, name, create_time, revoked_time FROM api_keys"
            " ORDER BY create_time"
        )
        return [codec.api_key(r) for r in rows]

    def revoke_keys(self, prefix: str) -> int:
        with self.db.write() as c:
            cur = c.execute(
                "UPDATE api_keys SET revoked_time = ? WHERE revoked_time IS NULL"
                " AND (substr(key_hash, 1, length(?)) = ? OR prefix = ?)",
                (codec.now_ms(), prefix, prefix, prefix),
            )
            return int(cur.rowcount)

    # datasets ------------------------------------------------------------------------
    def create_dataset(self, tenant_id: str, fields: Mapping[str, Any]) -> DatasetRow:
        dataset_id = uuid.uuid1().hex
        now = codec.now_ms()
        taken = f"SELECT 1 FROM datasets WHERE tenant_id = ? AND {self.db.same_name('name')}"
        with self.db.write() as c:
            base = str(fields["name"])
            name = base
            for n in range(1, 10_000):
                if not c.execute(taken, (tenant_id, name)).fetchone():
                    break
                name = f"{base}({n})"
            values = codec.encoded(fields, codec.DATASET_COLUMNS)
            values["name"] = name
            columns = ["id", "tenant_id", "create_time", "update_time", *values]
            c.execute(
                f"INSERT INTO datasets ({', '.join(columns)})"
                f" VALUES ({', '.join('?' * len(columns))})",
                (dataset_id, tenant_id, now, now, *values.values()),
            )
        found = self.get_dataset(tenant_id, dataset_id)
        if found is None:
            raise NotFound(f"Dataset {dataset_id} vanished after creation")
        return found

    def get_dataset(self, tenant_id: str, dataset_id: str) -> DatasetRow | None:
        row = self._one(
            f"{_DATASET_SELECT} WHERE d.tenant_id = ? AND d.id = ?", (tenant_id, dataset_id)
        )
        return None if row is None else _dataset(row)

    def dataset_named(self, tenant_id: str, name: str) -> DatasetRow | None:
        row = self._one(
            f"{_DATASET_SELECT} WHERE d.tenant_id = ? AND {self.db.same_name('d.name')}",
            (tenant_id, name),
        )
        return None if row is None else _dataset(row)

    def list_datasets(
        self,
        tenant_id: str,
        page: Page,
        orderby: str,
        desc: bool,
        dataset_id: str | None = None,
        name: str | None = None,
    ) -> tuple[list[DatasetRow], int]:
        where, args = ["d.tenant_id = ?"], [tenant_id]
        if dataset_id:
            where.append("d.id = ?")
            args.append(dataset_id)
        if name:
            where.append(self.db.same_name("d.name"))
            args.append(name)
        order = "update_time" if orderby == "update_time" else "create_time"
        direction = "DESC" if desc else "ASC"  # ties: insertion order, same direction
        rows, total = self._page(
            _DATASET_SELECT,
            "datasets d",
            " AND ".join(where),
            args,
            f"d.{order} {direction}, d.{self.db.rowid} {direction}",
            page,
        )
        return [_dataset(r) for r in rows], total

    def update_dataset(
        self, tenant_id: str, dataset_id: str, changes: Mapping[str, Any]
    ) -> DatasetRow:
        with self.db.write() as c:
            if "name" in changes:
                clash = c.execute(
                    f"SELECT 1 FROM datasets WHERE tenant_id = ? AND {self.db.same_name('name')}"
                    " AND id != ?",
                    (tenant_id, changes["name"], dataset_id),
                ).fetchone()
                if clash:
                    raise Conflict(f"Dataset name '{changes['name']}' already exists")
            values = codec.encoded(changes, codec.DATASET_COLUMNS)
            sets = "".join(f"{col} = ?, " for col in values)
            cur = c.execute(
                f"UPDATE datasets SET {sets}update_time = ? WHERE tenant_id = ? AND id = ?",
                (*values.values(), codec.now_ms(), tenant_id, dataset_id),
            )
            if cur.rowcount != 1:
                raise NotFound(dataset_id)
        found = self.get_dataset(tenant_id, dataset_id)
        if found is None:
            raise NotFound(dataset_id)
        return found

    def delete_datasets(self, tenant_id: str, dataset_ids: Sequence[str]) -> int:
        """Delete the datasets (with documents, chunks, tasks, files) in one transaction."""
        with self.db.write() as c:
            deleted = 0
            for dataset_id in dataset_ids:
                deleted += c.execute(
                    "DELETE FROM datasets WHERE tenant_id = ? AND id = ?", (tenant_id, dataset_id)
                ).rowcount
        for dataset_id in dataset_ids:
            self.files.delete_dataset(dataset_id)
        return deleted

    def tenant_dataset_ids(self, tenant_id: str) -> list[str]:
        rows = self._all("SELECT id FROM datasets WHERE tenant_id = ?", (tenant_id,))
        return [str(r[0]) for r in rows]

    # documents -----------------------------------------------------------------------
    def add_documents(
        self, dataset: Mapping[str, Any], uploads: Sequence[Upload], created_by: str
    ) -> list[DocumentRow]:
        """Store the files and their rows together, in one transaction: all of them, or none.
        Each upload is staged in a local file first (as fast as the client sends it), so the
        transaction stores it from local disk and never waits on a client."""
        dataset_id = str(dataset["id"])
        staged: list[Path] = []
        written: list[Path] = []  # every stored file this call created; removed if it fails
        held: list[IO[bytes]] = []  # staged files stay open and flocked until stored (fs.sweep)
        ids: list[str] = []
        try:
            self.files.dataset_folder(dataset_id)
            sizes: list[int] = []
            for upload in uploads:
                tmp, out, size = self.files.stage(upload.stream)
                held.append(out)
                staged.append(tmp)
                sizes.append(size)
            with self.db.write() as c:
                for upload, tmp, size in zip(uploads, staged, sizes, strict=True):
                    doc_id = uuid.uuid1().hex
                    name = _free_name(c, dataset_id, upload.name)
                    now = codec.now_ms()
                    c.execute(
                        "INSERT INTO documents (id, dataset_id, name, suffix, type, size,"
                        " location, created_by, chunk_method, parser_config, create_time,"
                        " update_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            doc_id,
                            dataset_id,
                            name,
                            upload.suffix,
                            upload.file_type,
                            size,
                            name,
                            created_by,
                            upload.chunk_method or dataset["chunk_method"],
                            codec.encode("parser_config", dataset["parser_config"]),
                            now,
                            now,
                        ),
                    )
                    document = {"dataset_id": dataset_id, "id": doc_id}
                    stored = self.db.store_upload(c, tmp, document)
                    if stored is not None:
                        written.append(stored)
                    ids.append(doc_id)
        except BaseException:
            file_store.remove(written)
            raise
        finally:
            for out in held:
                out.close()
            file_store.remove(staged)  # what was not renamed into place
        return [d for d in (self.get_document(dataset_id, i) for i in ids) if d]

    def get_document(self, dataset_id: str, doc_id: str) -> DocumentRow | None:
        row = self._one(
            "SELECT * FROM documents WHERE dataset_id = ? AND id = ?", (dataset_id, doc_id)
        )
        return None if row is None else codec.document(row)

    def document_named(self, dataset_id: str, name: str) -> DocumentRow | None:
        row = self._one(
            "SELECT * FROM documents WHERE dataset_id = ? AND name = ?", (dataset_id, name)
        )
        return None if row is None else codec.document(row)

    def list_documents(
        self, dataset_id: str, flt: DocumentFilter, page: Page
    ) -> tuple[list[DocumentRow], int]:
        where = ["dataset_id = ?"]
        args: list[Any] = [dataset_id]
        for condition, value in (  # each filter that is set: its condition and argument
            (f"name {self.db.like} ? ESCAPE '\\'", flt.keywords and codec.like(flt.keywords)),
            ("id = ?", flt.doc_id),
            ("name = ?", flt.name),
            ("create_time >= ?", flt.create_time_from),
            ("create_time <= ?", flt.create_time_to),
        ):
            if value:
                where.append(condition)
                args.append(value)
        for column, values in (("suffix", flt.suffixes), ("run", flt.runs)):
            if values:
                condition, more = self.db.among(column, values)
                where.append(condition)
                args.extend(more)
        order = flt.orderby if flt.orderby in ("update_time", "name", "size") else "create_time"
        direction = "DESC" if flt.desc else "ASC"  # ties: insertion order, same direction
        rows, total = self._page(
            "SELECT * FROM documents",
            "documents",
            " AND ".join(where),
            args,
            f"{order} {direction}, {self.db.rowid} {direction}",
            page,
        )
        return [codec.document(r) for r in rows], total

    def update_document(
        self, doc: Mapping[str, Any], changes: Mapping[str, Any], reset: bool = False
    ) -> DocumentRow:
        """Apply ``changes``; ``reset`` also drops the chunks and sets the document UNSTART."""
        doc_id = str(doc["id"])
        with self.db.write() as c:
            if (
                "name" in changes
                and c.execute(
                    "SELECT 1 FROM documents WHERE dataset_id = ? AND name = ? AND id != ?",
                    (doc["dataset_id"], changes["name"], doc_id),
                ).fetchone()
            ):
                raise Conflict("Duplicated document name in the same dataset.")
            values = codec.encoded(changes, codec.DOCUMENT_COLUMNS)
            if "name" in values:
                values["location"] = values["name"]
                c.execute("UPDATE chunks SET docnm = ? WHERE doc_id = ?", (values["name"], doc_id))
                self.db.reindex_chunks(c, "doc_id = ?", (doc_id,))
            if reset:
                replace_document_chunks(self.db, c, doc_id, [])
                cancel_open_tasks(c, doc_id, "chunk method changed", time.time())
                values.update(run="0", progress=0, progress_msg="", process_duration=0)
            if "status" in values:
                c.execute(
                    "UPDATE chunks SET available = ? WHERE doc_id = ?",
                    (int(values["status"]), doc_id),
                )
            sets = "".join(f"{col} = ?, " for col in values)
            c.execute(
                f"UPDATE documents SET {sets}update_time = ? WHERE id = ?",
                (*values.values(), codec.now_ms(), doc_id),
            )
        found = self.get_document(str(doc["dataset_id"]), doc_id)
        if found is None:
            raise NotFound(doc_id)
        return found

    def delete_documents(self, dataset_id: str, doc_ids: Sequence[str]) -> list[str]:
        """Delete the documents that exist; returns the ids that did not."""
        missing: list[str] = []
        with self.db.write() as c:
            for doc_id in doc_ids:
                cur = c.execute(
                    "DELETE FROM documents WHERE dataset_id = ? AND id = ?", (dataset_id, doc_id)
                )
                if cur.rowcount == 0:
                    missing.append(doc_id)
        for doc_id in doc_ids:
            if doc_id not in missing:
                self.files.delete_document(dataset_id, doc_id)
        return missing

    def document_ids(self, dataset_id: str) -> list[str]:
        rows = self._all(
            f"SELECT id FROM documents WHERE dataset_id = ? ORDER BY create_time, {self.db.rowid}",
            (dataset_id,),
        )
        return [str(r[0]) for r in rows]

    def documents_in(self, dataset_ids: Sequence[str]) -> set[str]:
        if not dataset_ids:
            return set()
        condition, args = self.db.among("dataset_id", dataset_ids)
        return {str(r[0]) for r in self._all(f"SELECT id FROM documents WHERE {condition}", args)}

    # chunks --------------------------------------------------------------------------
    def list_chunks(
        self, doc_id: str, page: Page, keywords: str = "", chunk: str = ""
    ) -> tuple[list[ChunkRow], int]:
        where, args = ["c.doc_id = ?"], [doc_id]
        if chunk:
            where.append("c.id = ?")
            args.append(chunk)
        terms = text.query_terms(keywords) if keywords else []
        if terms:
            # the chunk content only, as RAGFlow's list filter (not the document name)
            condition, more = self.db.content_match(terms)
            where.append(condition)
            args.extend(more)
        rows, total = self._page(
            f"SELECT {codec.chunk_columns('c.')} FROM chunks c",
            "chunks c",
            " AND ".join(where),
            args,
            "c.seq",
            page,
        )
        return [codec.chunk(r) for r in rows], total

    def get_chunk(self, doc_id: str, chunk: str) -> ChunkRow | None:
        row = self._one(
            f"SELECT {codec.chunk_columns()} FROM chunks WHERE doc_id = ? AND id = ?",
            (doc_id, chunk),
        )
        return None if row is None else codec.chunk(row)

    def add_chunk(self, doc: Mapping[str, Any], fields: Mapping[str, Any]) -> ChunkRow:
        doc_id = str(doc["id"])
        content = str(fields["content"])
        new_id = chunk_id(content, doc_id)
        keywords, questions = fields.get("important_keywords"), fields.get("questions")
        refreshed = ("important_keywords", "questions", "available", "positions", "create_time")
        with self.db.write() as c:
            index = self.db.chunk_index(c, content, str(doc["name"]), keywords, questions)
            # the same content again replaces the chunk (its id is a hash of content and
            # document), as RAGFlow's document store does, and still counts one more
            c.execute(
                insert_sql(
                    "chunks",
                    _ADDED_CHUNK,
                    index,
                    " ON CONFLICT (id) DO UPDATE SET "
                    + ", ".join(f"{col} = excluded.{col}" for col in (*refreshed, *index)),
                ),
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
                    *(value for _, value in index.values()),
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
        with self.db.write() as c:
            if values:
                sets = ", ".join(f"{col} = ?" for col in values)
                cur = c.execute(
                    f"UPDATE chunks SET {sets} WHERE doc_id = ? AND id = ?",
                    (*values.values(), doc_id, chunk),
                )
                if cur.rowcount != 1:
                    raise NotFound(chunk)
                self.db.reindex_chunks(c, "doc_id = ? AND id = ?", (doc_id, chunk))
            count_chunk_change(c, doc_id, 0)
        found = self.get_chunk(doc_id, chunk)
        if found is None:
            raise NotFound(chunk)
        return found

    def delete_chunks(self, doc_id: str, chunk_ids: Sequence[str] | None) -> int:
        with self.db.write() as c:
            if chunk_ids is None:
                deleted = c.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,)).rowcount
            elif chunk_ids:
                condition, args = self.db.among("id", chunk_ids)
                deleted = c.execute(
                    f"DELETE FROM chunks WHERE doc_id = ? AND {condition}", (doc_id, *args)
                ).rowcount
            else:
                deleted = 0
            count_chunk_change(c, doc_id, -int(deleted))
        return int(deleted)

    def replace_chunks(self, doc_id: str, chunks: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        with self.db.write() as c:
            return replace_document_chunks(self.db, c, doc_id, chunks)

    def search_chunks(
        self,
        dataset_ids: Sequence[str],
        doc_ids: Sequence[str],
        terms: Sequence[str],
        limit: int,
    ) -> list[ChunkHit]:
        """Available chunks matching any term, best first (content < title < keywords <
        questions in weight), at most ``limit``: only the columns retrieval scores on (id,
        doc_id, docnm, content, important_keywords, questions) and ``bm25`` (lower is
        better)."""
        if not terms or not dataset_ids:
            return []
        with self.db.read() as c:
            rows = list(self.db.search(c, dataset_ids, doc_ids, terms, limit))
        return [
            {
                "id": chunk,
                "doc_id": doc_id,
                "docnm": docnm,
                "content": content,
                "important_keywords": codec.json_list_value(keywords),
                "questions": codec.json_list_value(questions),
                "bm25": float(bm25),
            }
            for chunk, doc_id, docnm, content, keywords, questions, bm25 in rows
        ]

    def chunks_by_id(self, chunk_ids: Sequence[str]) -> dict[str, ChunkRow]:
        """The chunks with these ids, by id (ids that no longer exist are absent)."""
        if not chunk_ids:
            return {}
        condition, args = self.db.among("id", chunk_ids)
        rows = self._all(f"SELECT {codec.chunk_columns()} FROM chunks WHERE {condition}", args)
        return {str(r["id"]): codec.chunk(r) for r in rows}

    def sample_chunk(self) -> tuple[str, str, str] | None:
        row = self._one(
            "SELECT d.tenant_id, c.dataset_id, c.content FROM chunks c"
            " JOIN datasets d ON d.id = c.dataset_id WHERE c.available = 1 LIMIT 1",
            (),
        )
        if row is None:
            return None
        return str(row["tenant_id"]), str(row["dataset_id"]), str(row["content"])


def _free_name(c: Session, dataset_id: str, name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    candidate = name
    for n in range(1, 100_000):
        if not c.execute(
            "SELECT 1 FROM documents WHERE dataset_id = ? AND name = ?", (dataset_id, candidate)
        ).fetchone():
            return candidate
        candidate = f"{stem}({n}).{ext}" if dot else f"{stem}({n})"
    raise Conflict(f"Too many documents named {name!r}")
