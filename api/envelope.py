"""RAGFlow's JSON envelope: codes, success and error responses, and the one error type."""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Any

from werkzeug.wrappers import Response


class Code(IntEnum):
    SUCCESS = 0
    EXCEPTION = 100
    ARGUMENT_ERROR = 101
    DATA_ERROR = 102
    OPERATING_ERROR = 103
    AUTHENTICATION_ERROR = 109
    PERMISSION_ERROR = 108
    NOT_FOUND = 404
    SERVER_ERROR = 500


class ApiError(Exception):
    """Raised anywhere in a handler; becomes {"code": code, "message": message}, with HTTP 200
    as RAGFlow answers errors of the request, or ``status`` (503 when the service cannot
    serve: misconfigured, storage unavailable)."""

    def __init__(self, code: Code, message: str, data: Any = None, status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.status = status


def argument_error(message: str) -> ApiError:
    return ApiError(Code.ARGUMENT_ERROR, message)


def data_error(message: str) -> ApiError:
    return ApiError(Code.DATA_ERROR, message)


def permission_error(message: str) -> ApiError:
    return ApiError(Code.PERMISSION_ERROR, message)


class EnvelopeResponse(Response):
    """A JSON response; ``code`` is its envelope's code (None for JSON without an envelope),
    for the metrics and the access log (api.app puts it in the WSGI environ)."""

    code: int | None = None


def json_response(body: dict[str, Any], status: int = 200) -> EnvelopeResponse:
    response = EnvelopeResponse(
        json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json"
    )
    code = body.get("code")
    response.code = code if isinstance(code, int) else None
    return response


def ok(data: Any = None, **extra: Any) -> EnvelopeResponse:
    body: dict[str, Any] = {"code": Code.SUCCESS.value}
    if data is not None:
        body["data"] = data
    body.update(extra)
    return json_response(body)


def error_response(exc: ApiError) -> EnvelopeResponse:
    body: dict[str, Any] = {"code": int(exc.code), "message": exc.message}
    if exc.data is not None:
        body["data"] = exc.data
    return json_response(body, status=exc.status)
