"""The bare ceiling: a hello-world WSGI app served under the same Gunicorn settings as ours."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

_BODY = b"pong"


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer every request with 200 `pong`, reading nothing but the headers."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(_BODY)))])
    return [_BODY]
