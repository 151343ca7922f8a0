"""The Werkzeug WSGI application: routing, auth, and the one error path.

Every error becomes RAGFlow's envelope with HTTP 200: ApiError as raised,
storage NotFound/Conflict as 102, Werkzeug HTTP errors (404, 405, 413, ...) as
code 100 with the exception's repr, anything unexpected as code 100 with the
repr (logged with its traceback, which never reaches the client). When the
service cannot serve (storage Unavailable, invalid configuration) the envelope
has code 500, the cause as its message, and HTTP 503.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Request, Response

from api import auth, config, logs, metrics, search, storage
from api.envelope import ApiError, Code, EnvelopeResponse, error_response
from api.routes import Ctx, system
from api.routes.table import BY_OPERATION, URLS

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("api.app")

PING_HEADERS = [
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Length", str(len(system.PING_BODY))),
]


@dataclass
class App:
    """The WSGI callable. Settings are read on the first request of each process, so
    importing and constructing it reads no file and opens nothing."""

    settings: config.Config | None = None
    debug: bool = False  # let unexpected errors reach Werkzeug's debugger (dev server --debug)
    started: bool = False  # system.on_start ran in this process
    # self.serve, counted and timed when metrics are on; decided on each process's first request
    observed: WSGIApplication | None = field(default=None, repr=False)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.observed is None:
            self.observed = metrics.instrument(self.serve)
        return self.observed(environ, start_response)

    def serve(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/v1/system/ping" and environ.get("REQUEST_METHOD") == "GET":
            # Liveness probes and load balancers call this often: answer it before building a
            # Werkzeug request and routing (about 90 us of a ~340 us request on a sync worker).
            environ[metrics.ROUTE_KEY] = "/v1/system/ping"
            environ[metrics.STATUS_KEY] = 200
            start_response("200 OK", PING_HEADERS)
            return [system.PING_BODY]
        request = Request(environ)
        response = self.respond(request)
        environ[metrics.STATUS_KEY] = response.status_code
        if isinstance(response, EnvelopeResponse) and response.code is not None:
            environ[metrics.CODE_KEY] = response.code
        return response(environ, start_response)

    def load_settings(self) -> config.Config:
        if self.settings is None:
            self.settings = config.load()
            if not logging.getLogger().handlers:  # Gunicorn's logconfig may have set one up
                logs.setup(self.settings.log_format)
        if not self.started:
            self.started = True
            _on_start(self.settings)
        return self.settings

    def warm(self) -> None:
        """Before a Gunicorn worker serves (post_worker_init): read the settings, sweep staged
        uploads, open the process's database session and search once (search.warm), so that its
        first request costs what the next ones do instead of 200 ms more (docs/architecture.md,
        "A worker's first request"). Whatever fails is logged and left to the first request,
        which reports it: a worker always boots (when one fails to, Gunicorn stops the whole
        server)."""
        try:
            cfg = self.load_settings()
            store = storage.open_backend(cfg.data_dir, cfg.database_url, cfg.pool).store
            store.check()
            search.warm(store)
        except (config.ConfigError, storage.StorageError) as exc:
            log.warning("the worker serves unprepared (%s): %s", type(exc).__name__, exc)
        except Exception:
            log.exception("the worker serves unprepared: an unexpected error")

    def respond(self, request: Request) -> Response:
        try:
            rule, args = URLS.bind_to_environ(request.environ).match(return_rule=True)
            # the rule's template, not the path: a bounded label for the metrics
            request.environ[metrics.ROUTE_KEY] = rule.rule
            route = BY_OPERATION[str(rule.endpoint)]
            if route.public:  # healthz reports a configuration error as a failed check
                return route.handler(self.load_settings)
            cfg = self.load_settings()
            request.max_content_length = cfg.max_content_length
            store = storage.open_backend(cfg.data_dir, cfg.database_url, cfg.pool).store
            tenant = auth.tenant_for(request.headers.get("Authorization"), cfg.api_key, store)
            return route.handler(Ctx(request, store, tenant, cfg), **args)
        except RequestRedirect as redirect:
            return redirect.get_response(request.environ)
        except ApiError as exc:
            return error_response(exc)
        except storage.NotFound as exc:
            return error_response(ApiError(Code.DATA_ERROR, f"Not found: {exc}"))
        except storage.Conflict as exc:
            return error_response(ApiError(Code.DATA_ERROR, str(exc)))
        except storage.Unavailable as exc:
            log.error("storage unavailable (%s): %s", exc.component, exc.message)
            return error_response(ApiError(Code.SERVER_ERROR, exc.message, status=503))
        except HTTPException as exc:
            return error_response(ApiError(Code.EXCEPTION, repr(exc)))
        except config.ConfigError as exc:
            log.error("configuration error (code %d): %s", Code.SERVER_ERROR, exc)
            return error_response(
                ApiError(Code.SERVER_ERROR, f"Server misconfigured: {exc}", status=503)
            )
        except Exception as exc:
            if self.debug:
                raise
            log.exception(
                "unexpected error in %s %s (code %d)", request.method, request.path, Code.EXCEPTION
            )
            return error_response(ApiError(Code.EXCEPTION, repr(exc)[:1000]))


def _on_start(cfg: config.Config) -> None:
    """Once per process, before a Gunicorn worker serves (App.warm) or at the first request:
    remove staged uploads no live process writes (left by a worker killed while storing one);
    safe while other workers upload."""
    try:
        removed = storage.open_backend(
            cfg.data_dir, cfg.database_url, cfg.pool
        ).store.sweep_staging()
    except OSError as exc:
        log.warning("sweeping staged uploads failed: %s", exc)
        return
    if removed:
        log.info("removed %d staged upload file(s) left by interrupted uploads", removed)


def create_app(settings: config.Config | None = None, debug: bool = False) -> App:
    return App(settings, debug)
