"""Bounded polling: every wait has a deadline, nothing sleeps a fixed time (ports: ports.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
POLL_INTERVAL = 0.05


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll predicate until it returns a truthy value; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL_INTERVAL)
