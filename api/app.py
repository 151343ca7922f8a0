"""The Werkzeug WSGI application: routing, auth, and the one error path.

Every error becomes RAGFlow's envelope with HTTP 200: ApiError as raised,
storage NotFound/Conflict as 102, Werkzeug HTTP errors (404, 405, 413, ...) as
code 100 with the exception's repr, anything unexpected as code 100 with the
repr (logged with its traceback, which never reaches the client).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.wrappers import Request, Response

from api import auth, config, logs, metrics, openapi, storage
from api.envelope import ApiError, Code, EnvelopeResponse, error_response, json_response
from api.routes import Ctx, chunks, datasets, documents, retrieval, system

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("api.app")

Handler = Callable[..., Response]

# endpoint -> (handler, needs a key). The handler gets a Ctx plus the URL's variables.
ENDPOINTS: dict[str, tuple[Handler, bool]] = {
    "datasets.create": (datasets.create, True),
    "datasets.list": (datasets.list_, True),
    "datasets.update": (datasets.update, True),
    "datasets.delete": (datasets.delete, True),
    "documents.upload": (documents.upload, True),
    "documents.list": (documents.list_, True),
    "documents.update": (documents.update, True),
    "documents.download": (documents.download, True),
    "documents.delete": (documents.delete, True),
    "chunks.parse": (chunks.parse, True),
    "chunks.stop": (chunks.stop, True),
    "chunks.list": (chunks.list_, True),
    "chunks.add": (chunks.add, True),
    "chunks.update": (chunks.update, True),
    "chunks.delete": (chunks.delete, True),
    "retrieval": (retrieval.retrieval, True),
    "system.status": (system.status, True),
}

DS = "/api/v1/datasets/<dataset_id>"
DOC = f"{DS}/documents/<document_id>"
URLS = Map(
    [
        Rule("/api/v1/datasets", methods=["POST"], endpoint="datasets.create"),
        Rule("/api/v1/datasets", methods=["GET"], endpoint="datasets.list"),
        Rule("/api/v1/datasets", methods=["DELETE"], endpoint="datasets.delete"),
        Rule(DS, methods=["PUT"], endpoint="datasets.update"),
        Rule(f"{DS}/documents", methods=["POST"], endpoint="documents.upload"),
        Rule(f"{DS}/documents", methods=["GET"], endpoint="documents.list"),
        Rule(f"{DS}/documents", methods=["DELETE"], endpoint="documents.delete"),
        Rule(DOC, methods=["PUT"], endpoint="documents.update"),
        Rule(DOC, methods=["GET"], endpoint="documents.download"),
        Rule(f"{DS}/chunks", methods=["POST"], endpoint="chunks.parse"),
        Rule(f"{DS}/chunks", methods=["DELETE"], endpoint="chunks.stop"),
        Rule(f"{DOC}/chunks", methods=["GET"], endpoint="chunks.list"),
        Rule(f"{DOC}/chunks", methods=["POST"], endpoint="chunks.add"),
        Rule(f"{DOC}/chunks", methods=["DELETE"], endpoint="chunks.delete"),
        Rule(f"{DOC}/chunks/<chunk_id>", methods=["PUT"], endpoint="chunks.update"),
        Rule("/api/v1/retrieval", methods=["POST"], endpoint="retrieval"),
        Rule("/api/v1/openapi.json", methods=["GET"], endpoint="openapi"),
        Rule("/v1/system/ping", methods=["GET"], endpoint="system.ping"),
        Rule("/v1/system/healthz", methods=["GET"], endpoint="system.healthz"),
        Rule("/v1/system/status", methods=["GET"], endpoint="system.status"),
    ]
)


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
        return self.settings

    def respond(self, request: Request) -> Response:
        try:
            cfg = self.load_settings()
            request.max_content_length = cfg.max_content_length
            rule, args = URLS.bind_to_environ(request.environ).match(return_rule=True)
            # the rule's template, not the path: a bounded label for the metrics
            request.environ[metrics.ROUTE_KEY] = rule.rule
            endpoint = rule.endpoint
            return self.dispatch(request, cfg, str(endpoint), dict(args))
        except RequestRedirect as redirect:
            return redirect.get_response(request.environ)
        except ApiError as exc:
            return error_response(exc)
        except storage.NotFound as exc:
            return error_response(ApiError(Code.DATA_ERROR, f"Not found: {exc}"))
        except storage.Conflict as exc:
            return error_response(ApiError(Code.DATA_ERROR, str(exc)))
        except HTTPException as exc:
            return error_response(ApiError(Code.EXCEPTION, repr(exc)))
        except config.ConfigError as exc:
            log.error("configuration error (code %d): %s", Code.SERVER_ERROR, exc)
            return error_response(ApiError(Code.SERVER_ERROR, f"Server misconfigured: {exc}"))
        except Exception as exc:
            if self.debug:
                raise
            log.exception(
                "unexpected error in %s %s (code %d)", request.method, request.path, Code.EXCEPTION
            )
            return error_response(ApiError(Code.EXCEPTION, repr(exc)[:1000]))

    def dispatch(
        self, request: Request, cfg: config.Config, endpoint: str, args: dict[str, Any]
    ) -> Response:
        if endpoint == "system.ping":
            return system.ping()
        if endpoint == "system.healthz":
            return system.healthz(cfg)
        if endpoint == "openapi":
            return json_response(openapi.document())
        handler, _ = ENDPOINTS[endpoint]
        store = storage.get_storage(cfg.data_dir)
        tenant = auth.tenant_for(request.headers.get("Authorization"), cfg.api_key, store)
        return handler(Ctx(request, store, tenant, cfg), **args)


def create_app(settings: config.Config | None = None, debug: bool = False) -> App:
    return App(settings, debug)
