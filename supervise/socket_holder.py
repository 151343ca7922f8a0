"""Program `socket_holder`: bind HOST_IP:HOST_PORT once, hand the listening fd to each web master.

Holding the listening socket in a process that outlives Gunicorn masters is what systemd socket
activation does: while `web` restarts, new connections wait in the kernel backlog instead of being
refused. Each client of the unix socket receives one copy of the descriptor (SCM_RIGHTS).
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType

LISTEN_BACKLOG = 2048


class PortInUseError(Exception):
    """HOST_PORT is already bound by another program."""


def port_in_use_message(port: int) -> str:
    return (
        f"Port {port} (HOST_PORT) is in use by another program. "
        "Either stop that program or set HOST_PORT to a free port."
    )


def bind_listener(host: str, port: int) -> socket.socket:
    """Return a listening TCP socket on host:port; PortInUseError when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(port_in_use_message(port)) from exc
        raise
    sock.listen(LISTEN_BACKLOG)
    return sock


def bind_unix_server(path: str) -> socket.socket:
    """Return a unix stream server socket at path, mode 0600 from the moment it exists."""
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        server.bind(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    server.listen(16)
    return server


def serve_forever(listener: socket.socket, server: socket.socket) -> None:
    """Send one copy of the listener's fd to every client that connects, until terminated."""
    while True:
        conn, _ = server.accept()
        with conn:
            socket.send_fds(conn, [b"L"], [listener.fileno()])


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m supervise.socket_holder", description=__doc__)
    parser.add_argument("--host", required=True, help="address to bind (HOST_IP)")
    parser.add_argument("--port", required=True, type=int, help="port to bind (HOST_PORT)")
    parser.add_argument("--unix", required=True, help="unix socket path that hands out the fd")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    try:
        listener = bind_listener(args.host, args.port)
    except PortInUseError as exc:
        print(exc, file=sys.stderr, flush=True)
        return 1
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    server = bind_unix_server(args.unix)
    print(
        f"socket_holder: listening on {args.host}:{args.port}, handing the fd out at {args.unix}",
        flush=True,
    )
    try:
        serve_forever(listener, server)
    finally:
        server.close()
        if os.path.exists(args.unix):
            os.unlink(args.unix)
        listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
