"""A tiny WSGI app for lifecycle tests: ping, healthz and a slow endpoint.

Served by real Gunicorn under real supervisord; `/sleep?seconds=N` gives in-flight requests that
take seconds, so graceful stops can be observed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

StartResponse = Callable[..., Any]


def _respond(start_response: StartResponse, status: str, body: bytes) -> Iterable[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/v1/system/ping":
        return _respond(start_response, "200 OK", b"pong")
    if path == "/v1/system/healthz":
        return _respond(start_response, "200 OK", b'{"status": "ok"}')
    if path == "/sleep":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        seconds = min(float(query.get("seconds", ["1"])[0]), 30.0)
        time.sleep(seconds)
        return _respond(start_response, "200 OK", f"slept {seconds}".encode())
    return _respond(start_response, "404 Not Found", b"not found")
