"""The OpenAPI 3 document of the implemented endpoints (served at /api/v1/openapi.json)."""

from __future__ import annotations

from typing import Any

from api.limits import CHUNK_CHARS, LIST_ITEMS, PAGE_SIZE, QUERY_CHARS, TOP_K
from api.parser_config import CHUNK_METHODS

JSON = "application/json"
_ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}


def _envelope(data: dict[str, Any] | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {"code": {"type": "integer"}, "message": {"type": "string"}}
    if data is not None:
        props["data"] = data
    return {
        "description": "RAGFlow envelope (errors too: HTTP 200 with a non-zero code)",
        "content": {
            JSON: {"schema": {"type": "object", "required": ["code"], "properties": props}}
        },
    }


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {JSON: {"schema": schema}}}


def _path(*names: str) -> list[dict[str, Any]]:
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ]


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


_PAGING = [
    _query("page", {"type": "integer", "minimum": 1}),
    _query("page_size", {"type": "integer", "minimum": 1, "maximum": PAGE_SIZE.value}),
]
_STRINGS = {"type": "array", "items": {"type": "string"}, "maxItems": LIST_ITEMS.value}
_PARSER_CONFIG = {
    "type": "object",
    "properties": {
        "chunk_token_num": {"type": "integer", "minimum": 1, "maximum": 2048},
        "delimiter": {"type": "string", "minLength": 1},
        "auto_keywords": {"type": "integer", "minimum": 0, "maximum": 32},
        "auto_questions": {"type": "integer", "minimum": 0, "maximum": 10},
        "html4excel": {"type": "boolean"},
        "layout_recognize": {"type": "string"},
        "topn_tags": {"type": "integer", "minimum": 1, "maximum": 10},
    },
}
_DATASET_FIELDS = {
    "name": {"type": "string", "minLength": 1, "maxLength": 128},
    "description": {"type": "string", "nullable": True},
    "embedding_model": {"type": "string", "nullable": True},
    "permission": {"type": "string", "enum": ["me", "team"]},
    "chunk_method": {"type": "string", "enum": list(CHUNK_METHODS)},
    "parser_config": _PARSER_CONFIG,
}
_OBJECT = {"type": "object"}
_LIST = {"type": "array", "items": _OBJECT}


def document() -> dict[str, Any]:
    ds, doc = (
        "/api/v1/datasets/{dataset_id}",
        "/api/v1/datasets/{dataset_id}/documents/{document_id}",
    )
    return {
        "openapi": "3.0.3",
        "info": {"title": "RAGFlow-compatible dataset API", "version": "0.22.1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/datasets": {
                "post": {
                    "operationId": "createDataset",
                    "requestBody": _body(
                        {"type": "object", "required": ["name"], "properties": _DATASET_FIELDS}
                    ),
                    "responses": {"200": _envelope(_OBJECT)},
                },
                "get": {
                    "operationId": "listDatasets",
                    "parameters": [
                        *_PAGING,
                        _query(
                            "orderby", {"type": "string", "enum": ["create_time", "update_time"]}
                        ),
                        _query("desc", {"type": "boolean"}),
                        _query("name", {"type": "string"}),
                        _query("id", {"type": "string"}),
                    ],
                    "responses": {"200": _envelope(_LIST)},
                },
                "delete": {
                    "operationId": "deleteDatasets",
                    "requestBody": _body(
                        {
                            "type": "object",
                            "required": ["ids"],
                            "properties": {"ids": {**_STRINGS, "nullable": True}},
                        }
                    ),
                    "responses": {"200": _envelope()},
                },
            },
            ds: {
                "put": {
                    "operationId": "updateDataset",
                    "parameters": _path("dataset_id"),
                    "requestBody": _body(
                        {
                            "type": "object",
                            "properties": {
                                **_DATASET_FIELDS,
                                "pagerank": {"type": "integer", "minimum": 0, "maximum": 100},
                            },
                        }
                    ),
                    "responses": {"200": _envelope(_OBJECT)},
                },
            },
            f"{ds}/documents": {
                "post": {
                    "operationId": "uploadDocuments",
                    "parameters": _path("dataset_id"),
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"file": {"type": "string", "format": "binary"}},
                                }
                            }
                        },
                    },
                    "responses": {"200": _envelope(_LIST)},
                },
                "get": {
                    "operationId": "listDocuments",
                    "parameters": [
                        *_path("dataset_id"),
                        *_PAGING,
                        _query("keywords", {"type": "string"}),
                        _query("id", {"type": "string"}),
                        _query("name", {"type": "string"}),
                        _query("orderby", {"type": "string"}),
                        _query("desc", {"type": "boolean"}),
                        _query("create_time_from", {"type": "integer", "minimum": 0}),
                        _query("create_time_to", {"type": "integer", "minimum": 0}),
                    ],
                    "responses": {"200": _envelope(_OBJECT)},
                },
                "delete": {
                    "operationId": "deleteDocuments",
                    "parameters": _path("dataset_id"),
                    "requestBody": _body(
                        {"type": "object", "properties": {"ids": {**_STRINGS, "nullable": True}}},
                        required=False,
                    ),
                    "responses": {"200": _envelope()},
                },
            },
            doc: {
                "put": {
                    "operationId": "updateDocument",
                    "parameters": _path("dataset_id", "document_id"),
                    "requestBody": _body(
                        {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "meta_fields": _OBJECT,
                                "chunk_method": {"type": "string"},
                                "parser_config": _PARSER_CONFIG,
                                "enabled": {"type": "integer", "enum": [0, 1]},
                            },
                        }
                    ),
                    "responses": {"200": _envelope(_OBJECT)},
                },
                "get": {
                    "operationId": "downloadDocument",
                    "parameters": _path("dataset_id", "document_id"),
                    "responses": {
                        "200": {
                            "description": "the original bytes, or an error envelope",
                            "content": {
                                "application/octet-stream": {
                                    "schema": {"type": "string", "format": "binary"}
                                },
                                JSON: {"schema": _OBJECT},
                            },
                        }
                    },
                },
            },
            f"{ds}/chunks": {
                method: {
                    "operationId": op,
                    "parameters": _path("dataset_id"),
                    "requestBody": _body(
                        {
                            "type": "object",
                            "required": ["document_ids"],
                            "properties": {"document_ids": _STRINGS},
                        }
                    ),
                    "responses": {"200": _envelope()},
                }
                for method, op in (("post", "parseDocuments"), ("delete", "stopParsing"))
            },
            f"{doc}/chunks": {
                "get": {
                    "operationId": "listChunks",
                    "parameters": [
                        *_path("dataset_id", "document_id"),
                        *_PAGING,
                        _query("keywords", {"type": "string"}),
                        _query("id", {"type": "string"}),
                    ],
                    "responses": {"200": _envelope(_OBJECT)},
                },
                "post": {
                    "operationId": "addChunk",
                    "parameters": _path("dataset_id", "document_id"),
                    "requestBody": _body(
                        {
                            "type": "object",
                            "required": ["content"],
                            "properties": {
                                "content": {
                                    "type": "string",
                                    "minLength": 1,
                                    "maxLength": CHUNK_CHARS.value,
                                },
                                "important_keywords": _STRINGS,
                                "questions": _STRINGS,
                            },
                        }
                    ),
                    "responses": {"200": _envelope(_OBJECT)},
                },
                "delete": {
                    "operationId": "deleteChunks",
                    "parameters": _path("dataset_id", "document_id"),
                    "requestBody": _body(
                        {
                            "type": "object",
                            "properties": {"chunk_ids": {**_STRINGS, "nullable": True}},
                        },
                        required=False,
                    ),
                    "responses": {"200": _envelope()},
                },
            },
            f"{doc}/chunks/{{chunk_id}}": {
                "put": {
                    "operationId": "updateChunk",
                    "parameters": _path("dataset_id", "document_id", "chunk_id"),
                    "requestBody": _body(
                        {
                            "type": "object",
                            "properties": {
                                "content": {"type": "string", "maxLength": CHUNK_CHARS.value},
                                "important_keywords": _STRINGS,
                                "questions": _STRINGS,
                                "available": {"type": "boolean"},
                            },
                        }
                    ),
                    "responses": {"200": _envelope()},
                },
            },
            "/api/v1/retrieval": {
                "post": {
                    "operationId": "retrieval",
                    "requestBody": _body(
                        {
                            "type": "object",
                            "required": ["question", "dataset_ids"],
                            "properties": {
                                "question": {"type": "string", "maxLength": QUERY_CHARS.value},
                                "dataset_ids": _STRINGS,
                                "document_ids": _STRINGS,
                                "page": {"type": "integer", "minimum": 1},
                                "page_size": {
                                    "type": "integer",
                                    "minimum": 1,
                                    "maximum": PAGE_SIZE.value,
                                },
                                "similarity_threshold": {
                                    "type": "number",
                                    "minimum": 0,
                                    "maximum": 1,
                                },
                                "vector_similarity_weight": {
                                    "type": "number",
                                    "minimum": 0,
                                    "maximum": 1,
                                },
                                "top_k": {
                                    "type": "integer",
                                    "minimum": 1,
                                    "maximum": TOP_K.value,
                                },
                                "keyword": {"type": "boolean"},
                                "highlight": {"type": "boolean"},
                            },
                        }
                    ),
                    "responses": {"200": _envelope(_OBJECT)},
                },
            },
            "/v1/system/ping": {
                "get": {
                    "operationId": "ping",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "pong",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                },
            },
            "/v1/system/healthz": {
                "get": {
                    "operationId": "healthz",
                    "security": [],
                    "responses": {
                        "200": {"description": "healthy", "content": {JSON: {"schema": _OBJECT}}},
                        "503": {
                            "description": "a check failed (named in _meta with the reason)",
                            "content": {JSON: {"schema": _OBJECT}},
                        },
                    },
                },
            },
            "/v1/system/status": {
                "get": {"operationId": "status", "responses": {"200": _envelope(_OBJECT)}},
            },
        },
    }
