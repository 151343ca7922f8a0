"""The port helpers every test and benchmark uses (tests/support/ports.py), and the port files
of the product (shared/ports.py): port 0 read back, inherited sockets, retry on a port in use."""

from __future__ import annotations

import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from support.ports import (
    CANDIDATE_PORTS,
    PortInUseError,
    listening_port,
    listening_socket,
    port_from_file,
    refusing_port,
    start_on_candidate_port,
)

from shared.ports import read_port, write_port


def test_port_file_is_replaced_whole_with_mode_0640(tmp_path: Path) -> None:
    path = tmp_path / "http.port"
    assert read_port(path) is None
    write_port(path, 41234)
    write_port(path, 41235)
    assert path.read_text() == "41235\n" and read_port(path) == 41235
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["http.port"]  # no temporary file left
    path.write_text("0\n")
    with pytest.raises(ValueError, match="is not a port"):
        read_port(path)


def test_port_from_file_fails_at_once_when_the_program_is_gone(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="exited before it wrote"):
        port_from_file(tmp_path / "http.port", 30, alive=lambda: False)


def test_candidate_ports_are_below_the_kernels_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert max(CANDIDATE_PORTS) < low


def test_start_on_candidate_port_retries_on_a_port_in_use_only() -> None:
    with listening_socket() as first, listening_socket() as second:
        taken = [first.getsockname()[1], second.getsockname()[1]]
        tried: list[int] = []

        def start(port: int) -> int:
            tried.append(port)
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError as exc:
                    raise PortInUseError(port) from exc
                return port

        with pytest.raises(AssertionError, match="every candidate port tried was in use"):
            start_on_candidate_port(start, attempts=2, candidates=taken)
        assert sorted(tried) == sorted(taken)
        with pytest.raises(ZeroDivisionError):  # any other failure is not retried
            start_on_candidate_port(lambda port: 1 // 0)


def test_refusing_port_refuses_and_listening_port_reads_a_port_0_bind_back() -> None:
    with refusing_port() as port, pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port = listening_port(server.pid)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert client.recv(12).startswith(b"HTTP/1.0 200")
    finally:
        server.kill()
        server.wait(10)


def test_postgresql_reports_a_port_in_use_so_that_the_start_is_retried() -> None:
    from support.postgres import Cluster, bin_dir

    binaries = bin_dir()
    assert binaries is not None, "PostgreSQL is not installed: run `make system-deps`"
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="rf-pg-")), binaries)
    try:
        cluster.initdb()
        with listening_socket() as squatter, pytest.raises(PortInUseError):
            cluster.start_on(squatter.getsockname()[1])
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
