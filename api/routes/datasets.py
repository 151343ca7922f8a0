"""/api/v1/datasets: create, list, update, delete."""

from __future__ import annotations

from collections import Counter
from typing import Any

from werkzeug.wrappers import Response

from api import embedding_models, serialize
from api.envelope import argument_error, data_error, ok, permission_error
from api.parser_config import (
    CHUNK_METHODS,
    deep_merge,
    default_for,
    for_new_dataset,
    parser_config,
)
from api.routes import Ctx
from api.storage import Page
from api.validation import (
    FieldError,
    Schema,
    ValidationFailed,
    avatar,
    described,
    display_name,
    embedding_model,
    format_errors,
    integer,
    json_schema,
    list_of,
    literal,
    optional,
    query_bool,
    query_int,
    query_page_size,
    read_json,
    string,
    uuid1_hex,
    validate,
)

NAME_LIMIT = 128
_FIELDS = {
    "name": display_name(NAME_LIMIT),
    "avatar": optional(avatar),
    "description": optional(string(max_length=65535)),
    "embedding_model": optional(embedding_model),
    "permission": literal("me", "team"),
    "chunk_method": literal(*CHUNK_METHODS),
    "parser_config": parser_config,
}
CREATE = Schema(_FIELDS, required=frozenset({"name"}))
UPDATE = Schema({**_FIELDS, "pagerank": integer(0, 100)})
LIST_ARGS = ("id", "name", "page", "page_size", "orderby", "desc")


def _ids(value: Any) -> list[str] | None:
    if value is None:
        return None
    try:
        ids = [uuid1_hex(v) for v in list_of(string())(value)]
    except (FieldError, ValidationFailed) as exc:
        message = exc.message if isinstance(exc, FieldError) else exc.errors[0].message
        raise FieldError(message, value) from None
    duplicates = [item for item, count in Counter(ids).items() if count > 1]
    if duplicates:
        raise FieldError(f"Duplicate ids: '{', '.join(duplicates)}'", value)
    return ids


described(_ids, {**json_schema(list_of(string())), "nullable": True})


DELETE = Schema({"ids": _ids}, required=frozenset({"ids"}))


def create(ctx: Ctx) -> Response:
    req = validate(CREATE, read_json(ctx.request, strict=True))
    if len(req["name"].encode("utf-8")) > NAME_LIMIT:  # RAGFlow checks bytes after characters
        raise data_error(
            f"Dataset name length is {len(req['name'])} which is larger than {NAME_LIMIT}"
        )
    fields = {k: v for k, v in req.items() if v is not None and k != "parser_config"}
    method = str(req.get("chunk_method") or "naive")
    fields["chunk_method"] = method
    fields["parser_config"] = for_new_dataset(method, req.get("parser_config"))
    fields["embedding_model"] = embedding_models.check_available(
        req.get("embedding_model") or embedding_models.default()
    )
    row = ctx.storage.create_dataset(ctx.tenant_id, fields)
    return ok(serialize.dataset(row))


def list_(ctx: Ctx) -> Response:
    args = ctx.request.args
    unknown = [k for k in args if k not in LIST_ARGS]
    if unknown:
        raise argument_error(
            format_errors(
                [FieldError("Extra inputs are not permitted", args[k], (k,)) for k in unknown]
            )
        )
    # A given but empty id or orderby is an error, as in RAGFlow (its model parses them).
    dataset_id = args.get("id")
    if dataset_id is not None:
        try:
            dataset_id = uuid1_hex(dataset_id)
        except FieldError as exc:
            raise argument_error(
                format_errors([FieldError(exc.message, exc.value, ("id",))])
            ) from None
    orderby = args.get("orderby", "create_time")
    if orderby not in ("create_time", "update_time"):
        raise argument_error(
            format_errors(
                [
                    FieldError(
                        "Input should be 'create_time' or 'update_time'", orderby, ("orderby",)
                    )
                ]
            )
        )
    name = args.get("name") or None
    if dataset_id and ctx.storage.get_dataset(ctx.tenant_id, dataset_id) is None:
        raise permission_error(
            f"User '{ctx.tenant_id}' lacks permission for dataset '{dataset_id}'"
        )
    if name and ctx.storage.dataset_named(ctx.tenant_id, name) is None:
        raise permission_error(f"User '{ctx.tenant_id}' lacks permission for dataset '{name}'")
    page = Page(
        query_int(args, "page", 1, blank_is_unset=False),
        query_page_size(args, blank_is_unset=False),
    )
    desc = query_bool(args, "desc", True, blank_is_unset=False)
    rows, total = ctx.storage.list_datasets(ctx.tenant_id, page, orderby, desc, dataset_id, name)
    return ok([serialize.dataset(r) for r in rows], total_datasets=total)


def update(ctx: Ctx, dataset_id: str) -> Response:
    payload = read_json(ctx.request, strict=True)
    # RAGFlow validates the path's id with the body: one answer lists every problem
    errors: list[FieldError] = []
    req: dict[str, Any] = {}
    try:
        req = UPDATE(payload)
    except ValidationFailed as exc:
        errors.extend(exc.errors)
    try:
        dataset_id = uuid1_hex(dataset_id)
    except FieldError as exc:
        errors.append(FieldError(exc.message, exc.value, ("dataset_id",)))
    if errors:
        raise argument_error(format_errors(errors))
    if not req:
        raise argument_error("No properties were modified")
    current = ctx.storage.get_dataset(ctx.tenant_id, dataset_id)
    if current is None:
        raise permission_error(
            f"User '{ctx.tenant_id}' lacks permission for dataset '{dataset_id}'"
        )
    changes = dict(req)
    if changes.get("parser_config"):
        changes["parser_config"] = deep_merge(current["parser_config"], changes["parser_config"])
    else:
        changes.pop("parser_config", None)
    method = changes.get("chunk_method")
    if method and method != current["chunk_method"] and not req.get("parser_config"):
        # an empty or null parser_config with a new method: the method's default (RAGFlow)
        changes["parser_config"] = default_for(method) or {}
    if "embedding_model" in changes:
        if not changes["embedding_model"]:
            changes["embedding_model"] = current["embedding_model"]
        if current["chunk_count"] and changes["embedding_model"] != current["embedding_model"]:
            raise data_error(
                f"When chunk_num ({current['chunk_count']}) > 0, embedding_model must remain "
                f"{current['embedding_model']}"
            )
        embedding_models.check_available(changes["embedding_model"])
    row = ctx.storage.update_dataset(ctx.tenant_id, dataset_id, changes)
    return ok(serialize.dataset(row))


def delete(ctx: Ctx) -> Response:
    req = validate(DELETE, read_json(ctx.request, strict=True))
    ids: list[str] | None = req["ids"]
    if ids is None:
        ids = ctx.storage.tenant_dataset_ids(ctx.tenant_id)
    else:
        unknown = [i for i in ids if ctx.storage.get_dataset(ctx.tenant_id, i) is None]
        if unknown:
            raise permission_error(
                f"User '{ctx.tenant_id}' lacks permission for datasets: '{', '.join(unknown)}'"
            )
    ctx.storage.delete_datasets(ctx.tenant_id, ids)
    return ok()
