"""POST /api/v1/retrieval: full-text retrieval over the caller's datasets."""

from __future__ import annotations

import contextlib
from typing import Any

from werkzeug.wrappers import Response

from api import embedding_models, limits, search
from api.envelope import data_error, ok
from api.routes import Ctx
from api.storage import DatasetRow, DocumentFilter, Page
from api.validation import (
    Check,
    Schema,
    described,
    integer,
    json_schema,
    list_of,
    literal,
    number,
    read_json,
    search_text,
    string,
    validate,
)


def _coerced(kind: type[int] | type[float], check: Check) -> Check:
    """RAGFlow reads these with ``int(...)`` / ``float(...)``: a number or a numeric string."""

    def run(value: Any) -> Any:
        if isinstance(value, str):
            with contextlib.suppress(ValueError):  # else the check names the bad value
                value = kind(value.strip())
        elif kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        return check(value)

    return described(run, json_schema(check))


# The fields retrieval reads, each checked as RAGFlow reads it; any other key is ignored, as
# RAGFlow ignores it (vectors, reranking and LLM features are accepted and have no effect).
FIELDS: dict[str, Check] = {
    "question": string(),
    "page": _coerced(int, integer(1, 100_000)),
    "page_size": _coerced(int, integer(1, limits.PAGE_SIZE.value)),
    "similarity_threshold": _coerced(float, number()),
    "vector_similarity_weight": _coerced(float, number()),
    "top_k": _coerced(int, integer(1, limits.TOP_K.value)),
    "highlight": lambda v: v,  # RAGFlow compares it with "False" and "false" only
}
RETRIEVAL = Schema(FIELDS, ignore_unknown=True)


def _present(payload: dict[str, Any]) -> dict[str, Any]:
    """The fields retrieval reads; the SDK sends null for every optional field it was not
    given: null is absent."""
    return {k: v for k, v in payload.items() if v is not None}


# --- metadata_condition: RAGFlow's meta_filter over the documents' meta_fields -------------

_OPERATORS = {"is": "=", "not is": "≠"}
_COMPARISONS = ("=", "≠", ">", "<", "≥", "≤")
OPERATORS = (
    *_OPERATORS,
    "contains",
    "not contains",
    "start with",
    "end with",
    "empty",
    "not empty",
    *_COMPARISONS,
)
_CONDITION = Schema(
    {"name": string(), "comparison_operator": literal(*OPERATORS), "value": lambda v: v},
    required=frozenset({"name", "comparison_operator"}),
    ignore_unknown=True,  # RAGFlow's convert_conditions reads these three
)
METADATA_CONDITION = Schema(
    {"logic": literal("and"), "conditions": list_of(_CONDITION)}, ignore_unknown=True
)
METADATA = Schema({"metadata_condition": METADATA_CONDITION})


def _matches(op: str, stored: str, wanted: Any) -> bool:
    """One condition on one stored value (meta_fields values compare as ``str``; the
    comparisons compare numbers when both sides are numbers, else text)."""
    if op in _COMPARISONS:
        try:
            return _compare(op, float(stored), float(wanted))
        except (TypeError, ValueError):
            return _compare(op, stored, str(wanted))
    text, value = stored.lower(), str(wanted).lower()
    if op == "contains":
        return value in text
    if op == "not contains":
        return value not in text
    if op == "start with":
        return text.startswith(value)
    if op == "end with":
        return text.endswith(value)
    return not stored if op == "empty" else bool(stored)  # "empty", "not empty"


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "=":
        return bool(left == right)
    if op == "≠":
        return bool(left != right)
    if op == ">":
        return bool(left > right)
    if op == "<":
        return bool(left < right)
    return bool(left >= right) if op == "≥" else bool(left <= right)


def meta_filter(
    docs: list[tuple[str, dict[str, Any]]], conditions: list[dict[str, Any]]
) -> set[str]:
    """The ids of the documents every condition holds for (RAGFlow's meta_filter: a condition
    on a key no document has is skipped; a document without the key does not match)."""
    found: set[str] | None = None
    for cond in conditions:
        key = cond["name"]
        op = _OPERATORS.get(cond["comparison_operator"], cond["comparison_operator"])
        having = [(doc_id, meta) for doc_id, meta in docs if key in meta]
        if not having:
            continue
        ids = {d for d, meta in having if _matches(op, str(meta[key]), cond.get("value"))}
        found = ids if found is None else found & ids
    return found or set()


def _metadata_doc_ids(
    ctx: Ctx, datasets: list[DatasetRow], condition: dict[str, Any]
) -> list[str] | None:
    """The documents a metadata_condition selects; None when it has no conditions."""
    conditions = condition.get("conditions") or []
    if not conditions:
        return None
    docs: list[tuple[str, dict[str, Any]]] = []
    size = limits.PAGE_SIZE.value
    for dataset in datasets:
        total = None
        number = 1
        while total is None or (number - 1) * size < total:  # bounded by the documents
            rows, total = ctx.storage.list_documents(
                str(dataset["id"]), DocumentFilter(), Page(number, size)
            )
            docs.extend((str(r["id"]), dict(r["meta_fields"] or {})) for r in rows)
            number += 1
            if not rows:
                break
    return sorted(meta_filter(docs, conditions))


def retrieval(ctx: Ctx) -> Response:
    raw = _present(read_json(ctx.request))
    dataset_ids = raw.get("dataset_ids")
    if not dataset_ids:
        raise data_error("`dataset_ids` is required.")
    if not isinstance(dataset_ids, list) or not all(isinstance(i, str) for i in dataset_ids):
        raise data_error("`dataset_ids` should be a list")
    datasets = []
    for dataset_id in dict.fromkeys(dataset_ids):  # each distinct id looked up once
        found = ctx.storage.get_dataset(ctx.tenant_id, dataset_id)
        if found is None:
            raise data_error(f"You don't own the dataset {dataset_id}.")
        datasets.append(found)
    if len({embedding_models.model_name(d["embedding_model"]) for d in datasets}) != 1:
        raise data_error('Datasets use different embedding models."')
    if "question" not in raw:
        raise data_error("`question` is required.")
    doc_ids = raw.get("document_ids", [])
    if not isinstance(doc_ids, list) or not all(isinstance(i, str) for i in doc_ids):
        raise data_error("`documents` should be a list")
    req = validate(RETRIEVAL, raw)
    condition = validate(METADATA, {"metadata_condition": raw.get("metadata_condition") or {}})
    condition = condition["metadata_condition"]
    search_text("question", req["question"])
    if doc_ids:
        owned = ctx.storage.documents_in([str(d["id"]) for d in datasets])
        for doc_id in doc_ids:
            if doc_id not in owned:
                raise data_error(f"The datasets don't own the document {doc_id}")
    else:
        selected = _metadata_doc_ids(ctx, datasets, condition)
        if selected == []:  # nothing matches: nothing is found (RAGFlow v0.22.1 finds all)
            return ok({"chunks": [], "doc_aggs": [], "total": 0})
        doc_ids = selected or []
    if not req["question"]:  # RAGFlow's retriever answers an empty question at once
        return ok({"total": 0, "chunks": [], "doc_aggs": {}})
    # RAGFlow turns highlighting off for the strings "False" and "false" only: a JSON false
    # highlights, and a client reading each chunk's highlight finds it
    highlight = req.get("highlight") not in ("False", "false")
    result = search.retrieve(
        ctx.storage,
        dataset_ids=[str(d["id"]) for d in datasets],
        doc_ids=doc_ids,
        question=req["question"],
        page=Page(req.get("page", 1), req.get("page_size", 30)),
        similarity_threshold=req.get("similarity_threshold", 0.2),
        # As on RAGFlow's default engine (Elasticsearch), where top_k bounds vector candidates
        # only, a top_k below the default does not cut full-text matches; a larger one (up to
        # TOP_K) widens the candidates scored.
        top_k=max(req.get("top_k", search.DEFAULT_TOP_K), search.DEFAULT_TOP_K),
        with_highlight=highlight,
    )
    return ok(result)
