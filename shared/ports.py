"""Port files: the TCP port a listener is bound to, in SUPERVISOR_RUN_DIR, for whoever connects.

With HOST_PORT=0 (or METRICS_PORT=0) the kernel picks a free port when the program binds, and
nobody knows the number beforehand. The program that binds reads the port back and writes it
here, always (0 or not), so that one file answers "where does it listen":

- ``RUN_DIR/http.port``: HOST_IP:HOST_PORT, written by the socket holders (or the development
  server); read by api.healthcheck and by whoever connects (tests, benchmarks, scripts);
- ``RUN_DIR/metrics.port``: METRICS_HOST:METRICS_PORT, written by api.metrics_exporter.

A file holds the port as decimal digits and a newline (``cat RUN_DIR/http.port``), is replaced
atomically (a reader never sees half a number) and has mode 0640, like the logs.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

HTTP_PORT_FILE = "http.port"
METRICS_PORT_FILE = "metrics.port"
PORT_FILE_MODE = 0o640


def write_port(path: str | os.PathLike[str], port: int) -> None:
    """Replace the file at ``path`` with ``port`` (atomically, mode 0640)."""
    write_atomically(path, f"{port}\n")


def write_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Replace the file at ``path`` with ``text``: a reader sees the old or the new whole file."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PORT_FILE_MODE)
    try:
        os.write(fd, text.encode())
        os.fchmod(fd, PORT_FILE_MODE)  # whatever the umask
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(temporary, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_port(path: str | os.PathLike[str]) -> int | None:
    """The port in the file at ``path``; None while there is no such file (not bound yet)."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    port = int(text.strip() or "0")
    if not 1 <= port <= 65535:
        raise ValueError(f"{path}: {port} is not a port")
    return port


def address_text(address: tuple[object, ...]) -> str:
    """``host:port`` (``[host]:port`` for IPv6) of a socket's getsockname()."""
    host, port = str(address[0]), int(str(address[1]))
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
