"""The values that cross the storage seam, whatever the backend: explicit types, so that a
second backend returns the same shapes and a caller never depends on a driver's row object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any, TypedDict

# An HTTP-layer record (dataset, document, chunk, key): column name -> decoded value (JSON
# columns as lists and dicts). Its keys are the columns of docs/architecture.md.
Row = dict[str, Any]

# documents.run values (RAGFlow's TaskStatus)
RUN_UNSTART = "0"
RUN_RUNNING = "1"
RUN_CANCEL = "2"
RUN_DONE = "3"
RUN_FAIL = "4"


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
