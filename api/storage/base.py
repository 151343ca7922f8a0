"""The storage seam: what the rest of the application codes against.

A backend (``api.storage.sqlite``, ``api.storage.postgres``) implements every protocol here,
raises only ``api.storage.errors`` and returns only ``api.storage.rows`` types; the queue and the
repository are one implementation for both (``queue_sql``, ``repository_sql``) over each
backend's ``api.storage.dialect.Dialect``. ``api.storage.open_backend`` is the one factory that
picks the backend from DATABASE_URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from api.storage.rows import (
    ApiKeyRow,
    ChunkHit,
    ChunkRow,
    DatasetRow,
    DocumentFilter,
    DocumentRow,
    ExecutorStatus,
    Page,
    QueueDepth,
    Task,
    Upload,
)
from shared import settings

# A chunk given to storage: ``content`` (str), optional ``important_keywords``, ``questions``,
# ``positions`` (lists), ``available`` (bool), ``token_count`` (int). Identical contents of
# one document collapse into one chunk (same id).
ChunkInput = Mapping[str, Any]


class FileStore(Protocol):
    """Uploaded bytes and the file system under DATA_DIR (health probes included)."""

    def file_path(self, document: Mapping[str, Any]) -> Path: ...

    def local_copy(self, document: Mapping[str, Any]) -> AbstractContextManager[Path]:
        """A local file with the document's bytes for the time of the block (a parse): the
        stored file where it is local, else a copy that is never synced and is removed after
        the block (or, should the process die, by the next ``sweep_staging``)."""

    def check_files(self) -> None:
        """Raise Unavailable("storage", ...) unless a file can be written under DATA_DIR/files."""

    def free_bytes(self) -> int:
        """Bytes free for this process on the file system holding DATA_DIR."""

    def sweep_staging(self) -> int:
        """Remove staged upload files that no live process is writing; return how many."""


class Storage(FileStore, Protocol):
    """The records the HTTP layer reads and writes (keys, datasets, documents, chunks) and
    the health of the database."""

    def check(self) -> None:
        """Raise Unavailable("db", ...) unless the database answers a read."""

    def check_writes(self) -> None:
        """Raise Unavailable("writes", ...) unless a write would succeed now; answers within
        about a second even when another process holds the writer lock."""

    def add_key(self, key_hash: str, prefix: str, tenant_id: str, name: str) -> None: ...
    def key_tenant(self, key_hash: str) -> str | None: ...
    def list_keys(self) -> list[ApiKeyRow]: ...
    def revoke_keys(self, prefix: str) -> int: ...

    def create_dataset(self, tenant_id: str, fields: Mapping[str, Any]) -> DatasetRow: ...
    def get_dataset(self, tenant_id: str, dataset_id: str) -> DatasetRow | None: ...
    def dataset_named(self, tenant_id: str, name: str) -> DatasetRow | None: ...
    def list_datasets(
        self,
        tenant_id: str,
        page: Page,
        orderby: str,
        desc: bool,
        dataset_id: str | None = None,
        name: str | None = None,
    ) -> tuple[list[DatasetRow], int]: ...
    def update_dataset(
        self, tenant_id: str, dataset_id: str, changes: Mapping[str, Any]
    ) -> DatasetRow: ...
    def delete_datasets(self, tenant_id: str, dataset_ids: Sequence[str]) -> int: ...
    def tenant_dataset_ids(self, tenant_id: str) -> list[str]: ...

    def add_documents(
        self, dataset: Mapping[str, Any], uploads: Sequence[Upload], created_by: str
    ) -> list[DocumentRow]: ...
    def get_document(self, dataset_id: str, doc_id: str) -> DocumentRow | None: ...
    def document_named(self, dataset_id: str, name: str) -> DocumentRow | None: ...
    def list_documents(
        self, dataset_id: str, flt: DocumentFilter, page: Page
    ) -> tuple[list[DocumentRow], int]: ...
    def update_document(
        self, doc: Mapping[str, Any], changes: Mapping[str, Any], reset: bool = False
    ) -> DocumentRow: ...
    def delete_documents(self, dataset_id: str, doc_ids: Sequence[str]) -> list[str]: ...
    def document_ids(self, dataset_id: str) -> list[str]: ...
    def documents_in(self, dataset_ids: Sequence[str]) -> set[str]: ...

    def list_chunks(
        self, doc_id: str, page: Page, keywords: str = "", chunk: str = ""
    ) -> tuple[list[ChunkRow], int]: ...
    def get_chunk(self, doc_id: str, chunk: str) -> ChunkRow | None: ...
    def add_chunk(self, doc: Mapping[str, Any], fields: Mapping[str, Any]) -> ChunkRow:
        """Add a chunk; the same content again replaces that chunk (same id). Either way the
        document's chunk_count grows by one (RAGFlow's counter)."""

    def update_chunk(self, doc_id: str, chunk: str, changes: Mapping[str, Any]) -> ChunkRow:
        """Change a chunk's fields; chunk_count stays."""

    def delete_chunks(self, doc_id: str, chunk_ids: Sequence[str] | None) -> int:
        """Delete the chunks (None: all of the document's); chunk_count drops by the number
        deleted, which is returned."""

    def replace_chunks(self, doc_id: str, chunks: Sequence[ChunkInput]) -> tuple[int, int]:
        """Replace every chunk of the document in one transaction (bulk loads, benchmarks);
        returns (chunk_count, token_count)."""

    def search_chunks(
        self,
        dataset_ids: Sequence[str],
        doc_ids: Sequence[str],
        terms: Sequence[str],
        limit: int,
    ) -> list[ChunkHit]: ...
    def chunks_by_id(self, chunk_ids: Sequence[str]) -> dict[str, ChunkRow]: ...
    def sample_chunk(self) -> tuple[str, str, str] | None:
        """(tenant id, dataset id, content) of one available chunk; None when there is none."""


class TaskQueue(Protocol):
    """The durable parse-task queue: leases (visibility timeouts), fencing by
    ``(lease_owner, attempts)``, tenants taking turns. Every operation is one transaction
    that also moves the document's state (run, progress, progress_msg, chunks)."""

    def enqueue_parse(self, dataset_id: str, doc_ids: Sequence[str]) -> list[str]:
        """Reset each document (RUNNING, progress 0, counts 0, chunks removed), cancel its
        older tasks and queue one new task. Returns the new task ids, in order. Documents not
        in ``dataset_id`` raise ``LookupError`` and nothing changes."""

    def cancel_parse(self, dataset_id: str, doc_ids: Sequence[str]) -> int:
        """Documents become CANCEL with no chunks, their open tasks cancelled; returns how
        many documents changed."""

    def claim(self, consumer: str, lease_seconds: float, *, max_attempts: int = 3) -> Task | None:
        """Lease the next ready task (tenants take turns, each tenant's in queue order); a
        task past ``max_attempts`` fails its document instead. None when nothing is ready."""

    def renew(self, task: Task, lease_seconds: float) -> bool:
        """Extend the lease; False when the claim is no longer current."""

    def report_progress(self, task: Task, progress: float, message: str = "") -> bool:
        """Set the document's progress (0..1), append ``message``; False means stop working."""

    def complete(self, task: Task, chunks: Sequence[ChunkInput]) -> bool:
        """Replace the document's chunks and mark it DONE; False, with nothing changed, when
        the claim is no longer current."""

    def complete_and_claim(
        self,
        task: Task,
        chunks: Sequence[ChunkInput],
        lease_seconds: float,
        *,
        max_attempts: int = 3,
    ) -> tuple[bool, Task | None]:
        """``complete`` then ``claim`` the consumer's next task in the same transaction; a
        failing claim never undoes the completion."""

    def fail(self, task: Task, error: str) -> bool:
        """The document becomes FAIL with ``[ERROR] <error>``; False when no longer ours."""

    def release(self, task: Task, reason: str = "", *, count_attempt: bool = False) -> bool:
        """Hand the task back (executor stopping), the attempt not counted unless
        ``count_attempt`` (the task may be why the executor stops, e.g. its memory limit)."""

    def oldest_pending_age(self) -> float:
        """Seconds the oldest task waiting for an executor has waited; 0 when none waits."""

    def depth(self, *, tenant_id: str | None = None) -> QueueDepth:
        """Counts of open tasks, all tenants' or one tenant's."""

    def wait_for_work(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds; True as soon as a task was queued meanwhile (a
        backend that is told: PostgreSQL's LISTEN), False when the time ran out (SQLite:
        always; its executors poll)."""


class Heartbeats(Protocol):
    """Task executors' liveness records."""

    def beat(
        self,
        consumer: str,
        *,
        host: str,
        pid: int,
        started_at: float,
        state: str,
        current_task: str | None = None,
        done: int = 0,
        failed: int = 0,
    ) -> None: ...

    def executors(self, stale_after: float = 15.0) -> list[ExecutorStatus]:
        """Every executor that ever beat, ``stale`` when a running one has been silent for
        ``stale_after`` seconds."""


def _table_default(name: str) -> int:
    """A setting's default, from the one settings table (shared/settings.py)."""
    default = settings.BY_NAME[name].default
    if not isinstance(default, int):
        raise TypeError(f"{name}: the settings table gives no integer default")
    return default


@dataclass(frozen=True)
class PoolSettings:
    """How a server backend (PostgreSQL) connects: at most DB_POOL_SIZE connections per
    process, DB_CONNECT_TIMEOUT seconds to get one; each session's DB_STATEMENT_TIMEOUT_MS,
    DB_LOCK_TIMEOUT_MS and DB_IDLE_IN_TRANSACTION_TIMEOUT_MS (shared/settings.py documents
    each and gives the defaults). SQLite ignores them."""

    size: int = _table_default("DB_POOL_SIZE")
    connect_timeout: float = _table_default("DB_CONNECT_TIMEOUT")
    statement_timeout_ms: int = _table_default("DB_STATEMENT_TIMEOUT_MS")
    lock_timeout_ms: int = _table_default("DB_LOCK_TIMEOUT_MS")
    idle_in_transaction_timeout_ms: int = _table_default("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS")


class Migrations(Protocol):
    def migrate(self) -> int:
        """Bring the schema up to date (safe when several processes do it at once); returns
        the schema version."""


# The tables ``api.storage.data_copy`` moves between backends, in dependency order, each with its
# key and the columns both backends store with the same values (api.storage.codec).
TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "api_keys": ("key_hash", ("key_hash", "prefix", "tenant_id", "name", "create_time",
                              "revoked_time")),
    "datasets": ("id", ("id", "tenant_id", "name", "avatar", "description", "embedding_model",
                        "permission", "chunk_method", "parser_config", "pagerank", "language",
                        "create_time", "update_time")),
    "documents": ("id", ("id", "dataset_id", "name", "suffix", "type", "size", "location",
                         "created_by", "chunk_method", "parser_config", "meta_fields", "status",
                         "run", "progress", "progress_msg", "process_begin_at",
                         "process_duration", "chunk_count", "token_count", "create_time",
                         "update_time")),
    "chunks": ("id", ("id", "doc_id", "dataset_id", "docnm", "content", "important_keywords",
                      "questions", "available", "positions", "token_count", "create_time")),
    "tasks": ("id", ("id", "doc_id", "dataset_id", "tenant_id", "turn", "state", "attempts",
                     "lease_owner", "lease_expires", "enqueued_at", "started_at", "finished_at",
                     "last_error")),
}  # fmt: skip


class Transfer(Protocol):
    """Whole tables and uploaded files, for moving data between backends (api.storage.data_copy)."""

    def rows(self, table: str) -> Iterator[dict[str, Any]]:
        """Every row of ``table`` (a TABLES key), its TABLES columns only, in key order."""

    def put_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert the rows whose key is not stored yet, in one transaction; returns how many."""

    def has_file(self, document: Mapping[str, Any]) -> bool: ...
    def open_file(self, document: Mapping[str, Any]) -> IO[bytes]: ...
    def put_file(self, document: Mapping[str, Any], stream: IO[bytes]) -> None:
        """Store the document's uploaded bytes (streamed; all of them or nothing)."""


@dataclass(frozen=True)
class Backend:
    """One backend's implementations of the seam, as ``open_backend`` returns them."""

    name: str  # "sqlite"
    location: str  # where the data lives, for messages (a path; never a password)
    store: Storage
    tasks: TaskQueue
    heartbeats: Heartbeats
    migrations: Migrations
    transfer: Transfer
    # Close the calling thread's connections (threads that end, processes that stop; a forked
    # child never reuses its parent's connections anyway).
    close: Callable[[], None]
