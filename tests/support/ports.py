"""Ports for tests and benchmarks: bind port 0 and read the bound port back, never bind-release-
rebind (a released port can be taken by anyone before the program binds it again).

Three ways, by what the program can do:

1. It binds port 0 and reports the port: our bundle (HOST_PORT=0, METRICS_PORT=0: the port file
   in SUPERVISOR_RUN_DIR, shared/ports.py; ``port_from_file``), Gunicorn and Prometheus (the
   port it listens on, read from the kernel: ``listening_port``).
2. It takes an inherited, already-bound socket: nginx (the NGINX environment variable), Gunicorn
   (LISTEN_FDS, ``--bind fd://N``): ``listening_socket`` binds port 0 here and the program gets
   the descriptor.
3. It can do neither: PostgreSQL (``port`` must be 1-65535), debugpy behind the development
   server's RAGFLOW_DEBUGPY_LISTEN. ``start_on_candidate_port`` picks a port below the kernel's
   ephemeral range (so no port-0 bind, ours or anyone's, is ever given it), starts the program,
   and on a "port in use" failure retries with another, a bounded number of times within a
   deadline.

A port where nothing listens (a refused connection) is ``refusing_port``: bound, never listening.
"""

from __future__ import annotations

import contextlib
import random
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import psutil

from shared.ports import HTTP_PORT_FILE, METRICS_PORT_FILE, read_port
from support.waiting import wait_for

T = TypeVar("T")

__all__ = [
    "HTTP_PORT_FILE",
    "METRICS_PORT_FILE",
    "PortInUseError",
    "listening_port",
    "listening_socket",
    "port_from_file",
    "refusing_port",
    "start_on_candidate_port",
]

# Below Linux's default ephemeral range (net.ipv4.ip_local_port_range 32768-60999), which is where
# bind(port 0) draws from: a candidate never collides with a port the kernel hands out.
CANDIDATE_PORTS = range(20000, 32768)
START_ATTEMPTS = 5


class PortInUseError(Exception):
    """The program could not bind the candidate port: another one holds it."""


def listening_socket(host: str = "127.0.0.1") -> socket.socket:
    """A TCP socket bound to a port the kernel picks and listening, to hand to a program that
    takes an inherited socket; the caller keeps it open while the program runs."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, 0))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.contextmanager
def refusing_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port nobody can listen on while the block runs: bound here, never listening, so a
    connection to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        yield int(sock.getsockname()[1])


def port_from_file(path: Path, timeout: float = 30, alive: Callable[[], bool] | None = None) -> int:
    """The port a program wrote to its port file (shared/ports.py), waiting for the file;
    ``alive`` (when given) fails the wait at once once the program has exited."""

    def written() -> int | None:
        if alive is not None and not alive():
            raise AssertionError(f"the program exited before it wrote {path}")
        return read_port(path)

    return wait_for(written, timeout, f"the bound port in {path}")


def listening_port(pid: int, timeout: float = 30, exclude: frozenset[int] = frozenset()) -> int:
    """The TCP port process ``pid`` (or a descendant) listens on, once it listens on exactly
    one port outside ``exclude``: read back from the kernel after it bound port 0."""

    def bound() -> int | None:
        try:
            root = psutil.Process(pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess as exc:
            raise AssertionError(f"process {pid} exited before it listened") from exc
        found = set()
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                for conn in process.net_connections(kind="tcp"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr.port not in exclude:
                        found.add(int(conn.laddr.port))
        return found.pop() if len(found) == 1 else None

    return wait_for(bound, timeout, f"process {pid} to listen on one TCP port")


def start_on_candidate_port(
    start: Callable[[int], T],
    attempts: int = START_ATTEMPTS,
    timeout: float = 120,
    candidates: Sequence[int] = CANDIDATE_PORTS,
) -> T:
    """``start(port)`` on a candidate port; again on another while it raises PortInUseError,
    at most ``attempts`` times and until ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    tried: list[int] = []
    for port in random.sample(candidates, min(attempts, len(candidates))):
        tried.append(port)
        try:
            return start(port)
        except PortInUseError:
            if time.monotonic() >= deadline:
                break
    raise AssertionError(f"every candidate port tried was in use: {tried}")
