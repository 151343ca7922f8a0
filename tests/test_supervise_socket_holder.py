"""socket_holder and serve_web as real processes: fd hand-over, socket mode, port conflict."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.supervised import APP_DIR
from support.waiting import free_port, wait_for

from supervise.serve_web import fetch_listener_fd
from supervise.socket_holder import port_in_use_message


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    port = free_port()
    unix_path = tmp_path / "listen.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervise.socket_holder", "--host", "127.0.0.1",
         "--port", str(port), "--unix", str(unix_path)],
        cwd=APP_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(unix_path.exists, 10, "the holder's unix socket")
    yield proc, port, unix_path
    proc.kill()
    proc.wait(10)


def test_holder_hands_out_the_listening_socket(
    holder: tuple[subprocess.Popen[str], int, Path],
) -> None:
    _, port, unix_path = holder
    fd = fetch_listener_fd(str(unix_path), 5)
    with socket.socket(fileno=fd) as listener:
        assert listener.getsockname() == ("127.0.0.1", port)
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        # A client connects although nobody has accepted yet: it waits in the backlog.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            conn, _ = listener.accept()
            conn.sendall(b"hi")
            assert client.recv(2) == b"hi"
            conn.close()
    # The holder keeps its own copy: a second fetch gets the same port again.
    with socket.socket(fileno=fetch_listener_fd(str(unix_path), 5)) as again:
        assert again.getsockname()[1] == port


def test_holder_unix_socket_is_private(holder: tuple[subprocess.Popen[str], int, Path]) -> None:
    _, _, unix_path = holder
    assert stat.S_IMODE(unix_path.stat().st_mode) == 0o600


def test_holder_terminates_cleanly_and_removes_its_socket(
    holder: tuple[subprocess.Popen[str], int, Path],
) -> None:
    proc, _, unix_path = holder
    proc.terminate()
    assert proc.wait(10) == 0
    assert not unix_path.exists()


def test_port_in_use_gives_one_clear_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "supervise.socket_holder", "--host", "127.0.0.1",
             "--port", str(port), "--unix", str(tmp_path / "l.sock")],
            cwd=APP_DIR, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    print(f"port conflict detected in {time.monotonic() - started:.2f} s")
    assert result.returncode == 1
    assert result.stderr.strip() == port_in_use_message(port)
    assert f"Port {port} (HOST_PORT) is in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_web_execs_the_command_with_the_fd_bound(
    holder: tuple[subprocess.Popen[str], int, Path],
) -> None:
    _, port, unix_path = holder
    probe = (
        "import socket, sys; fd = int(sys.argv[-1].removeprefix('fd://')); "
        "print(sys.argv[-2], socket.socket(fileno=fd).getsockname()[1])"
    )
    result = subprocess.run(
        [sys.executable, "-m", "supervise.serve_web", "--holder", str(unix_path), "--",
         sys.executable, "-c", probe],
        cwd=APP_DIR, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["--bind", str(port)]


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
