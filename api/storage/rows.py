"""The values that cross the storage seam, whatever the backend: explicit types, so that a
second backend returns the same shapes and a caller never depends on a driver's row object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any, TypedDict

import xxhash


def chunk_id(content: str, doc_id: str) -> str:
    """A chunk's id: a hash of its content and document, as RAGFlow's (the same content added
    to the same document again is the same chunk), the same on every backend."""
    return xxhash.xxh64((content + doc_id).encode("utf-8")).hexdigest()


# documents.run values (RAGFlow's TaskStatus)
RUN_UNSTART = "0"
RUN_RUNNING = "1"
RUN_CANCEL = "2"
RUN_DONE = "3"
RUN_FAIL = "4"


class ApiKeyRow(TypedDict):
    """A stored API key, without its hash (the key itself is never stored)."""

    prefix: str
    tenant_id: str
    name: str
    create_time: int  # epoch milliseconds
    revoked_time: int | None


class DatasetRow(TypedDict):
    id: str
    tenant_id: str
    name: str
    avatar: str | None
    description: str | None
    embedding_model: str
    permission: str
    chunk_method: str
    parser_config: dict[str, Any]
    pagerank: int
    language: str
    create_time: int  # epoch milliseconds
    update_time: int
    document_count: int  # computed: the dataset's documents
    chunk_count: int  # computed: their chunks
    token_num: int  # computed: their tokens


class DocumentRow(TypedDict):
    id: str
    dataset_id: str
    name: str
    suffix: str
    type: str
    size: int
    location: str
    created_by: str
    chunk_method: str
    parser_config: dict[str, Any]
    meta_fields: dict[str, Any]
    status: str  # "1" enabled, "0" disabled
    run: str  # RUN_* below
    progress: float
    progress_msg: str
    process_begin_at: float | None  # epoch seconds
    process_duration: float
    chunk_count: int
    token_count: int
    create_time: int  # epoch milliseconds
    update_time: int


class ChunkRow(TypedDict):
    id: str  # xxhash64 hex of content + document id
    doc_id: str
    dataset_id: str
    docnm: str  # the document's name
    content: str
    important_keywords: list[str]
    questions: list[str]
    available: bool
    positions: list[Any]
    token_count: int
    create_time: float  # epoch seconds


class ChunkHit(TypedDict):
    """A full-text search candidate: what retrieval scores, and its BM25 rank (lower: better)."""

    id: str
    doc_id: str
    docnm: str
    content: str
    important_keywords: list[str]
    questions: list[str]
    bm25: float


@dataclass(frozen=True)
class Page:
    number: int = 1
    size: int = 30

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


@dataclass(frozen=True)
class DocumentFilter:
    keywords: str = ""
    doc_id: str = ""
    name: str = ""
    suffixes: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()
    create_time_from: int = 0
    create_time_to: int = 0
    orderby: str = "create_time"
    desc: bool = True


@dataclass(frozen=True)
class Upload:
    name: str
    suffix: str
    file_type: str
    stream: IO[bytes]
    chunk_method: str | None = None


@dataclass(frozen=True)
class Task:
    """A claimed task plus what the executor needs to parse its document.
    ``(lease_owner, attempts)`` is the fencing token of the claim."""

    id: str
    doc_id: str
    dataset_id: str
    attempts: int
    lease_owner: str
    lease_expires: float
    name: str
    suffix: str
    chunk_method: str
    parser_config: dict[str, Any]


class QueueDepth(TypedDict):
    """Open tasks: waiting, leased with a valid lease, leased with the lease run out."""

    queued: int
    running: int
    expired: int


class ExecutorStatus(TypedDict):
    """One task executor's last heartbeat; ``stale``: running but silent too long."""

    consumer: str
    host: str
    pid: int
    current_task: str | None
    done: int
    failed: int
    started_at: float
    last_beat: float
    state: str  # idle | busy | stopping | stopped
    stale: bool
