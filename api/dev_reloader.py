"""Werkzeug's stat reloader, except that the reloader parent lets its serving child
stop cleanly.

Werkzeug's parent runs the serving child with ``subprocess.call``, which SIGKILLs the
child as soon as the parent's SIGTERM handler raises SystemExit, so the child's
in-process task executor never finishes or hands back its task. This loop waits for
the child instead: the child gets the same signal from the process group
(supervisord's ``stopasgroup``, a terminal's Ctrl+C), and the signal is forwarded
once only if the child is still running a second later (the parent alone was
signalled). The child ignores repeats once it is stopping.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from types import FrameType

from werkzeug import _reloader

NAME = "ragflow-stat"
FORWARD_AFTER = 1.0  # seconds


class ForwardingStatReloader(_reloader.StatReloaderLoop):
    def restart_with_reloader(self) -> int:
        while True:
            logging.getLogger("werkzeug").info(" * Restarting with %s", self.name)
            child = subprocess.Popen(
                _reloader._get_args_for_reloading(),
                env={**os.environ, "WERKZEUG_RUN_MAIN": "true"},
                close_fds=False,
            )
            code = wait_forwarding(child)
            if code != 3:  # 3: the child asks for a reload
                return code if code >= 0 else 128 - code  # killed by a signal: shell style


def wait_forwarding(child: subprocess.Popen[bytes]) -> int:
    """Wait for ``child``; on SIGTERM/SIGINT keep waiting, and forward the signal once
    if the child is still running FORWARD_AFTER seconds later."""
    received: list[tuple[int, float]] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not received:
            received.append((signum, time.monotonic()))

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    forwarded = False
    try:
        while True:
            try:
                return child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            if received and not forwarded and time.monotonic() - received[0][1] > FORWARD_AFTER:
                child.send_signal(received[0][0])
                forwarded = True
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def register() -> str:
    """Make the loop known to Werkzeug; returns the ``reloader_type`` to pass to run_simple."""
    _reloader.reloader_loops[NAME] = ForwardingStatReloader
    return NAME
