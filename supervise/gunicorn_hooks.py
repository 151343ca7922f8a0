"""Gunicorn server hooks, imported by the rendered gunicorn.conf.py.

post_fork gives every worker a parent-death signal: when the master is SIGKILLed its sync workers
would otherwise keep serving from (and holding) the listening socket until they notice, about
timeout/2 seconds later. With PR_SET_PDEATHSIG they get SIGTERM (graceful: the request in flight
completes) the moment the master dies.

pre_fork freezes the master's objects (gc.freeze) so that the workers' garbage collections do not
write to, and so copy, the pages they share with the preloaded master.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import random
import signal
from typing import Any

PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send `sig` to this process when its parent dies; False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    return int(libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)) == 0


def pre_fork(server: Any, worker: Any) -> None:
    """In the master, just before each fork."""
    gc.freeze()


def post_fork(server: Any, worker: Any) -> None:
    """Per-worker setup right after the fork (runs in the worker)."""
    if set_parent_death_signal(signal.SIGTERM) and os.getppid() != worker.ppid:
        # The master died between fork() and prctl(): the signal will never come.
        os.kill(os.getpid(), signal.SIGTERM)
    random.seed()
