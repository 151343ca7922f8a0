"""Gunicorn server hooks, imported by the rendered gunicorn.conf.py.

post_fork gives every worker a parent-death signal: when the master is SIGKILLed its sync workers
would otherwise keep serving from (and holding) the listening socket until they notice, about
timeout/2 seconds later. With PR_SET_PDEATHSIG they get SIGTERM (graceful: the request in flight
completes) the moment the master dies.

pre_fork freezes the master's objects (gc.freeze) so that the workers' garbage collections do not
write to, and so copy, the pages they share with the preloaded master.

post_worker_init, pre_request and post_request let a sync worker that is told to stop (SIGTERM)
in the middle of a request close its copy of the listening socket at once instead of when the
request ends: with the master's copy closed on SIGTERM and the socket holder stopped first on
shutdown, the port then refuses new connections during the drain instead of queueing them in a
backlog nobody accepts from. An idle worker exits at once anyway; a worker between requests
keeps its copy for the moment it needs to see that it should exit.
"""

from __future__ import annotations

import gc
import os
import random
import signal
from types import FrameType
from typing import Any

from gunicorn.workers.sync import SyncWorker

from shared import parent_death


def post_worker_init(worker: Any) -> None:
    """In a sync worker, after its signal handlers are installed."""
    if not isinstance(worker, SyncWorker):  # gthread stops accepting on its own
        return
    graceful = signal.getsignal(signal.SIGTERM)

    def stop(signum: int, frame: FrameType | None) -> None:
        if getattr(worker, "serving", False):  # the loop will not accept() again
            for listener in worker.sockets:
                listener.close()
        if callable(graceful):
            graceful(signum, frame)

    signal.signal(signal.SIGTERM, stop)


def pre_request(worker: Any, req: Any) -> None:
    worker.serving = True
    worker.log.debug("%s %s", req.method, req.path)  # what Gunicorn's default pre_request does


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    worker.serving = False


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
