"""Gunicorn server hooks, imported by the rendered gunicorn.conf.py.

post_fork gives every worker a parent-death signal: when the master is SIGKILLed its sync workers
would otherwise keep serving from (and holding) the listening socket until they notice, about
timeout/2 seconds later. With PR_SET_PDEATHSIG they get SIGTERM (graceful: the request in flight
completes) the moment the master dies.

pre_fork freezes the master's objects (gc.freeze) so that the workers' garbage collections do not
write to, and so copy, the pages they share with the preloaded master.

post_worker_init first lets the application prepare the worker before it serves (api.app.App.warm:
settings read, database session open), so that its first request costs what the next ones do.
Then post_worker_init, pre_request and post_request let a sync worker that is told to stop (SIGTERM)
in the middle of a request drop its copy of the listening socket at once instead of when the
request ends: with the master's copy closed on SIGTERM and the socket holder stopped first on
shutdown, the port then refuses new connections during the drain instead of queueing them in a
backlog nobody accepts from. An idle worker exits at once anyway; a worker between requests
keeps its copy for the moment it needs to see that it should exit.

The memory watchdog (GUNICORN_WORKER_MAX_MEMORY, bytes): post_request looks at the worker's
private memory, the peak during the request included (Linux VmHWM, reset after each check, less
the pages shared with the page cache: the files it maps are not the worker's); over
the limit the worker is retired the way max_requests retires it: it finishes the request it
answers, exits, and the master starts a new one. No request fails.

Worker recycles are counted by reason in `ragflow_gunicorn_worker_recycles_total` (metrics on:
PROMETHEUS_MULTIPROC_DIR): the worker notes why it exits (worker_exit: max_requests, memory,
timeout, or crash for an exception) in a file named by its pid; the master's child_exit counts
it, `crash` when there is no note (killed: SIGKILL, out of memory), and marks the worker dead for
prometheus_client. A worker stopped by the master (shutdown, reload, fewer workers) is no recycle.
"""

from __future__ import annotations

import contextlib
import gc
import os
import random
import signal
import socket
import sys
from functools import cache
from types import FrameType
from typing import Any

from gunicorn.workers.sync import SyncWorker

from api import metrics
from shared import parent_death
from shared.settings import BY_NAME


def post_worker_init(worker: Any) -> None:
    """In a worker, after its signal handlers are installed, before it serves."""
    warm = getattr(worker.wsgi, "warm", None)  # another WSGI application may have none
    if callable(warm):
        warm()
    if not isinstance(worker, SyncWorker):  # gthread stops accepting on its own
        return
    graceful = signal.getsignal(signal.SIGTERM)

    def stop(signum: int, frame: FrameType | None) -> None:
        if getattr(worker, "serving", False):  # the loop will not accept() again
            for listener in worker.sockets:
                _let_go(listener)
        if callable(graceful):
            graceful(signum, frame)

    signal.signal(signal.SIGTERM, stop)


def _let_go(listener: Any) -> None:
    """Drop this process's copy of a Gunicorn listener (a wrapper around the listening socket)
    while the request in flight may be using it: Gunicorn reads the request's server address from
    the listener after pre_request, and this runs in a signal handler, between any two of its
    steps. So the wrapper keeps its socket object and answers the same address from now on, and
    the descriptor is never closed: dup2 puts an unbound socket in its place in one step (a
    lookup already under way reads that socket's address). Closing the wrapper was an HTTP 500
    when the handler ran inside its attribute lookup. Without a descriptor to spare the listener
    stays: the worker still exits after its request."""
    name = listener.getsockname()
    listener.getsockname = lambda: name
    with contextlib.suppress(OSError), socket.socket(listener.family) as placeholder:
        os.dup2(placeholder.fileno(), listener.fileno(), inheritable=False)


def pre_request(worker: Any, req: Any) -> None:
    worker.serving = True
    worker.log.debug("%s %s", req.method, req.path)  # what Gunicorn's default pre_request does


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    worker.serving = False
    limit = max_memory()
    if limit is not None and worker.alive:
        used = peak_private_bytes()
        if used > limit:
            worker.log.warning(
                "worker %s: private memory %d MiB (peak of this request) is above "
                "GUNICORN_WORKER_MAX_MEMORY=%d MiB: retiring it after this request",
                worker.pid,
                used >> 20,
                limit >> 20,
            )
            worker.exit_reason = "memory"
            worker.alive = False  # what max_requests does: the loop ends after this request


# -- memory watchdog ---------------------------------------------------------------------------
MAX_MEMORY_VARIABLE = "GUNICORN_WORKER_MAX_MEMORY"


@cache
def max_memory() -> int | None:
    """GUNICORN_WORKER_MAX_MEMORY in bytes, None when unset; parsed by the settings table."""
    value = BY_NAME[MAX_MEMORY_VARIABLE].parser.parse(os.environ.get(MAX_MEMORY_VARIABLE, ""))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def peak_private_bytes() -> int:
    """The highest private memory (api.metrics.private_bytes) since the last call: the peak
    resident memory (VmHWM) less the pages shared with the page cache resident now, at least
    the private memory now; the peak is then reset to the current size (/proc/self/clear_refs).
    0 where /proc does not tell."""
    found = metrics.resident_and_shared()
    if found is None:
        return 0
    resident, shared = found
    peak = resident
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        with open("/proc/self/clear_refs", "wb") as clear:
            clear.write(b"5")  # reset the peak resident set size
    except OSError:
        pass
    return peak - shared


# -- worker recycles (metrics) -------------------------------------------------------------------
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
RECYCLE_REASONS = ("max_requests", "timeout", "memory", "crash")


def _exit_note(directory: str, pid: int) -> str:
    return os.path.join(directory, f"exit-{pid}.reason")


@cache
def _recycles() -> Any:
    from prometheus_client import Counter

    counter = Counter(
        "ragflow_gunicorn_worker_recycles",
        "Gunicorn workers replaced, by reason (max_requests, timeout, memory, crash)",
        ["reason"],
    )
    for reason in RECYCLE_REASONS:
        counter.labels(reason)
    return counter


def on_starting(server: Any) -> None:
    """In the master at start: export the recycle counts (at 0) from the start, and create the
    application's metrics here, so that every worker inherits them: a worker that replaces
    another (every GUNICORN_MAX_REQUESTS requests) then only opens its files on its first
    request (about 1 ms) instead of building every metric again (about 5 ms)."""
    if os.environ.get(METRICS_DIR_VARIABLE):
        _recycles()
        metrics.prepare()


def worker_abort(worker: Any) -> None:
    """In a worker the master aborts (SIGABRT) for exceeding GUNICORN_TIMEOUT. The note is
    written at once: the master SIGKILLs an aborted worker that has not exited a second later
    (worker_exit would not run)."""
    worker.exit_reason = "timeout"
    _write_note(worker, "timeout")


def worker_exit(server: Any, worker: Any) -> None:
    """In the exiting worker (not run when it is killed): write what it recorded and has not
    written yet, and note why it exits."""
    directory = os.environ.get(METRICS_DIR_VARIABLE)
    if not directory:
        return
    metrics.flush()
    reason: str | None = getattr(worker, "exit_reason", None)
    if reason is None:
        exc = sys.exc_info()[1]
        if isinstance(exc, SystemExit) and exc.code not in (0, None):
            reason = "crash"
        elif worker.nr >= worker.max_requests:
            reason = "max_requests"
        else:
            reason = "stop"  # told to stop by the master: no recycle
    _write_note(worker, reason)


def _write_note(worker: Any, reason: str) -> None:
    directory = os.environ.get(METRICS_DIR_VARIABLE)
    if directory:
        with contextlib.suppress(OSError), open(_exit_note(directory, worker.pid), "w") as note:
            note.write(reason)


def child_exit(server: Any, worker: Any) -> None:
    """In the master, after a worker exited: count the recycle, mark the worker dead."""
    directory = os.environ.get(METRICS_DIR_VARIABLE)
    if not directory:
        return
    from prometheus_client import multiprocess

    note = _exit_note(directory, worker.pid)
    try:
        with open(note) as handle:
            reason = handle.read().strip()
        os.unlink(note)
    except OSError:
        reason = "crash"  # killed before it could say why
    if reason in RECYCLE_REASONS:
        _recycles().labels(reason).inc()
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def pre_fork(server: Any, worker: Any) -> None:
    """In the master, just before each fork."""
    parent_death.prepare()
    gc.freeze()


def post_fork(server: Any, worker: Any) -> None:
    """Per-worker setup right after the fork (runs in the worker)."""
    if not parent_death.die_with_parent(signal.SIGTERM, worker.ppid):
        # The master died between fork() and prctl(): the signal will never come.
        os.kill(os.getpid(), signal.SIGTERM)
    random.seed()
