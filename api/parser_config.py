"""Parser configurations: validation, per-method defaults and deep merging (RAGFlow's rules)."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from api.validation import (
    FieldError,
    Schema,
    boolean,
    described,
    integer,
    list_of,
    literal,
    number,
    optional,
    string,
)

CHUNK_METHODS = (
    "naive",
    "book",
    "email",
    "laws",
    "manual",
    "one",
    "paper",
    "picture",
    "presentation",
    "qa",
    "table",
    "tag",
)
DOCUMENT_CHUNK_METHODS = (*CHUNK_METHODS, "knowledge_graph")

RAPTOR = Schema(
    {
        "use_raptor": boolean,
        "prompt": string(min_length=1),
        "max_token": integer(1, 2048),
        "threshold": number(0.0, 1.0),
        "max_cluster": integer(1, 1024),
        "random_seed": integer(0),
    }
)
GRAPHRAG = Schema(
    {
        "use_graphrag": boolean,
        "entity_types": list_of(string()),
        "method": literal("light", "general"),
        "community": boolean,
        "resolution": boolean,
    }
)
_PARSER_CONFIG = Schema(
    {
        "auto_keywords": integer(0, 32),
        "auto_questions": integer(0, 10),
        "chunk_token_num": integer(1, 2048),
        "delimiter": string(min_length=1),
        "graphrag": GRAPHRAG,
        "html4excel": boolean,
        "layout_recognize": string(),
        "raptor": RAPTOR,
        "tag_kb_ids": list_of(string()),
        "topn_tags": integer(1, 10),
        "filename_embd_weight": optional(number(0.0, 1.0)),
        "task_page_size": optional(integer(1)),
        "pages": optional(list_of(list_of(integer()))),
    }
)
MAX_JSON_LENGTH = 65535

_RAPTOR_DEFAULT = {
    "use_raptor": False,
    "prompt": "Please summarize the following paragraphs. Be careful with the numbers, do not "
    "make things up. Paragraphs as following:\n      {cluster_content}\nThe above is the "
    "content you need to summarize.",
    "max_token": 256,
    "threshold": 0.1,
    "max_cluster": 64,
    "random_seed": 0,
}
_GRAPHRAG_DEFAULT = {
    "use_graphrag": False,
    "entity_types": ["organization", "person", "geo", "event", "category"],
    "method": "light",
}
_NAIVE = {
    "layout_recognize": "DeepDOC",
    "chunk_token_num": 512,
    "delimiter": "\n",
    "auto_keywords": 0,
    "auto_questions": 0,
    "html4excel": False,
    "topn_tags": 3,
    "filename_embd_weight": 0.1,
    "raptor": _RAPTOR_DEFAULT,
    "graphrag": _GRAPHRAG_DEFAULT,
}
_OFF = {"raptor": {"use_raptor": False}, "graphrag": {"use_graphrag": False}}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "naive": _NAIVE,
    "knowledge_graph": {
        "chunk_token_num": 8192,
        "delimiter": "\\n",
        "entity_types": ["organization", "person", "location", "event", "time"],
        **_OFF,
    },
    **{m: _OFF for m in ("qa", "manual", "paper", "book", "laws", "presentation")},
}


def parser_config(value: Any) -> dict[str, Any] | None:
    """The field check: a valid config; ``{}`` and null mean "none given"."""
    if value is None or value == {}:
        return None
    checked = _PARSER_CONFIG(value)
    size = len(json.dumps(checked))
    if size > MAX_JSON_LENGTH:
        raise FieldError(
            f"Parser config exceeds size limit (max 65,535 characters). Current size: {size}",
            value,
        )
    return checked


# The OpenAPI description of a parser_config field, derived from the check itself.
JSON_SCHEMA: dict[str, Any] = {**_PARSER_CONFIG.json_schema(), "nullable": True}
described(parser_config, JSON_SCHEMA)


def default_for(chunk_method: str) -> dict[str, Any]:
    return copy.deepcopy(_DEFAULTS.get(chunk_method, {}))


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
