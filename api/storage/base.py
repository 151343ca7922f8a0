"""The storage interface the HTTP layer codes against (a PostgreSQL backend can follow)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

Row = dict[str, Any]


class StorageError(Exception):
    """Base of the errors storage raises on purpose."""


class NotFound(StorageError):
    pass


class Conflict(StorageError):
    pass


class Unavailable(StorageError):
    """Storage cannot serve right now, through no fault of the request.

    ``component`` is the health check that reports the same cause (``db``: the database
    is unreachable, deleted or replaced; ``writes``: writes are blocked by a held lock, a
    full disk or a read-only file system; ``storage``: the files directory). The message
    names the cause and what to do."""

    def __init__(self, component: str, message: str) -> None:
        super().__init__(message)
        self.component = component
        self.message = message


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


class Storage(Protocol):
    def check(self) -> None:
        """Raise Unavailable("db", ...) unless the database answers a read."""

    def check_writes(self) -> None:
        """Raise Unavailable("writes", ...) unless a write would succeed now; answers within
        about a second even when another process holds the writer lock."""

    def check_files(self) -> None:
        """Raise Unavailable("storage", ...) unless a file can be written under DATA_DIR/files."""

    def free_bytes(self) -> int:
        """Bytes free for this process on the file system holding DATA_DIR."""

    def sweep_staging(self) -> int:
        """Remove staged upload files that no live process is writing; return how many."""

    def add_key(self, key_hash: str, prefix: str, tenant_id: str, name: str) -> None: ...
    def key_tenant(self, key_hash: str) -> str | None: ...
    def list_keys(self) -> list[Row]: ...
    def revoke_keys(self, prefix: str) -> int: ...

    def create_dataset(self, tenant_id: str, fields: Mapping[str, Any]) -> Row: ...
    def get_dataset(self, tenant_id: str, dataset_id: str) -> Row | None: ...
    def dataset_named(self, tenant_id: str, name: str) -> Row | None: ...
    def list_datasets(
        self,
        tenant_id: str,
        page: Page,
        orderby: str,
        desc: bool,
        dataset_id: str | None = None,
        name: str | None = None,
    ) -> tuple[list[Row], int]: ...
    def update_dataset(
        self, tenant_id: str, dataset_id: str, changes: Mapping[str, Any]
    ) -> Row: ...
    def delete_datasets(self, tenant_id: str, dataset_ids: Sequence[str]) -> int: ...
    def tenant_dataset_ids(self, tenant_id: str) -> list[str]: ...

    def file_path(self, document: Mapping[str, Any]) -> Path: ...
    def add_documents(
        self, dataset: Mapping[str, Any], uploads: Sequence[Upload], created_by: str
    ) -> list[Row]: ...
    def get_document(self, dataset_id: str, doc_id: str) -> Row | None: ...
    def document_named(self, dataset_id: str, name: str) -> Row | None: ...
    def list_documents(
        self, dataset_id: str, flt: DocumentFilter, page: Page
    ) -> tuple[list[Row], int]: ...
    def update_document(
        self, doc: Mapping[str, Any], changes: Mapping[str, Any], reset: bool = False
    ) -> Row: ...
    def delete_documents(self, dataset_id: str, doc_ids: Sequence[str]) -> list[str]: ...
    def document_ids(self, dataset_id: str) -> list[str]: ...
    def documents_in(self, dataset_ids: Sequence[str]) -> set[str]: ...

    def list_chunks(
        self, doc_id: str, page: Page, keywords: str = "", chunk: str = ""
    ) -> tuple[list[Row], int]: ...
    def get_chunk(self, doc_id: str, chunk: str) -> Row | None: ...
    def add_chunk(self, doc: Mapping[str, Any], fields: Mapping[str, Any]) -> Row: ...
    def update_chunk(self, doc_id: str, chunk: str, changes: Mapping[str, Any]) -> Row: ...
    def delete_chunks(self, doc_id: str, chunk_ids: Sequence[str] | None) -> int: ...
    def search_chunks(
        self,
        dataset_ids: Sequence[str],
        doc_ids: Sequence[str],
        terms: Sequence[str],
        limit: int,
    ) -> list[Row]: ...
    def chunks_by_id(self, chunk_ids: Sequence[str]) -> dict[str, Row]: ...
