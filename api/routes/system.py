"""/v1/system: ping, healthz (no auth) and status (auth)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Response

from api import queue, storage
from api.config import Config, load_task_settings
from api.envelope import json_response, ok
from api.routes import Ctx

VERSION = "0.22.1-lite"
_STARTED = time.time()


PING_BODY = b"pong"


def ping() -> Response:
    """HEAD and anything the fast path in api.app does not take; GET is answered there."""
    return Response(PING_BODY, mimetype="text/plain")


def _check_files(data_dir: Path) -> None:
    folder = data_dir / "files"
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".healthz-{uuid.uuid4().hex}"
    probe.write_bytes(b"ok")
    probe.unlink()


def healthz(config: Config) -> Response:
    """200 when every check passes, else 500 naming what failed (no auth, by contract)."""
    checks: dict[str, Callable[[], None]] = {
        "db": lambda: storage.get_storage(config.data_dir).check(),
        "storage": lambda: _check_files(config.data_dir),
    }
    body: dict[str, Any] = {}
    failures: dict[str, Any] = {}
    for name, check in checks.items():
        try:
            check()
            body[name] = "ok"
        except Exception as exc:  # a failed check is the answer, not an error
            body[name] = "nok"
            failures[name] = {"error": f"{type(exc).__name__}: {exc}"}
    body["status"] = "nok" if failures else "ok"
    if failures:
        body["_meta"] = failures
    return json_response(body, status=500 if failures else 200)


def status(ctx: Ctx) -> Response:
    conn = storage.get_connection(ctx.config.data_dir)
    return ok(
        {
            "version": VERSION,
            "mode": ctx.config.mode,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "process": os.environ.get("SUPERVISOR_PROCESS_NAME", ""),
            "uptime_seconds": round(time.time() - _STARTED, 3),
            "queue": queue.queue_depth(conn=conn),
            "task_executors": queue.list_executors(
                stale_after=load_task_settings().stale_after, conn=conn
            ),
        }
    )
