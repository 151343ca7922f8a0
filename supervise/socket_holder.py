"""Program `socket_holder` (two copies): hold the listening sockets, hand copies to each master.

Holding the listening sockets in processes that outlive the servers is what systemd socket
activation does: while `web` (or `proxy`) restarts, new connections wait in the kernel backlog
instead of being refused. The sockets: HOST_IP:HOST_PORT (TCP) and, with the proxy, Gunicorn's
unix socket (--upstream) that nginx forwards to. Each client of a holder's own unix socket
(--holder, SCM_RIGHTS) receives one copy of every listening socket, named in the message.

Two copies run (numprocs=2), so that a holder killed with SIGKILL loses nothing: the other one
still holds the sockets, and the restarted holder takes its copies from it. Start-up, serialised
between the copies by an flock on --lock:

1. ask every other holder for its copies; the first one that answers wins;
2. only when none answers, bind anew: the TCP port (in use -> one line naming HOST_PORT, exit 1)
   and the unix path (a stale file is removed; a path a live listener answers on never is);
3. open its own hand-out socket before releasing the lock, so the next holder finds it;
4. write the TCP socket's port to --port-file (shared/ports.py: with HOST_PORT=0 the kernel
   picked it) and log "listening on HOST:PORT".

On SIGTERM it closes its copies and removes its hand-out socket, never the --upstream path (the
web master still listens on it).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType

from shared import ports
from shared.logformat import emit_line

LOGGER = "supervise.socket_holder"

LISTEN_BACKLOG = 2048
TCP = "tcp"
UNIX = "unix"
LOCK_WAIT_SECONDS = 10.0
RETRY_INTERVAL_SECONDS = 0.05
CLIENT_WAIT_SECONDS = 3.0  # how long serve_web and serve_proxy wait for a holder
MAX_LISTENERS = 8


class PortInUseError(Exception):
    """HOST_PORT is already bound by another program."""


class HolderError(Exception):
    """A listening socket can be neither taken from a holder nor bound anew."""


class HolderUnavailableError(Exception):
    """No socket holder handed out its sockets before the deadline."""


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


def answers(path: str) -> bool:
    """Whether a live listener accepts connections on the unix socket at path."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def bind_unix(path: str, backlog: int) -> socket.socket:
    """A unix stream socket listening at path, mode 0600 from the moment it exists.

    A stale file (nobody listening) is replaced; a path a live listener answers on is never
    removed: connections would go to the new socket while the old listener waits for them.
    """
    if os.path.lexists(path):
        if answers(path):
            raise HolderError(
                f"{path} is served by a running program but no socket holder holds it: "
                "restart web (supervisorctl restart web) so that the holders bind it anew"
            )
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        server.bind(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    server.listen(backlog)
    return server


def send_listeners(conn: socket.socket, listeners: Mapping[str, socket.socket]) -> None:
    names = " ".join(listeners).encode()
    socket.send_fds(conn, [names], [sock.fileno() for sock in listeners.values()])


def receive_listeners(path: str) -> dict[str, int]:
    """The descriptors one holder hands out, by name; OSError when it does not answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(2.0)
        conn.connect(path)
        names, fds, _, _ = socket.recv_fds(conn, 256, MAX_LISTENERS)
    if not fds or len(names.split()) != len(fds):
        for fd in fds:
            os.close(fd)
        raise ConnectionError(f"{path} sent no listening sockets")
    return dict(zip(names.decode().split(), fds, strict=True))


def fetch_listeners(holders: Sequence[str], wait_seconds: float) -> dict[str, int]:
    """Descriptors from the first holder that answers, retrying until the deadline."""
    deadline = time.monotonic() + wait_seconds
    errors: dict[str, str] = {}
    while True:
        for path in holders:
            try:
                return receive_listeners(path)
            except OSError as exc:
                errors[path] = str(exc)
        if time.monotonic() >= deadline:
            raise HolderUnavailableError(
                f"no listening socket from a socket holder within {wait_seconds:g} s ("
                + "; ".join(f"{path}: {error}" for path, error in errors.items())
                + "); check the socket_holder programs (supervisorctl status)"
            )
        time.sleep(RETRY_INTERVAL_SECONDS)


def fetch_listener(holders: Sequence[str], name: str, wait_seconds: float) -> int:
    """The listening descriptor ``name`` (TCP or UNIX) from the first holder that answers; the
    other descriptors it hands out are closed."""
    fds = fetch_listeners(holders, wait_seconds)
    fd = fds.pop(name, None)
    for other in fds.values():
        os.close(other)
    if fd is None:
        raise HolderUnavailableError(
            f"the socket holders hold no {name} listening socket (they hold "
            f"{', '.join(fds) or 'none'}); re-render and restart everything"
        )
    return fd


def parse_client_args(
    program: str,
    description: str | None,
    argv: Sequence[str],
    listeners: Sequence[str],
    options: Callable[[argparse.ArgumentParser], None] | None = None,
) -> tuple[argparse.Namespace, list[str]]:
    """`--holder PATH ... [--listener NAME] [--wait S] -- COMMAND...`: the arguments of a
    program (serve_web, serve_proxy) that runs COMMAND on a socket from the holders; ``options``
    adds the program's own."""
    usage = f"usage: python -m supervise.{program} --holder PATH ... -- COMMAND..."
    if "--" not in argv:
        raise SystemExit(usage)
    split = list(argv).index("--")
    parser = argparse.ArgumentParser(prog=f"python -m supervise.{program}", description=description)
    parser.add_argument(
        "--holder", action="append", required=True, help="a socket holder's hand-out socket"
    )
    parser.add_argument(
        "--listener", choices=listeners, default=listeners[0], help="which socket to serve"
    )
    # Shorter than the programs' startsecs: a missing holder makes them fail their start.
    parser.add_argument("--wait", type=float, default=CLIENT_WAIT_SECONDS, help="seconds to wait")
    if options is not None:
        options(parser)
    args = parser.parse_args(argv[:split])
    command = list(argv[split + 1 :])
    if not command:
        raise SystemExit(f"{program}: no command after --")
    return args, command


@contextlib.contextmanager
def exclusive(lock_path: str) -> Iterator[None]:
    """Hold an flock on lock_path (waiting up to LOCK_WAIT_SECONDS for another holder)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise HolderError(
                        f"{lock_path} stayed locked by another socket holder"
                    ) from None
                time.sleep(RETRY_INTERVAL_SECONDS)
        yield
    finally:
        os.close(fd)


def take_from_siblings(siblings: Sequence[str]) -> dict[str, socket.socket] | None:
    for path in siblings:
        try:
            fds = receive_listeners(path)
        except OSError:
            continue  # not running (a stale hand-out socket) or not ready
        return {name: socket.socket(fileno=fd) for name, fd in fds.items()}
    return None


def bind_anew(host: str, port: int, upstream: str | None) -> dict[str, socket.socket]:
    listeners = {TCP: bind_listener(host, port)}
    if upstream:
        try:
            listeners[UNIX] = bind_unix(upstream, LISTEN_BACKLOG)
        except BaseException:
            listeners[TCP].close()
            raise
    return listeners


def serve_forever(listeners: Mapping[str, socket.socket], server: socket.socket) -> None:
    """Send one copy of every listener to each client that connects, until terminated."""
    while True:
        conn, _ = server.accept()
        with conn, contextlib.suppress(OSError):  # a client that went away
            send_listeners(conn, listeners)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m supervise.socket_holder", description=__doc__)
    parser.add_argument("--host", required=True, help="address to bind (HOST_IP)")
    parser.add_argument(
        "--port", required=True, type=int, help="port to bind (HOST_PORT; 0: a free port)"
    )
    parser.add_argument("--port-file", help="file to write the bound port to (shared/ports.py)")
    parser.add_argument("--upstream", help="unix socket path Gunicorn listens on (with the proxy)")
    parser.add_argument(
        "--holder", action="append", required=True, help="hand-out socket of each holder copy"
    )
    parser.add_argument("--index", type=int, default=0, help="which --holder is this process")
    parser.add_argument("--lock", required=True, help="lock file serialising the holders' start")
    args = parser.parse_args(argv)
    if not 0 <= args.index < len(args.holder):
        parser.error(f"--index {args.index}: expected 0 to {len(args.holder) - 1}")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    own = args.holder[args.index]
    siblings = [path for path in args.holder if path != own]
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    try:
        with exclusive(args.lock):
            listeners = take_from_siblings(siblings)
            origin = "taken from a running holder"
            if listeners is None:
                listeners = bind_anew(args.host, args.port, args.upstream)
                origin = "bound"
            server = bind_unix(own, 16)
    except (PortInUseError, HolderError) as exc:
        emit_line(str(exc), "ERROR", LOGGER)
        return 1
    names = ", ".join(f"{name} {sock.getsockname()}" for name, sock in listeners.items())
    started = f"socket_holder: {names} ({origin}); handing copies out at {own}"
    emit_line(started, "INFO", LOGGER)
    try:
        address = listeners[TCP].getsockname()
        if args.port_file:
            try:
                ports.write_port(args.port_file, address[1])
            except OSError as exc:
                problem = f"cannot write the port file {args.port_file} ({exc.strerror})"
                emit_line(problem, "ERROR", LOGGER)
                return 1
        listening = f"listening on {ports.address_text(address)}"
        emit_line(listening, "INFO", LOGGER)
        serve_forever(listeners, server)
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(own)
        for sock in listeners.values():
            sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
