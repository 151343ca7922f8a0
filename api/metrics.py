"""Prometheus metrics recorded by the application's processes (web workers, task executors).

Recording is on when PROMETHEUS_MULTIPROC_DIR is set (the renderer sets it for every program
when METRICS_PORT is set): each process writes its values to files in that directory, and the
`metrics` program (api.metrics_exporter) adds them up. Without it every function here returns at
once. The metrics are created on first use (or by prepare()), never at import.

Labels are bounded: ``route`` is the URL rule's template (``unmatched`` for a path no rule
matches), ``method`` one of METHODS or ``other``, ``code`` the envelope code (``""`` for a
response without an envelope).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from prometheus_client import Counter, Gauge, Histogram

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# WSGI environ keys the application fills in for the metrics and the access log.
ROUTE_KEY = "ragflow.route"
CODE_KEY = "ragflow.code"
STATUS_KEY = "ragflow.status"
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"})
TASK_OUTCOMES = ("done", "failed", "handed_back", "lease_expired")
# Request latency: a ping takes ~0.3 ms, an upload of a large file seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
TASK_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


def enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_DIR))


@dataclass(frozen=True)
class _Metrics:
    requests: Counter
    duration: Histogram
    in_flight: Gauge
    tasks: Counter
    task_duration: Histogram


@cache
def _metrics() -> _Metrics:
    from prometheus_client import Counter, Gauge, Histogram

    tasks = Counter(
        "ragflow_tasks", "Parse tasks finished by the executors, by outcome", ["outcome"]
    )
    for outcome in TASK_OUTCOMES:
        tasks.labels(outcome)  # every outcome is exported from the start, at 0
    return _Metrics(
        requests=Counter(
            "ragflow_http_requests",
            "HTTP requests answered, by route template, method, HTTP status and envelope code",
            ["route", "method", "status", "code"],
        ),
        duration=Histogram(
            "ragflow_http_request_duration_seconds",
            "Time the application took to answer, by route template",
            ["route"],
            buckets=LATENCY_BUCKETS,
        ),
        in_flight=Gauge(
            "ragflow_http_requests_in_flight",
            "Requests the web workers are answering now",
            multiprocess_mode="livesum",
        ),
        tasks=tasks,
        task_duration=Histogram(
            "ragflow_task_duration_seconds",
            "Time from claim to outcome of a parse task",
            buckets=TASK_BUCKETS,
        ),
    )


def prepare() -> None:
    """Create the metrics now (a Gunicorn master, before it forks the workers that use them)."""
    if enabled():
        _metrics()


def instrument(app: WSGIApplication) -> WSGIApplication:
    """``app`` wrapped to count and time every request (``app`` itself when metrics are off).
    ``app`` puts the route template, the status and the envelope code in the environ (ROUTE_KEY,
    STATUS_KEY, CODE_KEY). Label children are cached here: the label sets are bounded."""
    if not enabled():
        return app
    metrics = _metrics()
    counters: dict[tuple[str, str, str, str], Any] = {}
    histograms: dict[str, Any] = {}
    in_flight = metrics.in_flight

    def observed(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start = time.perf_counter()
        in_flight.inc()
        try:
            return app(environ, start_response)
        finally:
            elapsed = time.perf_counter() - start
            in_flight.dec()
            route = environ.get(ROUTE_KEY, UNMATCHED)
            method = environ.get("REQUEST_METHOD", "")
            code = environ.get(CODE_KEY)
            labels = (
                route,
                method if method in METHODS else "other",
                str(environ.get(STATUS_KEY, 500)),
                "" if code is None else str(code),
            )
            counter = counters.get(labels)
            if counter is None:
                counter = counters[labels] = metrics.requests.labels(*labels)
            counter.inc()
            histogram = histograms.get(route)
            if histogram is None:
                histogram = histograms[route] = metrics.duration.labels(route)
            histogram.observe(elapsed)

    return observed


def task_finished(outcome: str, seconds: float | None = None) -> None:
    """Count one task outcome (TASK_OUTCOMES); ``seconds`` from claim to outcome."""
    if not enabled():
        return
    metrics = _metrics()
    metrics.tasks.labels(outcome).inc()
    if seconds is not None:
        metrics.task_duration.observe(seconds)


def resident_bytes() -> int:
    """This process's resident memory now (Linux /proc), its peak where /proc is missing."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
