"""Program `web` command: fetch a listening socket from a socket holder, then exec Gunicorn on it.

`python -m supervise.serve_web --holder RUN/holder-0.sock --holder RUN/holder-1.sock
--listener unix -- PY -m gunicorn -c gunicorn.conf.py APP` passes the socket the way systemd
socket activation does (descriptor 3, LISTEN_FDS=1, LISTEN_PID=this pid), which Gunicorn prefers
to the config file's bind. Unlike `--bind fd://N`, Gunicorn then never removes the unix socket's
path when it stops: the next master, and nginx, still find it there. The exec keeps the pid, so
supervisord's stop signal reaches the Gunicorn master itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from shared.logformat import plain_line
from supervise.socket_holder import TCP, UNIX, HolderUnavailableError, fetch_listeners

LOGGER = "supervise.serve_web"

# Shorter than web's startsecs: a missing holder makes web fail its start (and go FATAL).
DEFAULT_WAIT_SECONDS = 3.0
SD_LISTEN_FDS_START = 3


def activation_environment(environ: Mapping[str, str], pid: int) -> dict[str, str]:
    """The environment of a process given one socket the systemd way (descriptor 3)."""
    return {**environ, "LISTEN_FDS": "1", "LISTEN_PID": str(pid)}


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" not in argv:
        raise SystemExit("usage: python -m supervise.serve_web --holder PATH ... -- COMMAND...")
    split = list(argv).index("--")
    parser = argparse.ArgumentParser(prog="python -m supervise.serve_web", description=__doc__)
    parser.add_argument(
        "--holder", action="append", required=True, help="a socket holder's hand-out socket"
    )
    parser.add_argument(
        "--listener", choices=(TCP, UNIX), default=TCP, help="which listening socket to serve"
    )
    parser.add_argument("--wait", type=float, default=DEFAULT_WAIT_SECONDS, help="seconds to wait")
    args = parser.parse_args(argv[:split])
    command = list(argv[split + 1 :])
    if not command:
        raise SystemExit("serve_web: no command after --")
    return args, command


def main(argv: Sequence[str]) -> int:
    args, command = parse_args(argv)
    try:
        fds = fetch_listeners(args.holder, args.wait)
    except HolderUnavailableError as exc:
        print(plain_line(f"serve_web: {exc}", "ERROR", LOGGER), file=sys.stderr, flush=True)
        return 1
    if args.listener not in fds:
        message = (
            f"serve_web: the socket holders hold no {args.listener} listening socket "
            f"(they hold {', '.join(fds)}); re-render and restart everything"
        )
        print(plain_line(message, "ERROR", LOGGER), file=sys.stderr, flush=True)
        return 1
    for name, fd in fds.items():
        if name != args.listener:
            os.close(fd)
    fd = fds[args.listener]
    if fd != SD_LISTEN_FDS_START:
        os.dup2(fd, SD_LISTEN_FDS_START)  # dup2 makes the copy inheritable
        os.close(fd)
    else:
        os.set_inheritable(fd, True)
    os.execve(command[0], command, activation_environment(os.environ, os.getpid()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
