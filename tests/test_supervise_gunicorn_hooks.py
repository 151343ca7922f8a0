"""Gunicorn hooks: pre_fork gc.freeze (post_fork's parent-death signal: test_parent_death.py)."""

from __future__ import annotations

import subprocess
import sys

from support.supervised import APP_DIR


def test_pre_fork_freezes_the_masters_objects() -> None:
    probe = subprocess.run(
        [sys.executable, "-c",
         "import gc; from supervise.gunicorn_hooks import pre_fork; "
         "assert gc.get_freeze_count() == 0; pre_fork(None, None); print(gc.get_freeze_count())"],
        cwd=APP_DIR, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert int(probe.stdout) > 1000  # the interpreter's and the app's objects are frozen
