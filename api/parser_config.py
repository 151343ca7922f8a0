"""Parser configurations: validation, per-method defaults and deep merging (RAGFlow's rules)."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from api.validation import (
    Check,
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

_RAPTOR_PROMPT = (
    "Please summarize the following paragraphs. Be careful with the numbers, do not make things"
    " up. Paragraphs as following:\n      {cluster_content}\nThe above is the content you need"
    " to summarize."
)
_ENTITY_TYPES = ("organization", "person", "geo", "event", "category")

# RAGFlow's ParserConfig model (api/utils/validation_utils.py), one row per field in its order:
# the name, the check, and the default the model fills in when a given config leaves the
# field out (a partial config comes back whole, nested blocks included).
_Field = tuple[str, Check, Any]
_RAPTOR_FIELDS: tuple[_Field, ...] = (
    ("use_raptor", boolean, False),
    ("prompt", string(min_length=1, strip=True), _RAPTOR_PROMPT),
    ("max_token", integer(1, 2048), 256),
    ("threshold", number(0.0, 1.0), 0.1),
    ("max_cluster", integer(1, 1024), 64),
    ("random_seed", integer(0), 0),
)
_GRAPHRAG_FIELDS: tuple[_Field, ...] = (
    ("use_graphrag", boolean, False),
    ("entity_types", list_of(string()), list(_ENTITY_TYPES)),
    ("method", literal("light", "general"), "light"),
    ("community", boolean, False),
    ("resolution", boolean, False),
)


def _schema(fields: tuple[_Field, ...]) -> Schema:
    return Schema({name: check for name, check, _ in fields})


def _defaults(fields: tuple[_Field, ...]) -> dict[str, Any]:
    return {name: default for name, _, default in fields}


RAPTOR = _schema(_RAPTOR_FIELDS)
GRAPHRAG = _schema(_GRAPHRAG_FIELDS)
_FIELDS: tuple[_Field, ...] = (
    ("auto_keywords", integer(0, 32), 0),
    ("auto_questions", integer(0, 10), 0),
    ("chunk_token_num", integer(1, 2048), 512),
    ("delimiter", string(min_length=1), "\\n"),
    ("graphrag", GRAPHRAG, _defaults(_GRAPHRAG_FIELDS)),
    ("html4excel", boolean, False),
    ("layout_recognize", string(), "DeepDOC"),
    ("raptor", RAPTOR, _defaults(_RAPTOR_FIELDS)),
    ("tag_kb_ids", list_of(string()), []),
    ("topn_tags", integer(1, 10), 1),
    ("filename_embd_weight", optional(number(0.0, 1.0)), 0.1),
    ("task_page_size", optional(integer(1)), None),
    ("pages", optional(list_of(list_of(integer()))), None),
)
_PARSER_CONFIG = _schema(_FIELDS)
_FIELD_DEFAULTS = _defaults(_FIELDS)
MAX_JSON_LENGTH = 65535

# Each method's default when no config is given (RAGFlow's get_parser_config); None: no
# default, the config is stored as given ({} when none is given).
_NAIVE = {
    "layout_recognize": "DeepDOC",
    "chunk_token_num": 512,
    "delimiter": "\n",
    "auto_keywords": 0,
    "auto_questions": 0,
    "html4excel": False,
    "topn_tags": 3,
    "raptor": {**_FIELD_DEFAULTS["raptor"], "use_raptor": True},
    "graphrag": {"use_graphrag": True, "entity_types": list(_ENTITY_TYPES), "method": "light"},
}
_OFF = {"raptor": {"use_raptor": False}, "graphrag": {"use_graphrag": False}}
_DEFAULTS: dict[str, dict[str, Any] | None] = {
    "naive": _NAIVE,
    "knowledge_graph": {
        "chunk_token_num": 8192,
        "delimiter": "\\n",
        "entity_types": ["organization", "person", "location", "event", "time"],
        **_OFF,
    },
    **{m: _OFF for m in ("qa", "manual", "paper", "book", "laws", "presentation")},
    **{m: None for m in ("tag", "table", "one", "email", "picture")},
}


def _size_checked(value: Any, checked: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(checked))
    if size > MAX_JSON_LENGTH:
        raise FieldError(
            f"Parser config exceeds size limit (max 65,535 characters). Current size: {size}",
            value,
        )
    return checked


def parser_config(value: Any) -> dict[str, Any] | None:
    """The field check: a valid config; ``{}`` and null mean "none given"."""
    if value is None or value == {}:
        return None
    return _size_checked(value, _PARSER_CONFIG(value))


def document_parser_config(value: Any) -> dict[str, Any] | None:
    """A document's config, stored as given (RAGFlow does not validate it; the parsing
    pipeline falls back to defaults for values it cannot use): any JSON object within the
    size limit. ``{}`` and null mean "none given"."""
    if value is None or value == {}:
        return None
    if not isinstance(value, dict):
        raise FieldError("Input should be a valid dictionary", value)
    return _size_checked(value, value)


# The OpenAPI description of a parser_config field, derived from the check itself.
JSON_SCHEMA: dict[str, Any] = {**_PARSER_CONFIG.json_schema(), "nullable": True}
described(parser_config, JSON_SCHEMA)


described(document_parser_config, {"type": "object", "nullable": True})


def default_for(chunk_method: str) -> dict[str, Any] | None:
    """The method's default config, or None when the method has none."""
    found = _DEFAULTS.get(chunk_method)
    return None if found is None else copy.deepcopy(found)


def filled(checked: Mapping[str, Any]) -> dict[str, Any]:
    """A validated config with every field it leaves out set to its default, nested raptor
    and graphrag blocks included (what RAGFlow's model makes of a partial config)."""
    out: dict[str, Any] = {}
    for name, default in _FIELD_DEFAULTS.items():
        value = checked.get(name, default)
        if isinstance(default, dict):
            value = {**default, **value}
        out[name] = copy.deepcopy(value)
    return out


def for_new_dataset(chunk_method: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """A new dataset's config (RAGFlow's get_parser_config): the method's default when none
    is given, else the given config filled in and merged over the method's default."""
    default = default_for(chunk_method)
    if not given:
        return default or {}
    config = filled(given)
    return config if default is None else deep_merge(default, config)


def for_document_update(current: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """A document's config after an update (RAGFlow's update_parser_config): the update merged
    into the current config; a current raptor block goes when the update has none."""
    merged = deep_merge(current, update)
    if not update.get("raptor"):
        merged.pop("raptor", None)
    return merged


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
