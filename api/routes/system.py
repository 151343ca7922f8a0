"""/v1/system: ping (liveness), healthz (readiness; no auth) and status (auth, per tenant)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Response

from api import config, storage
from api.envelope import json_response, ok
from api.routes import Ctx

log = logging.getLogger("api.system")

VERSION = "0.22.1-lite"
PING_BODY = b"pong"
CACHE_SECONDS = 1.0  # healthz answers from a per-process cache this long: polling stays cheap
CHECKS = ("config", "db", "writes", "storage", "disk")  # the components of healthz, in order


def ping(load: Callable[[], config.Config] | None = None) -> Response:
    """HEAD and anything the fast path in api.app does not take; GET is answered there. Never
    loads the settings (``load``): liveness does not depend on the configuration."""
    return Response(PING_BODY, mimetype="text/plain")


@dataclass(frozen=True)
class _Answer:
    at: float
    body: dict[str, Any]
    status: int


_cache: dict[Path | None, _Answer] = {}


def _settings_problem() -> str | None:
    """What the rest of the application (executors, parsers) would refuse in the environment."""
    try:
        config.values()
    except config.ConfigError as exc:
        return str(exc)
    return None


def _disk(store: storage.Storage, cfg: config.Config) -> None:
    free = store.free_bytes()
    if free < cfg.min_free_disk:
        raise storage.Unavailable(
            "disk",
            f"{free} bytes free on the file system holding {cfg.data_dir}, below "
            f"MIN_FREE_DISK={cfg.min_free_disk}; free disk space or grow the volume",
        )


def _run(checks: dict[str, Callable[[], None]]) -> tuple[dict[str, Any], int]:
    body: dict[str, Any] = {}
    failures: dict[str, Any] = {}
    for name in CHECKS:
        check = checks.get(name)
        if check is None:
            body[name] = "nok"
            failures[name] = {"error": "not checked: the configuration is invalid"}
            continue
        started = time.monotonic()
        try:
            check()
            body[name] = "ok"
        except (storage.Unavailable, config.ConfigError) as exc:
            body[name] = "nok"
            failures[name] = {"error": str(exc)}
        except Exception as exc:  # a failed check is the answer, not an error
            body[name] = "nok"
            failures[name] = {"error": f"{type(exc).__name__}: {exc}"}
        if name in failures:
            failures[name]["elapsed"] = round((time.monotonic() - started) * 1000, 1)
    body["status"] = "nok" if failures else "ok"
    if failures:
        body["_meta"] = failures
    return body, 503 if failures else 200


def healthz(load: Callable[[], config.Config]) -> Response:
    """Readiness: HTTP 200 and status ok only when every check passes, else HTTP 503 naming
    each failed component and why (no auth, by contract). Answered from a per-process cache
    for CACHE_SECONDS; a check never waits longer than about a second."""
    try:
        cfg: config.Config | None = load()
    except config.ConfigError as exc:
        cfg, problem = None, str(exc)
    key = None if cfg is None else cfg.data_dir
    cached = _cache.get(key)
    now = time.monotonic()
    if cached is not None and now - cached.at < CACHE_SECONDS:
        return json_response(cached.body, status=cached.status)
    checks: dict[str, Callable[[], None]]
    if cfg is None:
        checks = {"config": lambda: _raise_config(problem)}
    else:
        store = storage.open_backend(cfg.data_dir, cfg.database_url, cfg.pool).store
        settings = cfg
        checks = {
            "config": lambda: _raise_config(_settings_problem()),
            "db": store.check,
            "writes": store.check_writes,
            "storage": store.check_files,
            "disk": lambda: _disk(store, settings),
        }
    body, status = _run(checks)
    if status != 200:
        log.warning(
            "healthz: %s", "; ".join(f"{k}: {v['error']}" for k, v in body["_meta"].items())
        )
    _cache[key] = _Answer(time.monotonic(), body, status)
    return json_response(body, status=status)


def _raise_config(problem: str | None) -> None:
    if problem is not None:
        raise config.ConfigError([problem])


def status(ctx: Ctx) -> Response:
    """What the caller's tenant may know: the version and its own parse queue. Nothing about
    other tenants or the machine (hosts, pids, executors): operators read those with
    ``python -m api.admin status`` on the host."""
    tasks = storage.open_backend(
        ctx.config.data_dir, ctx.config.database_url, ctx.config.pool
    ).tasks
    return ok({"version": VERSION, "queue": tasks.depth(tenant_id=ctx.tenant_id)})
