"""Chunks of a document (list, add, update, delete) and parse start/stop for a dataset."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from werkzeug.wrappers import Response

from api import limits, serialize, storage
from api.envelope import ApiError, Code, argument_error, data_error, ok
from api.routes import Ctx
from api.storage import DatasetRow, DocumentRow, Page
from api.validation import (
    FieldError,
    Schema,
    boolean,
    format_errors,
    integer,
    list_of,
    optional,
    query_int,
    query_page_size,
    read_json,
    search_text,
    string,
    validate,
)


def _dataset(ctx: Ctx, dataset_id: str) -> DatasetRow:
    found = ctx.storage.get_dataset(ctx.tenant_id, dataset_id)
    if found is None:
        raise data_error(f"You don't own the dataset {dataset_id}.")
    return found


def _document(ctx: Ctx, dataset_id: str, document_id: str) -> DocumentRow:
    found = ctx.storage.get_document(dataset_id, document_id)
    if found is None:
        raise data_error(f"You don't own the document {document_id}.")
    return found


def list_(ctx: Ctx, dataset_id: str, document_id: str) -> Response:
    _dataset(ctx, dataset_id)
    doc = _document(ctx, dataset_id, document_id)
    args = ctx.request.args
    number, size = query_int(args, "page", 1), query_page_size(args, ge=0)
    if size == 0:  # every chunk of the document, up to PAGE_SIZE like every list
        number, size = 1, max(1, min(int(doc["chunk_count"]), limits.PAGE_SIZE.value))
    page = Page(number, size)
    chunk = args.get("id", "")
    keywords = args.get("keywords", "")
    search_text("keywords", keywords)
    rows, total = ctx.storage.list_chunks(document_id, page, keywords=keywords, chunk=chunk)
    if chunk and not rows:
        raise ApiError(Code.NOT_FOUND, f"Chunk not found: {dataset_id}/{chunk}")
    return ok(
        {
            "total": total,
            "chunks": [serialize.chunk(r) for r in rows],
            "doc": serialize.document(doc),
        }
    )


def _list_field(name: str, wording: str, strip: bool) -> Any:
    """A list field; with ``strip`` its items are stripped and blank ones dropped (RAGFlow's
    questions), without it the strings are kept as given (its important_keywords)."""
    strings = list_of(string())

    def run(value: Any) -> list[str]:
        if not isinstance(value, list):
            raise data_error(f"`{name}` {wording} a list")
        if strip:
            return [str(v).strip() for v in value if str(v).strip()]
        return list(strings(value))

    return run


def _chunk_fields(wording: str) -> dict[str, Any]:
    return {
        "important_keywords": _list_field("important_keywords", wording, strip=False),
        "questions": _list_field("questions", wording, strip=True),
    }


# RAGFlow's chunk handlers read their fields with req.get: other keys are ignored
ADD = Schema({"content": lambda v: v, **_chunk_fields("is required to be")}, ignore_unknown=True)


def _chunk_size_checked(req: dict[str, Any]) -> dict[str, Any]:
    """``req``, or a 101 when a chunk's text field is over CHUNK_CHARS."""
    limit = limits.CHUNK_CHARS
    for name in ("content", "important_keywords", "questions"):
        value = req.get(name)
        size = len(value) if isinstance(value, str) else 0
        if isinstance(value, list):
            size = sum(len(str(item)) for item in value)
        if size > limit.value:
            raise argument_error(
                f"Field: <{name}> is {size} characters long; at most {limit.value} are accepted"
                f" ({limit.name}). Split it into several chunks."
            )
    return req


def add(ctx: Ctx, dataset_id: str, document_id: str) -> Response:
    _dataset(ctx, dataset_id)
    doc = _document(ctx, dataset_id, document_id)
    req = _chunk_size_checked(validate(ADD, read_json(ctx.request)))
    content = req.get("content")
    if content is not None and not isinstance(content, str) and str(content).strip():
        # RAGFlow crashes (100) adding a non-string to the document id
        bad = FieldError("Input should be a valid string", content, ("content",))
        raise argument_error(format_errors([bad]))
    if not isinstance(content, str) or not content.strip():
        raise data_error("`content` is required")
    # The id is a hash of content and document: the same content again replaces the chunk
    # and, as in RAGFlow, the document's chunk_count still grows by one.
    row = ctx.storage.add_chunk(doc, {**req, "content": content})
    return ok({"chunk": serialize.new_chunk(row)})


UPDATE = Schema(
    {
        "content": string(),
        **_chunk_fields("should be"),
        "available": lambda v: boolean(v) if isinstance(v, bool) else integer(0, 1)(v),
        "positions": optional(list_of(list_of(integer()))),
    },
    ignore_unknown=True,
)


def update(ctx: Ctx, dataset_id: str, document_id: str, chunk_id: str) -> Response:
    # RAGFlow's order: the chunk in the caller's dataset, the dataset, then the document
    found = ctx.storage.chunks_by_id([chunk_id]).get(chunk_id)
    owned = ctx.storage.get_dataset(ctx.tenant_id, dataset_id) is not None
    if found is None or found["dataset_id"] != dataset_id or not owned:
        raise data_error(f"Can't find this chunk {chunk_id}")
    _dataset(ctx, dataset_id)
    doc = _document(ctx, dataset_id, document_id)
    if found["doc_id"] != document_id:
        raise data_error(f"Can't find this chunk {chunk_id} in the document {document_id}")
    req = _chunk_size_checked(validate(UPDATE, read_json(ctx.request)))
    if "available" in req:
        req["available"] = int(req["available"])
    if "content" in req and doc["chunk_method"] == "qa":
        parts = [t for t in re.split(r"[\n\t]", req["content"]) if len(t) > 1]
        if len(parts) != 2:
            raise data_error("Q&A must be separated by TAB/ENTER key.")
    ctx.storage.update_chunk(document_id, chunk_id, req)
    return ok()


DELETE = Schema({"chunk_ids": optional(list_of(string()))}, ignore_unknown=True)


def delete(ctx: Ctx, dataset_id: str, document_id: str) -> Response:
    _dataset(ctx, dataset_id)
    if ctx.storage.get_document(dataset_id, document_id) is None:
        # RAGFlow raises here and answers 100 with the exception's repr
        raise data_error(f"Can't find the document with ID {document_id}!")
    req = validate(DELETE, read_json(ctx.request))
    ids: list[str] | None = req.get("chunk_ids") or None
    unique = None if ids is None else list(dict.fromkeys(ids))
    deleted = ctx.storage.delete_chunks(document_id, unique)
    if unique is not None and deleted != len(unique):
        raise data_error(f"rm_chunk deleted chunks {deleted}, expect {len(unique)}")
    if ids is not None and len(ids) != len(unique or []):
        duplicates = [f"Duplicate chunk ids: {i}" for i, n in Counter(ids).items() if n > 1]
        return ok(
            {"success_count": deleted, "errors": duplicates},
            message=f"Partially deleted {deleted} chunks with {len(duplicates)} errors",
        )
    return ok()


# --- parsing ---------------------------------------------------------------------------

PARSE = Schema({"document_ids": optional(list_of(string()))}, ignore_unknown=True)


def _document_ids(ctx: Ctx) -> tuple[list[str], list[str]]:
    req = validate(PARSE, read_json(ctx.request))
    ids: list[str] | None = req.get("document_ids")
    if not ids:
        raise data_error("`document_ids` is required")
    duplicates = [f"Duplicate document ids: {i}" for i, n in Counter(ids).items() if n > 1]
    return list(dict.fromkeys(ids)), duplicates


def _partial(verb: str, count: int, duplicates: list[str]) -> Response:
    if not duplicates:
        return ok()
    return ok(
        {"success_count": count, "errors": duplicates},
        message=f"Partially {verb} {count} documents with {len(duplicates)} errors",
    )


def parse(ctx: Ctx, dataset_id: str) -> Response:
    _dataset(ctx, dataset_id)
    ids, duplicates = _document_ids(ctx)
    found: list[str] = []
    missing: list[str] = []
    for doc_id in ids:
        doc = ctx.storage.get_document(dataset_id, doc_id)
        if doc is None:
            missing.append(doc_id)
            continue
        if 0.0 < float(doc["progress"]) < 1.0:
            raise data_error("Can't parse document that is currently being processed")
        found.append(doc_id)
    if found:
        _tasks(ctx).enqueue_parse(dataset_id, found)
    if missing:
        raise data_error(f"Documents not found: {missing}")
    return _partial("parsed", len(found), duplicates)


def stop(ctx: Ctx, dataset_id: str) -> Response:
    _dataset(ctx, dataset_id)
    ids, duplicates = _document_ids(ctx)
    for doc_id in ids:
        doc = _document(ctx, dataset_id, doc_id)
        progress = float(doc["progress"])
        # A queued task (RUNNING, progress still 0) can be stopped too.
        if doc["run"] != storage.RUN_RUNNING and (int(progress) == 1 or progress == 0):
            raise data_error("Can't stop parsing document with progress at 0 or 1")
    _tasks(ctx).cancel_parse(dataset_id, ids)
    return _partial("stopped", len(ids), duplicates)


def _tasks(ctx: Ctx) -> storage.TaskQueue:
    return storage.open_backend(ctx.config.data_dir, ctx.config.database_url, ctx.config.pool).tasks
