"""Parent-death signals: ask Linux to signal this process when the process that started it dies.

Without one, a child whose parent is SIGKILLed (or killed by the OOM killer) is re-parented and
keeps running: it keeps its ports, files and locks, and a fresh start of the service collides
with it. The signal is tied to the parent *thread* that forked the child; every caller here
forks from its main thread. It survives execve (except of set-uid programs) and is cleared by a
change of user, so it is set after any setuid and before the program runs.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from typing import Any

PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Any:
    """libc's prctl, or None where there is none (not Linux). Resolved once per process."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # the running program's libc
    except (OSError, AttributeError):
        return None


def prepare() -> None:
    """Resolve prctl now, e.g. in a parent before it forks children that call die_with_parent."""
    _prctl()


def die_with_parent(sig: int, parent: int) -> bool:
    """Have the kernel send ``sig`` to this process when its parent dies.

    ``parent`` is the pid of the process that started this one. Returns False when that process
    is no longer the parent: it died before the signal was set, so the signal will never come
    and the caller must stop by itself. True otherwise (also where prctl does not exist).
    """
    prctl = _prctl()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    return os.getppid() == parent
