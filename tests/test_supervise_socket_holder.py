"""socket_holder, serve_web and serve_proxy as real processes: hand-over of the listening sockets,
socket modes, two holders sharing one socket, a SIGKILLed holder taking its copies back, port
conflict."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.ports import port_from_file
from support.supervised import APP_DIR
from support.waiting import wait_for

from supervise.serve_proxy import nginx_argv
from supervise.socket_holder import (
    HolderError,
    bind_unix,
    fetch_listeners,
    port_in_use_message,
    receive_listeners,
)

StartHolder = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def start_holder(tmp_path: Path) -> Iterator[StartHolder]:
    """Factory: start holder copy `index` (of two) on port 0, wait for its hand-out socket;
    ``start_holder.bound_port()``: the port the first one bound, from the port file."""
    port_file = tmp_path / "http.port"
    started: list[subprocess.Popen[str]] = []

    def start(index: int = 0, wait: bool = True, upstream: bool = True) -> subprocess.Popen[str]:
        command = [
            sys.executable, "-m", "supervise.socket_holder", "--host", "127.0.0.1",
            "--port", "0", "--port-file", str(port_file),
            "--holder", str(tmp_path / "holder-0.sock"),
            "--holder", str(tmp_path / "holder-1.sock"), "--lock", str(tmp_path / "holder.lock"),
            "--index", str(index),
        ]  # fmt: skip
        if upstream:
            command += ["--upstream", str(tmp_path / "web.sock")]
        proc = subprocess.Popen(
            command, cwd=APP_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        started.append(proc)
        if wait:
            wait_for(lambda: _answers(tmp_path / f"holder-{index}.sock"), 10, "the holder")
        return proc

    start.bound_port = lambda: port_from_file(port_file, 10)  # type: ignore[attr-defined]
    yield start
    for proc in started:
        proc.kill()
        proc.wait(10)


def _answers(path: Path) -> bool:
    try:
        for fd in receive_listeners(str(path)).values():
            os.close(fd)
    except OSError:
        return False
    return True


def _inodes(fds: dict[str, int]) -> dict[str, int]:
    inodes = {name: os.fstat(fd).st_ino for name, fd in fds.items()}
    for fd in fds.values():
        os.close(fd)
    return inodes


def test_holder_hands_out_the_tcp_and_unix_listening_sockets(
    start_holder: StartHolder, tmp_path: Path
) -> None:
    holder = start_holder()
    port = start_holder.bound_port()  # type: ignore[attr-defined]
    assert stat.S_IMODE((tmp_path / "http.port").stat().st_mode) == 0o640
    fds = fetch_listeners([str(tmp_path / "holder-0.sock")], 5)
    assert set(fds) == {"tcp", "unix"}
    with socket.socket(fileno=fds["tcp"]) as listener:
        assert listener.getsockname() == ("127.0.0.1", port)
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        # A client connects although nobody has accepted yet: it waits in the backlog.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            conn, _ = listener.accept()
            conn.sendall(b"hi")
            assert client.recv(2) == b"hi"
            conn.close()
    with socket.socket(fileno=fds["unix"]) as upstream:
        assert upstream.getsockname() == str(tmp_path / "web.sock")
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(tmp_path / "web.sock"))
            conn, _ = upstream.accept()
            conn.close()
    holder.terminate()
    out, _ = holder.communicate(timeout=10)
    assert f"listening on 127.0.0.1:{port}\n" in out, out


def test_holder_sockets_are_private(start_holder: StartHolder, tmp_path: Path) -> None:
    start_holder()
    for name in ("holder-0.sock", "web.sock", "holder.lock"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


def test_second_holder_takes_the_same_sockets_from_the_first(
    start_holder: StartHolder, tmp_path: Path
) -> None:
    first = start_holder(0)
    start_holder(1)
    from_first = _inodes(receive_listeners(str(tmp_path / "holder-0.sock")))
    from_second = _inodes(receive_listeners(str(tmp_path / "holder-1.sock")))
    assert from_first == from_second  # the same sockets, not new ones
    assert first.poll() is None


def test_sigkilled_holder_restarts_with_its_siblings_sockets(
    start_holder: StartHolder, tmp_path: Path
) -> None:
    first = start_holder(0)
    start_holder(1)
    before = _inodes(receive_listeners(str(tmp_path / "holder-1.sock")))
    first.kill()
    first.wait(10)
    assert (tmp_path / "holder-0.sock").exists()  # SIGKILL leaves its hand-out socket behind
    again = start_holder(0)
    assert again.poll() is None
    after = _inodes(receive_listeners(str(tmp_path / "holder-0.sock")))
    again.terminate()
    out, _ = again.communicate(timeout=10)
    print(out.strip())
    assert after == before
    assert "taken from a running holder" in out


def test_holders_start_together_one_binds_the_other_takes_copies(
    start_holder: StartHolder, tmp_path: Path
) -> None:
    holders = [start_holder(0, wait=False), start_holder(1, wait=False)]
    for index in (0, 1):
        path = tmp_path / f"holder-{index}.sock"
        wait_for(lambda: _answers(path), 10, f"holder {index}")  # noqa: B023
    assert all(proc.poll() is None for proc in holders)
    assert _inodes(receive_listeners(str(tmp_path / "holder-0.sock"))) == _inodes(
        receive_listeners(str(tmp_path / "holder-1.sock"))
    )


def test_holder_terminates_cleanly_keeping_the_upstream_path(
    start_holder: StartHolder, tmp_path: Path
) -> None:
    proc = start_holder()
    proc.terminate()
    assert proc.wait(10) == 0
    assert not (tmp_path / "holder-0.sock").exists()
    # Gunicorn may still listen on its copy: the path it is reached by stays.
    assert (tmp_path / "web.sock").exists()


def test_bind_unix_replaces_a_stale_path_and_never_a_live_one(tmp_path: Path) -> None:
    path = str(tmp_path / "web.sock")
    first = bind_unix(path, 16)
    first.close()  # a stale socket file: nobody listens
    second = bind_unix(path, 16)
    with pytest.raises(HolderError, match="served by a running program"):
        bind_unix(path, 16)
    second.close()


def test_port_in_use_gives_one_clear_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "supervise.socket_holder", "--host", "127.0.0.1",
             "--port", str(port), "--holder", str(tmp_path / "h0.sock"),
             "--holder", str(tmp_path / "h1.sock"), "--lock", str(tmp_path / "lock")],
            cwd=APP_DIR, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    print(f"port conflict detected in {time.monotonic() - started:.2f} s")
    assert result.returncode == 1
    assert result.stderr.strip() == port_in_use_message(port)
    assert f"Port {port} (HOST_PORT) is in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_web_execs_the_command_with_the_socket_as_systemd_would(
    start_holder: StartHolder, tmp_path: Path
) -> None:
    start_holder()
    probe = (
        "import os, socket; s = socket.socket(fileno=3); "
        "print(os.environ['LISTEN_FDS'], os.environ['LISTEN_PID'] == str(os.getpid()), "
        "s.getsockname())"
    )
    for listener, name in (("unix", str(tmp_path / "web.sock")),
                           ("tcp", str(("127.0.0.1", start_holder.bound_port())))):  # type: ignore[attr-defined]  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-m", "supervise.serve_web", "--holder", str(tmp_path / "none.sock"),
             "--holder", str(tmp_path / "holder-0.sock"), "--listener", listener, "--",
             sys.executable, "-c", probe],
            cwd=APP_DIR, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"1 True {name}"


def test_serve_web_gives_up_after_its_deadline_when_no_holder(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "supervise.serve_web", "--holder", str(tmp_path / "none.sock"),
         "--wait", "1", "--", sys.executable, "-c", "print('must not run')"],
        cwd=APP_DIR, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    print(f"serve_web gave up after {elapsed:.2f} s")
    assert result.returncode == 1
    assert "must not run" not in result.stdout
    assert "socket_holder" in result.stderr and "none.sock" in result.stderr
    assert elapsed < 10


def test_serve_proxy_hands_nginx_the_tcp_socket(start_holder: StartHolder, tmp_path: Path) -> None:
    start_holder()
    probe = (
        "import os, socket; fd = int(os.environ['NGINX'].rstrip(';')); "
        "print(os.get_blocking(fd), socket.socket(fileno=fd).getsockname()[1])"
    )
    result = subprocess.run(
        [sys.executable, "-m", "supervise.serve_proxy", "--holder",
         str(tmp_path / "holder-0.sock"), "--listen-conf", str(tmp_path / "listen.conf"), "--",
         sys.executable, "-c", probe],
        cwd=APP_DIR, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    port = start_holder.bound_port()  # type: ignore[attr-defined]
    assert result.stdout.split() == ["False", str(port)]  # non-blocking, as nginx's own sockets
    # HOST_PORT=0: nginx.conf includes the listen directive for the port the holders bound
    assert (tmp_path / "listen.conf").read_text() == f"listen 127.0.0.1:{port};\n"
    assert stat.S_IMODE((tmp_path / "listen.conf").stat().st_mode) == 0o640


def test_nginx_workers_keep_the_bundle_user_when_started_as_root() -> None:
    assert nginx_argv(["nginx", "-c", "x"], 1000, 1000) == ["nginx", "-c", "x"]
    assert nginx_argv(["nginx", "-c", "x"], 0, 0) == ["nginx", "-c", "x", "-g", "user root root;"]


def test_serve_proxy_names_a_missing_nginx(start_holder: StartHolder, tmp_path: Path) -> None:
    start_holder()
    result = subprocess.run(
        [sys.executable, "-m", "supervise.serve_proxy", "--holder",
         str(tmp_path / "holder-0.sock"), "--", str(tmp_path / "no-nginx"), "-c", "x"],
        cwd=APP_DIR, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"serve_proxy: cannot run {tmp_path / 'no-nginx'} (No such file or directory); install "
        "nginx and set NGINX_BIN to its path, or set PROXY=none"
    )
