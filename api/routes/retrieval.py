"""POST /api/v1/retrieval: full-text retrieval over the caller's datasets."""

from __future__ import annotations

import contextlib
from typing import Any

from werkzeug.wrappers import Response

from api import limits, search
from api.envelope import data_error, ok
from api.routes import Ctx
from api.storage import Page
from api.validation import (
    Check,
    Schema,
    described,
    integer,
    json_schema,
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
    "highlight": lambda v: v if isinstance(v, bool) else string()(v),
}
RETRIEVAL = Schema(FIELDS)


def _present(payload: dict[str, Any]) -> dict[str, Any]:
    """The fields retrieval reads; the SDK sends null for every optional field it was not
    given: null is absent."""
    return {k: v for k, v in payload.items() if v is not None}


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
    if len({d["embedding_model"].split("@")[0] for d in datasets}) != 1:
        raise data_error('Datasets use different embedding models."')
    if "question" not in raw:
        raise data_error("`question` is required.")
    doc_ids = raw.get("document_ids", [])
    if not isinstance(doc_ids, list) or not all(isinstance(i, str) for i in doc_ids):
        raise data_error("`documents` should be a list")
    req = validate(RETRIEVAL, {k: v for k, v in raw.items() if k in FIELDS})
    search_text("question", req["question"])
    if doc_ids:
        owned = ctx.storage.documents_in([str(d["id"]) for d in datasets])
        for doc_id in doc_ids:
            if doc_id not in owned:
                raise data_error(f"The datasets don't own the document {doc_id}")
    highlight = req.get("highlight", True) not in (False, "False", "false")
    result = search.retrieve(
        ctx.storage,
        dataset_ids=[str(d["id"]) for d in datasets],
        doc_ids=doc_ids,
        question=req["question"],
        page=Page(req.get("page", 1), req.get("page_size", 30)),
        similarity_threshold=req.get("similarity_threshold", 0.2),
        top_k=limits.TOP_K.value,  # bounds full-text candidates; the given top_k does not
        with_highlight=highlight,
    )
    return ok(result)
