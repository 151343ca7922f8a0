"""Gunicorn hooks: the parent-death signal of post_fork (real processes), pre_fork gc.freeze."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
from support.supervised import APP_DIR
from support.waiting import wait_for

# A parent that forks a child; the child sets the parent-death signal like post_fork does, reports
# its pid, then idles. The parent idles too until it is SIGKILLed.
PARENT = """
import os, signal, sys, time
from supervise.gunicorn_hooks import set_parent_death_signal
child = os.fork()
if child == 0:
    assert set_parent_death_signal(signal.SIGTERM)
    print(os.getpid(), flush=True)
    signal.sigtimedwait([signal.SIGUSR1], 60)
    os._exit(0)
signal.sigtimedwait([signal.SIGUSR1], 60)
"""


def test_child_gets_sigterm_when_its_parent_is_sigkilled() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], cwd=APP_DIR, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        child = psutil.Process(child_pid)
        assert child.ppid() == parent.pid
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE,
                 5, "the orphaned child to die of its parent-death signal")  # fmt: skip
    finally:
        parent.kill()
        parent.wait(10)


def test_pre_fork_freezes_the_masters_objects() -> None:
    probe = subprocess.run(
        [sys.executable, "-c",
         "import gc; from supervise.gunicorn_hooks import pre_fork; "
         "assert gc.get_freeze_count() == 0; pre_fork(None, None); print(gc.get_freeze_count())"],
        cwd=APP_DIR, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert int(probe.stdout) > 1000  # the interpreter's and the app's objects are frozen
