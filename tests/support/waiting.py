"""Bounded polling and free ports: every wait has a deadline, nothing sleeps a fixed time."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
POLL_INTERVAL = 0.05


def free_port() -> int:
    """A loopback TCP port for a program that binds it itself, kept from other tests meanwhile.

    The kernel picks the port (bind port 0, read the bound port back). The port has to be handed
    to the program as a number (HOST_PORT, a command-line flag) before the program binds it, so
    this socket cannot stay bound; instead one connection is made to it and closed on the
    accepting side first, which leaves the port in TIME_WAIT: for the next 60 s the kernel gives
    it to no other bind(port 0) (another test, running in parallel), while the program, binding
    that port explicitly with SO_REUSEADDR (the socket holder, nginx, Gunicorn, Werkzeug and
    debugpy all do), gets it at once. What remains is a program on this machine binding that
    very port number by name within the minute: the test then fails on "port in use", loudly,
    and never passes by accident."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        address = listener.getsockname()
        with socket.create_connection(address, timeout=5) as client:
            accepted, _ = listener.accept()
            accepted.close()  # the accepting side closes first: the port's end is in TIME_WAIT
            client.recv(1)  # the close has reached the client before it closes too
        return int(address[1])


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
