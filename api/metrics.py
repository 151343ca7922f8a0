"""Prometheus metrics recorded by the application's processes (web workers, task executors).

Recording is on when PROMETHEUS_MULTIPROC_DIR is set (the renderer sets it for every program
when METRICS_PORT is set): each process writes its values to files in that directory, and the
`metrics` program (api.metrics_exporter) adds them up. Without it every function here returns at
once. The metrics are created on first use (or by prepare()), never at import.

Labels are bounded: ``route`` is the URL rule's template (``unmatched`` for a path no rule
matches), ``method`` one of METHODS or ``other``, ``code`` the envelope code (``""`` for a
response without an envelope), a search's ``path`` one of api.storage.topk.SearchPath.
"""

from __future__ import annotations

import bisect
import os
import threading
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
FLUSH_SECONDS = 0.5  # a web worker's counts reach its metrics file this late at most
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
    searches: Counter


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
        searches=Counter(
            "ragflow_retrieval_searches",
            "Full-text searches, by how they were answered: through the bound on the best top_k"
            " (bounded), or by ranking every match and why (api.storage.topk.SearchPath)",
            ["path"],
        ),
    )


def prepare() -> None:
    """Create the metrics now (a Gunicorn master, before it forks the workers that use them)."""
    if enabled():
        _metrics()


class _Recorder:
    """One process's request counts and timings, kept in memory and written to its multiprocess
    file every FLUSH_SECONDS by a thread of its own, and at the worker's exit (flush()).

    Writing each request's five values to the file (in flight up and down, the counter, a
    bucket and the sum) cost ping about 5 % of its throughput (bench.metrics_overhead); the
    request path now only adds to dicts under an uncontended lock. What a scrape shows lags by
    FLUSH_SECONDS at most, the in-flight gauge included (the value at the last write); a worker
    killed with SIGKILL loses that much. Label children are cached: the label sets are bounded."""

    def __init__(self, metrics: _Metrics) -> None:
        self.metrics = metrics
        self.lock = threading.Lock()
        self.counts: dict[tuple[str, str, str, str], int] = {}
        self.buckets: dict[str, list[int]] = {}  # route -> per-bucket counts (+Inf last)
        self.sums: dict[str, float] = {}
        self.in_flight = 0
        self.written_in_flight = 0
        self.counters: dict[tuple[str, str, str, str], Any] = {}
        self.histograms: dict[str, Any] = {}
        thread = threading.Thread(target=self._run, name="metrics-flush", daemon=True)
        thread.start()

    def begin(self) -> None:
        with self.lock:
            self.in_flight += 1

    def end(self, labels: tuple[str, str, str, str], route: str, seconds: float) -> None:
        bucket = bisect.bisect_left(LATENCY_BUCKETS, seconds)  # the first bound >= seconds
        with self.lock:
            self.in_flight -= 1
            self.counts[labels] = self.counts.get(labels, 0) + 1
            counts = self.buckets.get(route)
            if counts is None:
                counts = self.buckets[route] = [0] * (len(LATENCY_BUCKETS) + 1)
            counts[bucket] += 1
            self.sums[route] = self.sums.get(route, 0.0) + seconds

    def flush(self) -> None:
        with self.lock:
            counts, self.counts = self.counts, {}
            buckets, self.buckets = self.buckets, {}
            sums, self.sums = self.sums, {}
            in_flight = self.in_flight
        for labels, count in counts.items():
            counter = self.counters.get(labels)
            if counter is None:
                counter = self.counters[labels] = self.metrics.requests.labels(*labels)
            counter.inc(count)
        for route, per_bucket in buckets.items():
            histogram = self.histograms.get(route)
            if histogram is None:
                histogram = self.histograms[route] = self.metrics.duration.labels(route)
            # prometheus_client's histogram child: _sum, and _buckets per bound (not
            # cumulative, +Inf last), as its observe() writes them (tests/test_dependency_bounds)
            histogram._sum.inc(sums[route])
            for index, count in enumerate(per_bucket):
                if count:
                    histogram._buckets[index].inc(count)
        if in_flight != self.written_in_flight:
            self.metrics.in_flight.set(in_flight)
            self.written_in_flight = in_flight

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush()


_recorder: _Recorder | None = None


def instrument(app: WSGIApplication) -> WSGIApplication:
    """``app`` wrapped to count and time every request (``app`` itself when metrics are off).
    ``app`` puts the route template, the status and the envelope code in the environ (ROUTE_KEY,
    STATUS_KEY, CODE_KEY). Called in each process that serves (a worker, after the fork)."""
    global _recorder
    if not enabled():
        return app
    recorder = _recorder = _Recorder(_metrics())

    def observed(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start = time.perf_counter()
        recorder.begin()
        try:
            return app(environ, start_response)
        finally:
            elapsed = time.perf_counter() - start
            route = environ.get(ROUTE_KEY, UNMATCHED)
            method = environ.get("REQUEST_METHOD", "")
            code = environ.get(CODE_KEY)
            labels = (
                route,
                method if method in METHODS else "other",
                str(environ.get(STATUS_KEY, 500)),
                "" if code is None else str(code),
            )
            recorder.end(labels, route, elapsed)

    return observed


def flush() -> None:
    """Write what this process recorded and has not written yet (a worker exiting)."""
    if _recorder is not None:
        _recorder.flush()


def task_finished(outcome: str, seconds: float | None = None) -> None:
    """Count one task outcome (TASK_OUTCOMES); ``seconds`` from claim to outcome."""
    if not enabled():
        return
    metrics = _metrics()
    metrics.tasks.labels(outcome).inc()
    if seconds is not None:
        metrics.task_duration.observe(seconds)


def searched(path: str) -> None:
    """Count one search by how it was answered (api.storage.topk.SearchPath); a path's series
    starts at its first search."""
    if enabled():
        _metrics().searches.labels(path).inc()


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def resident_and_shared(pid: int | str = "self") -> tuple[int, int] | None:
    """A process's resident memory and the part of it shared with the page cache, in bytes
    (Linux /proc statm: the resident pages of the files it maps); None when /proc does not
    tell. Mapped file pages are the OS page cache, shared by every process and reclaimed under
    memory pressure."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            resident, shared = statm.read().split()[1:3]
        return int(resident) * PAGE_SIZE, int(shared) * PAGE_SIZE
    except (OSError, ValueError):
        return None


def private_bytes(pid: int | str = "self") -> int | None:
    """A process's resident memory less what it shares with the page cache: what the memory
    watchdogs (GUNICORN_WORKER_MAX_MEMORY, EXECUTOR_MAX_MEMORY) limit. None when /proc does
    not tell."""
    found = resident_and_shared(pid)
    return None if found is None else found[0] - found[1]
