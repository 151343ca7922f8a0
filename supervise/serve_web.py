"""Program `web` command: fetch the listening fd from the socket holder, then exec Gunicorn on it.

`python -m supervise.serve_web --holder RUN/listen.sock -- PY -m gunicorn -c gunicorn.conf.py APP`
execs the given argv with `--bind fd://N` appended (the command line overrides the config file's
bind). The exec keeps the pid, so supervisord's stop signal reaches the Gunicorn master itself.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Sequence

# Shorter than web's startsecs: a missing holder makes web fail its start (and go FATAL).
DEFAULT_WAIT_SECONDS = 3.0
RETRY_INTERVAL_SECONDS = 0.05


class HolderUnavailableError(Exception):
    """The socket holder did not hand out a descriptor before the deadline."""


def fetch_listener_fd(holder_path: str, wait_seconds: float) -> int:
    """Receive the listening descriptor from the holder, retrying while it starts up."""
    deadline = time.monotonic() + wait_seconds
    last_error: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(holder_path)
                _, fds, _, _ = socket.recv_fds(conn, 1, 1)
            if fds:
                return fds[0]
        except OSError as exc:
            last_error = exc
        time.sleep(RETRY_INTERVAL_SECONDS)
    raise HolderUnavailableError(
        f"no listening socket from the socket holder at {holder_path} within {wait_seconds:g} s "
        f"({last_error}); check the socket_holder program (supervisorctl status socket_holder)"
    )


def gunicorn_argv(command: Sequence[str], fd: int) -> list[str]:
    return [*command, "--bind", f"fd://{fd}"]


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" not in argv:
        raise SystemExit("usage: python -m supervise.serve_web --holder PATH -- COMMAND...")
    split = list(argv).index("--")
    parser = argparse.ArgumentParser(prog="python -m supervise.serve_web", description=__doc__)
    parser.add_argument("--holder", required=True, help="unix socket of the socket holder")
    parser.add_argument("--wait", type=float, default=DEFAULT_WAIT_SECONDS, help="seconds to wait")
    args = parser.parse_args(argv[:split])
    command = list(argv[split + 1 :])
    if not command:
        raise SystemExit("serve_web: no command after --")
    return args, command


def main(argv: Sequence[str]) -> int:
    args, command = parse_args(argv)
    try:
        fd = fetch_listener_fd(args.holder, args.wait)
    except HolderUnavailableError as exc:
        print(f"serve_web: {exc}", file=sys.stderr, flush=True)
        return 1
    os.set_inheritable(fd, True)
    argv_out = gunicorn_argv(command, fd)
    os.execv(argv_out[0], argv_out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
