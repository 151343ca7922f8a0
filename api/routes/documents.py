"""/api/v1/datasets/<id>/documents: upload, list, update, download, delete."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from typing import Any

from werkzeug.utils import send_file
from werkzeug.wrappers import Response

from api import filetypes, limits, serialize
from api.envelope import ApiError, Code, argument_error, data_error, ok
from api.parser_config import (
    DOCUMENT_CHUNK_METHODS,
    default_for,
    document_parser_config,
    for_document_update,
)
from api.routes import Ctx
from api.storage import DatasetRow, DocumentFilter, Page, Upload
from api.validation import (
    FieldError,
    Schema,
    bidi_problem,
    format_errors,
    list_of,
    literal,
    optional,
    query_int,
    query_list,
    query_page_size,
    read_json,
    string,
    validate,
)

FILE_NAME_LEN_LIMIT = 255
EPOCH_MS_MAX = 10**15


def owned_dataset(ctx: Ctx, dataset_id: str, message: str) -> DatasetRow:
    found = ctx.storage.get_dataset(ctx.tenant_id, dataset_id)
    if found is None:
        raise data_error(message)
    return found


def _clean_name(raw: str) -> str:
    """The display name: the last path component, without control characters."""
    if any(unicodedata.category(ch) == "Cc" for ch in raw):
        raise argument_error("File name must not contain control characters (such as NUL).")
    name = raw.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if name in ("", ".", ".."):
        raise argument_error("No file selected!")
    problem = bidi_problem(name)
    if problem is not None:
        raise argument_error(f"{problem}: {name!r}")
    return name


def upload(ctx: Ctx, dataset_id: str) -> Response:
    files = ctx.request.files
    if "file" not in files:
        raise argument_error("No file part!")
    file_objs = files.getlist("file")  # no count cap (RAGFlow has none): MAX_CONTENT_LENGTH
    for file_obj in file_objs:
        if not file_obj.filename:
            raise argument_error("No file selected!")
        if len(file_obj.filename.encode("utf-8")) > FILE_NAME_LEN_LIMIT:
            raise argument_error(f"File name must be {FILE_NAME_LEN_LIMIT} bytes or less.")
    dataset = ctx.storage.get_dataset(ctx.tenant_id, dataset_id)
    if dataset is None:
        # RAGFlow raises here and answers 100 with the exception's repr
        raise data_error(f"Can't find the dataset with ID {dataset_id}!")
    uploads: list[Upload] = []
    unsupported: list[str] = []
    for file_obj in file_objs:
        name = _clean_name(str(file_obj.filename))
        file_type = filetypes.for_name(name)
        if file_type is None:
            unsupported.append(f"{name}: This type of file has not been supported yet!")
            continue
        uploads.append(
            Upload(
                name=name,
                suffix=filetypes.suffix(name),
                file_type=file_type.ragflow_type,
                stream=file_obj.stream,
                chunk_method=file_type.chunk_method or dataset["chunk_method"],
            )
        )
    if unsupported:
        raise ApiError(Code.SERVER_ERROR, "\n".join(unsupported))
    rows = ctx.storage.add_documents(dataset, uploads, ctx.tenant_id)
    return ok([serialize.document(r) for r in rows])


def list_(ctx: Ctx, dataset_id: str) -> Response:
    owned_dataset(ctx, dataset_id, f"You don't own the dataset {dataset_id}. ")
    args = ctx.request.args
    doc_id, name = args.get("id", ""), args.get("name", "")
    if doc_id and ctx.storage.get_document(dataset_id, doc_id) is None:
        raise data_error(f"You don't own the document {doc_id}.")
    if name and ctx.storage.document_named(dataset_id, name) is None:
        raise data_error(f"You don't own the document {name}.")
    flt = DocumentFilter(
        keywords=args.get("keywords", ""),
        doc_id=doc_id,
        name=name,
        suffixes=tuple(query_list(args, "suffix")),
        runs=tuple(serialize.RUN_CODE.get(r, r) for r in query_list(args, "run")),
        create_time_from=query_int(args, "create_time_from", 0, ge=0, le=EPOCH_MS_MAX),
        create_time_to=query_int(args, "create_time_to", 0, ge=0, le=EPOCH_MS_MAX),
        orderby=_orderby(args.get("orderby", "create_time")),
        desc=str(args.get("desc", "true")).strip().lower() != "false",
    )
    # RAGFlow's paging: page=0 is the first page, page_size=0 an empty page (with the total)
    page = Page(max(1, query_int(args, "page", 1, ge=0)), query_page_size(args, ge=0))
    rows, total = ctx.storage.list_documents(dataset_id, flt, page)
    return ok({"total": total, "docs": [serialize.document(r) for r in rows]})


DOCUMENT_ORDERS = ("create_time", "update_time", "name", "size")
_ORDERS = literal(*DOCUMENT_ORDERS)


def _orderby(value: str) -> str:
    """A document list's order (RAGFlow crashes, code 100, on a column it does not have)."""
    try:
        return str(_ORDERS(value))
    except FieldError as exc:
        bad = FieldError(exc.message, value, ("orderby",))
        raise argument_error(format_errors([bad])) from None


def _enabled(value: Any) -> int:
    if isinstance(value, bool) or value not in (0, 1):
        raise FieldError("Input should be 0 or 1", value)
    return int(value)


# RAGFlow's update_doc reads its fields with req.get: other keys are ignored
UPDATE = Schema(
    {
        "name": string(),
        "meta_fields": lambda v: v,
        "chunk_method": string(),
        "parser_config": document_parser_config,
        "enabled": _enabled,
        "chunk_count": lambda v: v,
        "token_count": lambda v: v,
        "progress": lambda v: v,
    },
    ignore_unknown=True,
)


def update(ctx: Ctx, dataset_id: str, document_id: str) -> Response:
    req = validate(UPDATE, read_json(ctx.request))
    owned_dataset(ctx, dataset_id, "You don't own the dataset.")
    doc = ctx.storage.get_document(dataset_id, document_id)
    if doc is None:
        raise data_error("The dataset doesn't own the document.")
    for field in ("chunk_count", "token_count", "progress"):
        if field in req and req[field] != doc[field]:
            raise data_error(f"Can't change `{field}`.")
    changes: dict[str, Any] = {}
    if "meta_fields" in req:
        if not isinstance(req["meta_fields"], dict):
            raise data_error("meta_fields must be a dictionary")
        size = len(json.dumps(req["meta_fields"], ensure_ascii=False).encode("utf-8"))
        if size > limits.META_FIELDS_BYTES.value:
            raise argument_error(
                f"Field: <meta_fields> is {size} bytes as JSON; at most"
                f" {limits.META_FIELDS_BYTES.value} are accepted ({limits.META_FIELDS_BYTES.name})."
            )
        changes["meta_fields"] = req["meta_fields"]
    if "name" in req and req["name"] != doc["name"]:
        # RAGFlow's order: the length, then the extension (an empty name has none), then
        # what this service adds (control and bidirectional characters, path components)
        if len(req["name"].encode("utf-8")) > FILE_NAME_LEN_LIMIT:
            raise argument_error(f"File name must be {FILE_NAME_LEN_LIMIT} bytes or less.")
        if filetypes.suffix(req["name"]) != filetypes.suffix(str(doc["name"])):
            raise argument_error("The extension of file can't be changed")
        name = _clean_name(req["name"])
        if filetypes.suffix(name) != filetypes.suffix(str(doc["name"])):
            raise argument_error("The extension of file can't be changed")
        changes["name"] = name
    config = doc["parser_config"]
    if req.get("parser_config"):
        config = changes["parser_config"] = for_document_update(config, req["parser_config"])
    reset = False
    if "chunk_method" in req:
        method = req["chunk_method"]
        if method not in DOCUMENT_CHUNK_METHODS:
            raise data_error(f"`chunk_method` {method} doesn't exist")
        file_type = filetypes.for_suffix(str(doc["suffix"]))
        if file_type is not None and file_type.method_locked:
            raise data_error("Not supported yet!")
        if str(doc["chunk_method"]).lower() != method.lower():
            changes["chunk_method"] = method
            reset = True
        default = default_for(method)
        if not req.get("parser_config") and default:
            # RAGFlow merges the method's default into the document's config
            changes["parser_config"] = for_document_update(config, default)
    if "enabled" in req:
        changes["status"] = str(req["enabled"])
    row = ctx.storage.update_document(doc, changes, reset=reset)
    return ok(serialize.document(row))


def download(ctx: Ctx, dataset_id: str, document_id: str) -> Response:
    owned_dataset(ctx, dataset_id, f"You do not own the dataset {dataset_id}.")
    doc = ctx.storage.get_document(dataset_id, document_id)
    if doc is None:
        raise data_error(f"The dataset not own the document {document_id}.")
    path = ctx.storage.file_path(doc)
    if not path.is_file() or path.stat().st_size == 0:
        raise data_error("This file is empty.")
    return send_file(
        path,
        ctx.request.environ,
        mimetype="application/octet-stream",
        as_attachment=True,
        download_name=str(doc["name"]),
    )


DELETE = Schema({"ids": optional(list_of(string()))}, ignore_unknown=True)


def delete(ctx: Ctx, dataset_id: str) -> Response:
    owned_dataset(ctx, dataset_id, f"You don't own the dataset {dataset_id}. ")
    req = validate(DELETE, read_json(ctx.request))
    ids: list[str] = req.get("ids") or ctx.storage.document_ids(dataset_id)
    unique = list(dict.fromkeys(ids))
    duplicates = [f"Duplicate document ids: {i}" for i, n in Counter(ids).items() if n > 1]
    missing = ctx.storage.delete_documents(dataset_id, unique)
    if missing:
        raise data_error(f"Documents not found: {missing}")
    if duplicates:
        return ok(
            {"success_count": len(unique), "errors": duplicates},
            message=f"Partially deleted {len(unique)} datasets with {len(duplicates)} errors",
        )
    return ok()
