"""THE route table: one record per route.

Each record gives the URL rule, the method, the operation id (Werkzeug endpoint and OpenAPI
operationId), the handler, the auth rule and the OpenAPI summary, query parameters, body and
responses. From it come the URL map (``URLS``, RAGFlow's ``strict_slashes=False``: a trailing
slash matches the same route), the auth decision in api.app and the OpenAPI document.

Handlers of ``Auth.KEY`` routes get a Ctx (the caller's tenant resolved from the API key) plus
the URL's variables; handlers of ``Auth.NONE`` routes get only the settings loader, so they
answer whatever the key or the configuration.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Response

from api import config, filetypes, openapi, parser_config
from api.envelope import json_response
from api.limits import CHUNK_CHARS, PAGE_SIZE, QUERY_CHARS, TOP_K
from api.openapi import (
    JSON,
    LIST,
    OBJECT,
    PAGING,
    STRINGS,
    body,
    envelope,
    query,
)
from api.routes import apidocs, chunks, datasets, documents, retrieval, system
from api.validation import json_schema


class Auth(enum.Enum):
    KEY = "key"  # an API key (Authorization: Bearer ...) naming the caller's tenant
    NONE = "none"  # anyone: probes and the API description


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # Werkzeug rule
    operation: str  # endpoint and OpenAPI operationId
    handler: Callable[..., Response]
    summary: str
    auth: Auth = Auth.KEY
    query: tuple[dict[str, Any], ...] = ()
    body: dict[str, Any] | None = None  # OpenAPI requestBody
    responses: Mapping[str, Any] = field(default_factory=lambda: {"200": envelope()})

    @property
    def public(self) -> bool:
        return self.auth is Auth.NONE


def serve_openapi(load: Callable[[], config.Config]) -> Response:
    return json_response(openapi.document(ROUTES))


DATASETS = "/api/v1/datasets"
DS = f"{DATASETS}/<dataset_id>"
DOC = f"{DS}/documents/<document_id>"
_IDS = {"type": "object", "properties": {"ids": {**STRINGS, "nullable": True}}}
_DOCUMENT_IDS = {
    "type": "object",
    "required": ["document_ids"],
    "properties": {"document_ids": STRINGS},
}
_CHUNK_FIELDS = {"important_keywords": STRINGS, "questions": STRINGS}
HTML = "text/html"
_PROBE = {"description": "pong", "content": {"text/plain": {"schema": {"type": "string"}}}}

ROUTES: tuple[Route, ...] = (
    Route(
        "POST", DATASETS, "createDataset", datasets.create, "Create a dataset",
        body=body(datasets.CREATE.json_schema()),
        responses={"200": envelope(OBJECT)},
    ),
    Route(
        "GET", DATASETS, "listDatasets", datasets.list_, "List datasets",
        query=(
            *PAGING,
            query("orderby", {"type": "string", "enum": ["create_time", "update_time"]}),
            query("desc", {"type": "boolean"}),
            query("name", {"type": "string"}),
            query("id", {"type": "string"}),
        ),
        responses={"200": envelope(LIST)},
    ),
    Route(
        "DELETE", DATASETS, "deleteDatasets", datasets.delete, "Delete datasets",
        body=body(datasets.DELETE.json_schema()),
    ),
    Route(
        "PUT", DS, "updateDataset", datasets.update, "Update a dataset",
        body=body(datasets.UPDATE.json_schema()),
        responses={"200": envelope(OBJECT)},
    ),
    Route(
        "POST", f"{DS}/documents", "uploadDocuments", documents.upload, "Upload documents",
        body={
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": filetypes.openapi_file_schema()},
                    }
                }
            },
        },
        responses={"200": envelope(LIST)},
    ),
    Route(
        "GET", f"{DS}/documents", "listDocuments", documents.list_, "List documents",
        query=(
            # RAGFlow's paging: page 0 is the first page, page_size 0 an empty page
            query("page", {"type": "integer", "minimum": 0}),
            query("page_size", {"type": "integer", "minimum": 0, "maximum": PAGE_SIZE.value}),
            query("keywords", {"type": "string"}),
            query("id", {"type": "string"}),
            query("name", {"type": "string"}),
            query("orderby", {"type": "string", "enum": list(documents.DOCUMENT_ORDERS)}),
            query("desc", {"type": "boolean"}),
            query("create_time_from", {"type": "integer", "minimum": 0}),
            query("create_time_to", {"type": "integer", "minimum": 0}),
        ),
        responses={"200": envelope(OBJECT)},
    ),
    Route(
        "DELETE", f"{DS}/documents", "deleteDocuments", documents.delete, "Delete documents",
        body=body(_IDS, required=False),
    ),
    Route(
        "PUT", DOC, "updateDocument", documents.update, "Update a document",
        body=body(
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "meta_fields": OBJECT,
                    "chunk_method": {"type": "string"},
                    "parser_config": json_schema(parser_config.document_parser_config),
                    "enabled": {"type": "integer", "enum": [0, 1]},
                },
            }
        ),
        responses={"200": envelope(OBJECT)},
    ),
    Route(
        "GET", DOC, "downloadDocument", documents.download, "Download a document's file",
        responses={
            "200": {
                "description": "the original bytes, or an error envelope",
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    JSON: {"schema": OBJECT},
                },
            }
        },
    ),
    Route(
        "POST", f"{DS}/chunks", "parseDocuments", chunks.parse, "Start parsing documents",
        body=body(_DOCUMENT_IDS),
    ),
    Route(
        "DELETE", f"{DS}/chunks", "stopParsing", chunks.stop, "Stop parsing documents",
        body=body(_DOCUMENT_IDS),
    ),
    Route(
        "GET", f"{DOC}/chunks", "listChunks", chunks.list_, "List a document's chunks",
        query=(
            PAGING[0],
            # RAGFlow: page_size 0 lists every chunk
            query("page_size", {"type": "integer", "minimum": 0, "maximum": PAGE_SIZE.value}),
            query("keywords", {"type": "string"}),
            query("id", {"type": "string"}),
        ),
        responses={"200": envelope(OBJECT)},
    ),
    Route(
        "POST", f"{DOC}/chunks", "addChunk", chunks.add, "Add a chunk",
        body=body(
            {
                "type": "object",
                "required": ["content"],
                "properties": {
                    "content": {"type": "string", "minLength": 1, "maxLength": CHUNK_CHARS.value},
                    **_CHUNK_FIELDS,
                },
            }
        ),
        responses={"200": envelope(OBJECT)},
    ),
    Route(
        "DELETE", f"{DOC}/chunks", "deleteChunks", chunks.delete, "Delete chunks",
        body=body(
            {"type": "object", "properties": {"chunk_ids": {**STRINGS, "nullable": True}}},
            required=False,
        ),
    ),
    Route(
        "PUT", f"{DOC}/chunks/<chunk_id>", "updateChunk", chunks.update, "Update a chunk",
        body=body(
            {
                "type": "object",
                "properties": {
                    "content": {"type": "string", "maxLength": CHUNK_CHARS.value},
                    **_CHUNK_FIELDS,
                    "available": {"type": "boolean"},
                },
            }
        ),
    ),
    Route(
        "POST", "/api/v1/retrieval", "retrieval", retrieval.retrieval, "Retrieve chunks",
        body=body(
            {
                "type": "object",
                "required": ["question", "dataset_ids"],
                "properties": {
                    "question": {"type": "string", "maxLength": QUERY_CHARS.value},
                    "dataset_ids": STRINGS,
                    "document_ids": STRINGS,
                    "page": {"type": "integer", "minimum": 1},
                    "page_size": {"type": "integer", "minimum": 1, "maximum": PAGE_SIZE.value},
                    "similarity_threshold": {"type": "number"},
                    "vector_similarity_weight": {"type": "number"},
                    "metadata_condition": retrieval.METADATA_CONDITION.json_schema(),
                    "top_k": {"type": "integer", "minimum": 1, "maximum": TOP_K.value},
                    "keyword": {"type": "boolean"},
                    "highlight": {"type": "boolean"},
                },
            }
        ),
        responses={"200": envelope(OBJECT)},
    ),
    Route(
        "GET", "/api/v1/openapi.json", "openapi", serve_openapi, "This document",
        auth=Auth.NONE, responses={"200": {"description": "OpenAPI 3", "content": {JSON: {}}}},
    ),
    Route(
        "GET", apidocs.PAGE_PATH, "apiDocs", apidocs.page, "Interactive page for this document",
        auth=Auth.NONE, responses={"200": {"description": "Swagger UI", "content": {HTML: {}}}},
    ),
    *(
        Route(
            "GET", f"{apidocs.PAGE_PATH}/{name}", f"apiDocsAsset{index}", apidocs.asset(name),
            f"Swagger UI's {name}", auth=Auth.NONE,
            responses={"200": {"description": name, "content": {mimetype: {}}}},
        )
        for index, (name, mimetype) in enumerate(apidocs.ASSETS.items())
    ),
    Route(
        "GET", "/v1/system/ping", "ping", system.ping, "Liveness", auth=Auth.NONE,
        responses={"200": _PROBE},
    ),
    Route(
        "GET", "/v1/system/healthz", "healthz", system.healthz, "Readiness", auth=Auth.NONE,
        responses={
            "200": {"description": "healthy", "content": {JSON: {"schema": OBJECT}}},
            "503": {
                "description": "a check failed (named in _meta with the reason)",
                "content": {JSON: {"schema": OBJECT}},
            },
        },
    ),
    Route(
        "GET", "/v1/system/status", "status", system.status, "The caller's parse queue",
        responses={"200": envelope(OBJECT)},
    ),
)  # fmt: skip

BY_OPERATION: Mapping[str, Route] = {route.operation: route for route in ROUTES}
URLS = Map(
    [Rule(r.path, methods=[r.method], endpoint=r.operation) for r in ROUTES], strict_slashes=False
)
