"""Judge a rendered nginx.conf with nginx itself (`nginx -t`), as an unprivileged user."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NGINX = shutil.which(
    "nginx", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
)
UNPRIVILEGED = "nobody"


def _unprivileged_ids() -> tuple[int, int] | None:
    """(uid, gid) to run nginx -t as, or None when the tests already run unprivileged."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(UNPRIVILEGED)
    return entry.pw_uid, entry.pw_gid


@contextmanager
def unprivileged_dir() -> Iterator[Path]:
    """A fresh directory outside pytest's private tmp tree, for renders nginx -t must read."""
    path = Path(tempfile.mkdtemp(prefix="nginx-t-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def give_away(tree: Path) -> None:
    """Hand every file under tree to the user nginx -t runs as (it writes its pid and temp dirs)."""
    ids = _unprivileged_ids()
    if ids is None:
        return
    for root, dirs, files in os.walk(tree):
        os.chown(root, *ids)
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), *ids, follow_symlinks=False)


def nginx_test(
    conf: Path, prefix: Path, listener: socket.socket | None = None
) -> subprocess.CompletedProcess[str]:
    """`nginx -t -p PREFIX/ -c CONF` as the unprivileged user; the caller asserts on the result.

    nginx -t binds the listen address itself unless it inherits a socket bound there: pass
    ``listener`` (tests/support/ports.py listening_socket) and nginx gets it as in the bundle
    (the NGINX environment variable), so that no port is bound by number."""
    if NGINX is None:
        raise AssertionError("nginx is not installed: run `make system-deps` (as root)")
    command = [NGINX, "-t", "-p", f"{prefix}/", "-c", str(conf), "-e", "stderr"]
    ids = _unprivileged_ids()
    if ids is not None:
        command = ["setpriv", f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups",
                   *command]  # fmt: skip
    # nginx -t opens the access log, /dev/stdout: give it one the unprivileged user may open (as
    # under supervisord, where stdout is a pipe of the bundle's user); its verdict is on stderr.
    fds = () if listener is None else (listener.fileno(),)
    env = {**os.environ, **({"NGINX": f"{listener.fileno()};"} if listener is not None else {})}
    return subprocess.run(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=30,
        check=False, pass_fds=fds, env=env,
    )  # fmt: skip
