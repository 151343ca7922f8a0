"""Program `proxy` command: fetch HOST_IP:HOST_PORT from a socket holder, then exec nginx on it.

`python -m supervise.serve_proxy --holder RUN/holder-0.sock --holder RUN/holder-1.sock --
NGINX -p RUN/ -c nginx.conf -e stderr` hands nginx the holders' listening socket through the
NGINX environment variable, the way nginx passes its sockets to a new binary on upgrade: nginx
serves the socket it inherits instead of binding the port (the holders report a port conflict,
naming HOST_PORT). The parent-death signal the launcher gave this process (SIGTERM, nginx's fast
stop) survives the exec, so a SIGKILLed supervisord leaves no nginx behind; the exec keeps the
pid, so supervisord's stop signal (QUIT: graceful) reaches the nginx master itself.

The socket is handed over non-blocking, as nginx's own listening sockets are. Every nginx worker
polls it; on a blocking socket a worker that lost the race for a connection waits in accept()
for the next one, deaf to its master, so a reload or a stop waited for the SIGKILL.

With HOST_PORT=0 nginx.conf does not name the port (nobody knew it when it was rendered): it
includes --listen-conf, which this program writes from the inherited socket's own address
(``listen 127.0.0.1:41459;``) before nginx starts, so nginx's listen matches the socket it
inherits, after a reload too.

With LOG_FORMAT=json nginx runs under supervise.nginx_errors instead of the exec: the same
command, its error log rewritten as JSON lines, every signal passed to the nginx master and its
exit status passed back.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import socket
import sys
from collections.abc import Sequence

from shared import ports
from shared.logformat import emit_line, json_enabled
from supervise.nginx_errors import relay
from supervise.socket_holder import (
    TCP,
    HolderUnavailableError,
    fetch_listener,
    parse_client_args,
)

LOGGER = "supervise.serve_proxy"


def nginx_argv(command: Sequence[str], euid: int, egid: int) -> list[str]:
    """The nginx command line. Started as root, nginx would run its workers as its compiled-in
    user (nobody, www-data), which cannot use the 0600 sockets and directories of the bundle:
    keep them as the user every program runs as."""
    if euid != 0:
        return list(command)
    user = pwd.getpwuid(euid).pw_name
    group = grp.getgrgid(egid).gr_name
    return [*command, "-g", f"user {user} {group};"]


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen-conf", help="write nginx's listen directive for the inherited socket here"
    )


def listen_directive(fd: int) -> str:
    """nginx's listen directive for the listening socket ``fd`` (its bound address)."""
    with socket.socket(fileno=os.dup(fd)) as sock:
        return f"listen {ports.address_text(sock.getsockname())};\n"


def main(argv: Sequence[str]) -> int:
    args, command = parse_client_args("serve_proxy", __doc__, argv, (TCP,), _options)
    try:
        fd = fetch_listener(args.holder, args.listener, args.wait)
        if args.listen_conf:
            ports.write_atomically(args.listen_conf, listen_directive(fd))
    except (HolderUnavailableError, OSError) as exc:
        emit_line(f"serve_proxy: {exc}", "ERROR", LOGGER)
        return 1
    os.set_inheritable(fd, True)
    os.set_blocking(fd, False)  # nginx sets O_NONBLOCK only on the sockets it opens itself
    environ = {**os.environ, "NGINX": f"{fd};"}
    argv_out = nginx_argv(command, os.geteuid(), os.getegid())
    if json_enabled(environ):
        return relay(argv_out, environ)
    try:
        os.execve(argv_out[0], argv_out, environ)
    except OSError as exc:
        message = (
            f"serve_proxy: cannot run {argv_out[0]} ({exc.strerror}); install nginx and set "
            "NGINX_BIN to its path, or set PROXY=none"
        )
        emit_line(message, "ERROR", LOGGER)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
