"""The OpenAPI 3 document (served at /api/v1/openapi.json), generated from the route table.

Each route record (api.routes.table) names its path, method, operation id, summary, auth rule,
query parameters and body; ``document`` turns them into paths. This module holds the schema
vocabulary those records use. Where a body is checked by an api.validation Schema whose checks
describe themselves (the datasets' bodies, every parser_config), its schema is derived from them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from api import parser_config
from api.limits import LIST_ITEMS, PAGE_SIZE

if TYPE_CHECKING:
    from api.routes.table import Route

JSON = "application/json"
TITLE = "RAGFlow-compatible dataset API"
VERSION = "0.22.1"
_RULE_ARGUMENT = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")


def envelope(data: dict[str, Any] | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {"code": {"type": "integer"}, "message": {"type": "string"}}
    if data is not None:
        props["data"] = data
    return {
        "description": "RAGFlow envelope (errors too: HTTP 200 with a non-zero code)",
        "content": {
            JSON: {"schema": {"type": "object", "required": ["code"], "properties": props}}
        },
    }


def body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {JSON: {"schema": schema}}}


def query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


PAGING = (
    query("page", {"type": "integer", "minimum": 1}),
    query("page_size", {"type": "integer", "minimum": 1, "maximum": PAGE_SIZE.value}),
)
STRINGS = {"type": "array", "items": {"type": "string"}, "maxItems": LIST_ITEMS.value}
OBJECT = {"type": "object"}
LIST = {"type": "array", "items": OBJECT}
PARSER_CONFIG = parser_config.JSON_SCHEMA


def openapi_path(rule: str) -> str:
    """A Werkzeug rule as an OpenAPI path: ``<dataset_id>`` -> ``{dataset_id}``."""
    return _RULE_ARGUMENT.sub(r"{\1}", rule)


def path_parameters(rule: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _RULE_ARGUMENT.findall(rule)
    ]


def operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.operation, "summary": route.summary}
    if route.public:
        op["security"] = []
    parameters = [*path_parameters(route.path), *route.query]
    if parameters:
        op["parameters"] = parameters
    if route.body is not None:
        op["requestBody"] = route.body
    op["responses"] = route.responses
    return op


def document(routes: Iterable[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = operation(route)
    return {
        "openapi": "3.0.3",
        "info": {"title": TITLE, "version": VERSION},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }
