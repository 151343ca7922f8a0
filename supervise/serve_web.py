"""Program `web` command: fetch a listening socket from a socket holder, then exec Gunicorn on it.

`python -m supervise.serve_web --holder RUN/holder-0.sock --holder RUN/holder-1.sock
--listener unix -- PY -m gunicorn -c gunicorn.conf.py APP` passes the socket the way systemd
socket activation does (descriptor 3, LISTEN_FDS=1, LISTEN_PID=this pid), which Gunicorn prefers
to the config file's bind. Unlike `--bind fd://N`, Gunicorn then never removes the unix socket's
path when it stops: the next master, and nginx, still find it there. The exec keeps the pid, so
supervisord's stop signal reaches the Gunicorn master itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from shared.logformat import emit_line
from supervise.socket_holder import (
    TCP,
    UNIX,
    HolderUnavailableError,
    fetch_listener,
    parse_client_args,
)

LOGGER = "supervise.serve_web"

SD_LISTEN_FDS_START = 3


def activation_environment(environ: Mapping[str, str], pid: int) -> dict[str, str]:
    """The environment of a process given one socket the systemd way (descriptor 3)."""
    return {**environ, "LISTEN_FDS": "1", "LISTEN_PID": str(pid)}


def main(argv: Sequence[str]) -> int:
    args, command = parse_client_args("serve_web", __doc__, argv, (TCP, UNIX))
    try:
        fd = fetch_listener(args.holder, args.listener, args.wait)
    except HolderUnavailableError as exc:
        emit_line(f"serve_web: {exc}", "ERROR", LOGGER)
        return 1
    if fd != SD_LISTEN_FDS_START:
        os.dup2(fd, SD_LISTEN_FDS_START)  # dup2 makes the copy inheritable
        os.close(fd)
    else:
        os.set_inheritable(fd, True)
    os.execve(command[0], command, activation_environment(os.environ, os.getpid()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
