"""The Storage seam (keys, datasets, documents, chunks, database health) on SQLite: every query
of the HTTP layer. Files go through the file store; rows through the codec."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from api import text
from api.storage import codec
from api.storage import files as file_store
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
from api.storage.sqlite.connections import check_read, connection, probe_writes, seam, transaction
from api.storage.sqlite.document_state import (
    cancel_open_tasks,
    count_chunk_change,
    replace_document_chunks,
)

_DATASET_SELECT = (
    "SELECT d.*, (SELECT COUNT(*) FROM documents WHERE dataset_id = d.id) AS document_count,"
    " (SELECT COALESCE(SUM(chunk_count), 0) FROM documents WHERE dataset_id = d.id)"
    " AS chunk_count,"
    " (SELECT COALESCE(SUM(token_count), 0) FROM documents WHERE dataset_id = d.id) AS token_num"
    " FROM datasets d"
)

_FTS_ROWIDS = "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?"


_T = TypeVar("_T")


@seam
class SqliteStorage:
    """The Storage interface on one SQLite file under DATA_DIR."""

    def __init__(self, data_dir: Path, db_path: Path | None = None) -> None:
        self.data_dir = data_dir
        self.db_path = db_path if db_path is not None else data_dir / "ragflow.db"
        self.files = LocalFileStore(data_dir)

    @property
    def conn(self) -> sqlite3.Connection:
        return connection(self.db_path)

    def check(self) -> None:
        check_read(self.conn, "SELECT 1 FROM datasets LIMIT 1")

    def check_writes(self) -> None:
        probe_writes(self.conn, self.data_dir)

    def check_files(self) -> None:
        self.files.check_files()

    def free_bytes(self) -> int:
        return self.files.free_bytes()

    def sweep_staging(self) -> int:
        return self.files.sweep_staging()

    def file_path(self, document: Mapping[str, Any]) -> Path:
        return self.files.file_path(document)

    # keys ----------------------------------------------------------------------------
    def add_key(self, key_hash: str, prefix: str, tenant_id: str, name: str) -> None:
        with transaction(self.conn) as c:
            c.execute(
                "INSERT INTO api_keys (key_hash, prefix, tenant_id, name, create_time)"
                " VALUES (?, ?, ?, ?, ?)",
                (key_hash, prefix, tenant_id, name, codec.now_ms()),
            )

    def key_tenant(self, key_hash: str) -> str | None:
        row = self.conn.execute(
            "SELECT key_hash, tenant_id FROM api_keys WHERE key_hash = ? AND revoked_time IS NULL",
            (key_hash,),
        ).fetchone()
        return None if row is None else str(row["tenant_id"])

    def list_keys(self) -> list[ApiKeyRow]:
        rows = self.conn.execute(
            "SELECT prefix, tenant_id, name, create_time, revoked_time FROM api_keys"
            " ORDER BY create_time"
        )
        return [codec.api_key(r) for r in rows]

    def revoke_keys(self, prefix: str) -> int:
        with transaction(self.conn) as c:
            cur = c.execute(
                "UPDATE api_keys SET revoked_time = ? WHERE revoked_time IS NULL"
                " AND (substr(key_hash, 1, length(?)) = ? OR prefix = ?)",
                (codec.now_ms(), prefix, prefix, prefix),
            )
            return cur.rowcount

    # datasets ------------------------------------------------------------------------
    def create_dataset(self, tenant_id: str, fields: Mapping[str, Any]) -> DatasetRow:
        dataset_id = uuid.uuid1().hex
        now = codec.now_ms()
        with transaction(self.conn) as c:
            base = str(fields["name"])
            name = base
            for n in range(1, 10_000):
                if not c.execute(
                    "SELECT 1 FROM datasets WHERE tenant_id = ? AND name = ? COLLATE NOCASE",
                    (tenant_id, name),
                ).fetchone():
                    break
                name = f"{base}({n})"
            values = {
                col: codec.encode(col, fields[col])
                for col in codec.DATASET_COLUMNS
                if col in fields
            }
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
        return _one(
            codec.dataset,
            self.conn.execute(
                f"{_DATASET_SELECT} WHERE d.tenant_id = ? AND d.id = ?", (tenant_id, dataset_id)
            ).fetchone(),
        )

    def dataset_named(self, tenant_id: str, name: str) -> DatasetRow | None:
        return _one(
            codec.dataset,
            self.conn.execute(
                f"{_DATASET_SELECT} WHERE d.tenant_id = ? AND d.name = ? COLLATE NOCASE",
                (tenant_id, name),
            ).fetchone(),
        )

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
            where.append("d.name = ? COLLATE NOCASE")
            args.append(name)
        clause = " AND ".join(where)
        total = self.conn.execute(
            f"SELECT COUNT(*) FROM datasets d WHERE {clause}", args
        ).fetchone()[0]
        order = "update_time" if orderby == "update_time" else "create_time"
        direction = "DESC" if desc else "ASC"  # ties: insertion order, same direction
        rows = self.conn.execute(
            f"{_DATASET_SELECT} WHERE {clause} ORDER BY d.{order} {direction},"
            f" d.rowid {direction} LIMIT ? OFFSET ?",
            (*args, page.size, page.offset),
        )
        return [codec.dataset(r) for r in rows], int(total)

    def update_dataset(
        self, tenant_id: str, dataset_id: str, changes: Mapping[str, Any]
    ) -> DatasetRow:
        with transaction(self.conn) as c:
            if "name" in changes:
                clash = c.execute(
                    "SELECT 1 FROM datasets WHERE tenant_id = ? AND name = ? COLLATE NOCASE"
                    " AND id != ?",
                    (tenant_id, changes["name"], dataset_id),
                ).fetchone()
                if clash:
                    raise Conflict(f"Dataset name '{changes['name']}' already exists")
            values = {
                col: codec.encode(col, changes[col])
                for col in codec.DATASET_COLUMNS
                if col in changes
            }
            sets = ", ".join(f"{col} = ?" for col in values)
            cur = c.execute(
                f"UPDATE datasets SET {sets}{', ' if sets else ''}update_time = ?"
                " WHERE tenant_id = ? AND id = ?",
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
        with transaction(self.conn) as c:
            deleted = 0
            for dataset_id in dataset_ids:
                deleted += c.execute(
                    "DELETE FROM datasets WHERE tenant_id = ? AND id = ?", (tenant_id, dataset_id)
                ).rowcount
        for dataset_id in dataset_ids:
            self.files.delete_dataset(dataset_id)
        return deleted

    def tenant_dataset_ids(self, tenant_id: str) -> list[str]:
        rows = self.conn.execute("SELECT id FROM datasets WHERE tenant_id = ?", (tenant_id,))
        return [str(r[0]) for r in rows]

    # documents -----------------------------------------------------------------------
    def add_documents(
        self, dataset: Mapping[str, Any], uploads: Sequence[Upload], created_by: str
    ) -> list[DocumentRow]:
        """Store the files and their rows together: all of them, or none."""
        dataset_id = str(dataset["id"])
        written: list[Path] = []  # every file this call created; removed if anything fails
        held: list[IO[bytes]] = []  # staged files stay open and flocked until renamed (fs.sweep)
        ids: list[str] = []
        try:
            self.files.dataset_folder(dataset_id)
            staged: list[tuple[Path, int]] = []
            for upload in uploads:
                tmp, out, size = self.files.stage(upload.stream)
                held.append(out)
                written.append(tmp)
                staged.append((tmp, size))
            with transaction(self.conn) as c:
                for upload, (tmp, size) in zip(uploads, staged, strict=True):
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
                    written.append(self.files.file_path({"dataset_id": dataset_id, "id": doc_id}))
                    self.files.put(tmp, dataset_id, doc_id)
                    ids.append(doc_id)
        except BaseException:
            file_store.remove(written)
            raise
        finally:
            for out in held:
                out.close()
        return [d for d in (self.get_document(dataset_id, i) for i in ids) if d]

    def get_document(self, dataset_id: str, doc_id: str) -> DocumentRow | None:
        return _one(
            codec.document,
            self.conn.execute(
                "SELECT * FROM documents WHERE dataset_id = ? AND id = ?", (dataset_id, doc_id)
            ).fetchone(),
        )

    def document_named(self, dataset_id: str, name: str) -> DocumentRow | None:
        return _one(
            codec.document,
            self.conn.execute(
                "SELECT * FROM documents WHERE dataset_id = ? AND name = ?", (dataset_id, name)
            ).fetchone(),
        )

    def list_documents(
        self, dataset_id: str, flt: DocumentFilter, page: Page
    ) -> tuple[list[DocumentRow], int]:
        where, args = ["dataset_id = ?"], [dataset_id]
        if flt.keywords:
            where.append("name LIKE ? ESCAPE '\\'")
            args.append(codec.like(flt.keywords))
        if flt.doc_id:
            where.append("id = ?")
            args.append(flt.doc_id)
        if flt.name:
            where.append("name = ?")
            args.append(flt.name)
        if flt.suffixes:
            where.append(f"suffix IN ({', '.join('?' * len(flt.suffixes))})")
            args.extend(flt.suffixes)
        if flt.runs:
            where.append(f"run IN ({', '.join('?' * len(flt.runs))})")
            args.extend(flt.runs)
        if flt.create_time_from:
            where.append("create_time >= ?")
            args.append(str(flt.create_time_from))
        if flt.create_time_to:
            where.append("create_time <= ?")
            args.append(str(flt.create_time_to))
        clause = " AND ".join(where)
        total = self.conn.execute(f"SELECT COUNT(*) FROM documents WHERE {clause}", args)
        order = flt.orderby if flt.orderby in ("update_time", "name", "size") else "create_time"
        direction = "DESC" if flt.desc else "ASC"  # ties: insertion order, same direction
        rows = self.conn.execute(
            f"SELECT * FROM documents WHERE {clause} ORDER BY {order} {direction},"
            f" rowid {direction} LIMIT ? OFFSET ?",
            (*args, page.size, page.offset),
        )
        return [codec.document(r) for r in rows], int(total.fetchone()[0])

    def update_document(
        self, doc: Mapping[str, Any], changes: Mapping[str, Any], reset: bool = False
    ) -> DocumentRow:
        """Apply ``changes``; ``reset`` also drops the chunks and sets the document UNSTART."""
        doc_id = str(doc["id"])
        with transaction(self.conn) as c:
            if (
                "name" in changes
                and c.execute(
                    "SELECT 1 FROM documents WHERE dataset_id = ? AND name = ? AND id != ?",
                    (doc["dataset_id"], changes["name"], doc_id),
                ).fetchone()
            ):
                raise Conflict("Duplicated document name in the same dataset.")
            values = {
                col: codec.encode(col, changes[col])
                for col in codec.DOCUMENT_COLUMNS
                if col in changes
            }
            if "name" in values:
                values["location"] = values["name"]
                c.execute("UPDATE chunks SET docnm = ? WHERE doc_id = ?", (values["name"], doc_id))
            if reset:
                replace_document_chunks(c, doc_id, [])
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
        with transaction(self.conn) as c:
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
        rows = self.conn.execute(
            "SELECT id FROM documents WHERE dataset_id = ? ORDER BY create_time", (dataset_id,)
        )
        return [str(r[0]) for r in rows]

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
            # The full-text query runs once, as a list subquery; joined to chunks, SQLite
            # would run it again for every chunk of the document (seconds per request).
            # The chunk content only, as RAGFlow's list filter (not the document name).
            where.append(f"c.seq IN ({_FTS_ROWIDS})")
            args.append(f"content : ({codec.fts_query(terms)})")
        clause = " AND ".join(where)
        total = self.conn.execute(f"SELECT COUNT(*) FROM chunks c WHERE {clause}", args)
        rows = self.conn.execute(
            f"SELECT c.* FROM chunks c WHERE {clause} ORDER BY c.seq LIMIT ? OFFSET ?",
            (*args, page.size, page.offset),
        )
        return [codec.chunk(r) for r in rows], int(total.fetchone()[0])

    def get_chunk(self, doc_id: str, chunk: str) -> ChunkRow | None:
        return _one(
            codec.chunk,
            self.conn.execute(
                "SELECT * FROM chunks WHERE doc_id = ? AND id = ?", (doc_id, chunk)
            ).fetchone(),
        )

    def add_chunk(self, doc: Mapping[str, Any], fields: Mapping[str, Any]) -> ChunkRow:
        doc_id = str(doc["id"])
        content = str(fields["content"])
        new_id = chunk_id(content, doc_id)
        with transaction(self.conn) as c:
            # the same content again replaces the chunk (its id is a hash of content and
            # document), as RAGFlow's document store does, and still counts one more
            c.execute(
                "INSERT INTO chunks (id, doc_id, dataset_id, docnm, content, important_keywords,"
                " questions, available, token_count, create_time)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " important_keywords = excluded.important_keywords,"
                " questions = excluded.questions, available = excluded.available,"
                " positions = excluded.positions, create_time = excluded.create_time",
                (
                    new_id,
                    doc_id,
                    doc["dataset_id"],
                    doc["name"],
                    content,
                    codec.json_list(fields.get("important_keywords")),
                    codec.json_list(fields.get("questions")),
                    1 if str(doc.get("status", "1")) == "1" else 0,
                    text.count_tokens(content),
                    time.time(),
                ),
            )
            count_chunk_change(c, doc_id, 1)
        found = self.get_chunk(doc_id, new_id)
        if found is None:
            raise NotFound(new_id)
        return found

    def update_chunk(self, doc_id: str, chunk: str, changes: Mapping[str, Any]) -> ChunkRow:
        values = {
            col: codec.encode(col, changes[col]) for col in codec.CHUNK_COLUMNS if col in changes
        }
        if "content" in values:
            values["token_count"] = text.count_tokens(str(values["content"]))
        with transaction(self.conn) as c:
            if values:
                sets = ", ".join(f"{col} = ?" for col in values)
                cur = c.execute(
                    f"UPDATE chunks SET {sets} WHERE doc_id = ? AND id = ?",
                    (*values.values(), doc_id, chunk),
                )
                if cur.rowcount != 1:
                    raise NotFound(chunk)
            count_chunk_change(c, doc_id, 0)
        found = self.get_chunk(doc_id, chunk)
        if found is None:
            raise NotFound(chunk)
        return found

    def delete_chunks(self, doc_id: str, chunk_ids: Sequence[str] | None) -> int:
        with transaction(self.conn) as c:
            if chunk_ids is None:
                deleted = c.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,)).rowcount
            else:
                deleted = sum(
                    c.execute(
                        "DELETE FROM chunks WHERE doc_id = ? AND id = ?", (doc_id, cid)
                    ).rowcount
                    for cid in chunk_ids
                )
            count_chunk_change(c, doc_id, -deleted)
        return deleted

    def replace_chunks(self, doc_id: str, chunks: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        with transaction(self.conn) as c:
            return replace_document_chunks(c, doc_id, chunks)

    def search_chunks(
        self,
        dataset_ids: Sequence[str],
        doc_ids: Sequence[str],
        terms: Sequence[str],
        limit: int,
    ) -> list[ChunkHit]:
        """Available chunks matching any term, best BM25 first (content < title < keywords
        < questions in weight), at most ``limit``: only the columns retrieval scores on
        (id, doc_id, docnm, content, important_keywords, questions) and bm25."""
        if not terms or not dataset_ids:
            return []
        where = [
            "chunks_fts MATCH ?",
            "c.available = 1",
            f"c.dataset_id IN ({', '.join('?' * len(dataset_ids))})",
        ]
        args: list[Any] = [codec.fts_query(terms), *dataset_ids]
        if doc_ids:
            where.append(f"c.doc_id IN ({', '.join('?' * len(doc_ids))})")
            args.extend(doc_ids)
        cursor = self.conn.cursor()
        cursor.row_factory = None  # plain tuples: cheaper than sqlite3.Row for many rows
        rows = cursor.execute(
            "SELECT c.id, c.doc_id, c.docnm, c.content, c.important_keywords, c.questions,"
            " bm25(chunks_fts, 1.0, 2.0, 3.0, 4.0) AS bm25 FROM chunks_fts"
            f" JOIN chunks c ON c.seq = chunks_fts.rowid WHERE {' AND '.join(where)}"
            " ORDER BY bm25 LIMIT ?",
            (*args, limit),
        )
        return [
            {
                "id": chunk,
                "doc_id": doc_id,
                "docnm": docnm,
                "content": content,
                "important_keywords": codec.json_list_value(keywords),
                "questions": codec.json_list_value(questions),
                "bm25": bm25,
            }
            for chunk, doc_id, docnm, content, keywords, questions, bm25 in rows
        ]

    def chunks_by_id(self, chunk_ids: Sequence[str]) -> dict[str, ChunkRow]:
        """The chunks with these ids, by id (ids that no longer exist are absent)."""
        if not chunk_ids:
            return {}
        rows = self.conn.execute(
            f"SELECT * FROM chunks WHERE id IN ({', '.join('?' * len(chunk_ids))})",
            tuple(chunk_ids),
        )
        return {str(r["id"]): codec.chunk(r) for r in rows}

    def documents_in(self, dataset_ids: Sequence[str]) -> set[str]:
        if not dataset_ids:
            return set()
        rows = self.conn.execute(
            f"SELECT id FROM documents WHERE dataset_id IN ({', '.join('?' * len(dataset_ids))})",
            tuple(dataset_ids),
        )
        return {str(r[0]) for r in rows}


def _free_name(conn: sqlite3.Connection, dataset_id: str, name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    candidate = name
    for n in range(1, 100_000):
        if not conn.execute(
            "SELECT 1 FROM documents WHERE dataset_id = ? AND name = ?", (dataset_id, candidate)
        ).fetchone():
            return candidate
        candidate = f"{stem}({n}).{ext}" if dot else f"{stem}({n})"
    raise Conflict(f"Too many documents named {name!r}")


def _one(decode: Callable[[sqlite3.Row], _T], found: sqlite3.Row | None) -> _T | None:
    return None if found is None else decode(found)
