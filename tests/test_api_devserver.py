"""The Werkzeug development server entry points, run for real on free loopback ports."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from support.ports import port_from_file
from support.waiting import wait_for

from api import config, ragflow_server
from shared.ports import read_port

ROOT = Path(__file__).resolve().parent.parent


class DevServer:
    def __init__(self, tmp_path: Path, *args: str, **env: str) -> None:
        """``python ARGS --port-file ...`` with HOST_PORT=0: the port is read back from the file
        (``port``)."""
        name = f"server-{len(list(tmp_path.glob('server-*.log')))}"
        self.log = tmp_path / f"{name}.log"
        self.port_file = tmp_path / f"{name}.port"
        self._port = 0
        full_env = {
            **os.environ,
            "HOST_IP": "127.0.0.1",
            "HOST_PORT": "0",
            "DATA_DIR": str(tmp_path / "data"),
            "RAGFLOW_API_KEY": "dev-server-test-key-01",
            "TASK_STOP_TIMEOUT": "2",
            **env,
        }
        full_env.pop("PYTHONPATH", None)  # the script must make `api` importable by itself
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, *args, "--port-file", str(self.port_file)],
                cwd=ROOT,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def port(self) -> int:
        if not self._port:
            self._port = port_from_file(self.port_file, 60, lambda: self.proc.poll() is None)
        return self._port

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def debugpy_port(self) -> int:
        """The port debugpy bound (RAGFLOW_DEBUGPY_LISTEN=HOST:0), from its log line."""

        def logged() -> int | None:
            found = re.search(r"debugpy listening on [^\s]+:(\d+)", self.log.read_text())
            return int(found[1]) if found else None

        return wait_for(logged, 30, "debugpy's port in the log")

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited {self.proc.returncode}: {self.log.read_text()}")
        if not self._port and read_port(self.port_file) is None:
            return False  # not bound yet
        try:
            return requests.get(f"{self.base}/v1/system/ping", timeout=2).text == "pong"
        except (requests.ConnectionError, requests.Timeout):
            return False

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            raise AssertionError(f"server ignored SIGTERM: {self.log.read_text()}") from None


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[DevServer]]:
    started: list[DevServer] = []
    yield started
    for server in started:
        server.stop()


@pytest.mark.parametrize(
    "command",
    [
        ("api/ragflow_server.py",),
        ("api/ragflow_server.py", "--debug"),  # the production-mode guide's command
        ("-m", "api.ragflow_server"),
        ("-m", "api.ragflow_server", "--debug"),
    ],
)
def test_dev_server_serves_the_api(
    tmp_path: Path, servers: list[DevServer], command: tuple[str, ...]
) -> None:
    server = DevServer(tmp_path, *command)
    servers.append(server)
    wait_for(server.ready, timeout=30, what=f"{' '.join(command)} to answer")
    headers = {"Authorization": "Bearer dev-server-test-key-01"}
    created = requests.post(
        f"{server.base}/api/v1/datasets", json={"name": "dev"}, headers=headers, timeout=10
    ).json()
    assert created["code"] == 0
    # the serving process (the one listening) runs the task executor in-process and reports
    # its heartbeat, which operators read with `python -m api.admin status`
    serving = {c.pid for c in psutil.net_connections("tcp") if c.laddr.port == server.port
               and c.status == psutil.CONN_LISTEN}  # fmt: skip

    def executors() -> list[dict[str, object]]:
        env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
        report = subprocess.run(
            [sys.executable, "-m", "api.admin", "status"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        return list(json.loads(report.stdout)["task_executors"])

    found = wait_for(executors, timeout=20, what="the in-process executor's heartbeat")
    assert {found[0]["pid"]} == serving
    server.stop()
    assert "Traceback" not in server.log.read_text()


@pytest.mark.parametrize(
    "command", [("-m", "api.ragflow_server"), ("api/ragflow_server.py",)], ids=["module", "script"]
)
def test_debugpy_listens_in_the_serving_child_only(
    tmp_path: Path, servers: list[DevServer], command: tuple[str, ...]
) -> None:
    server = DevServer(tmp_path, *command, "--debug", RAGFLOW_DEBUGPY_LISTEN="127.0.0.1:0")
    servers.append(server)
    wait_for(server.ready, timeout=30, what="the dev server")
    debug_port = server.debugpy_port()

    def listening() -> bool:
        with socket.socket() as sock:
            sock.settimeout(1)
            return sock.connect_ex(("127.0.0.1", debug_port)) == 0

    wait_for(listening, timeout=30, what=f"debugpy on port {debug_port}")
    log = server.log.read_text()
    assert log.count("debugpy listening on 127.0.0.1") == 1, log


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),
        ("0", None),
        ("5678", ("127.0.0.1", 5678)),
        ("0.0.0.0:9", ("0.0.0.0", 9)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:0", ("::1", 0)),
    ],
)
def test_debugpy_address(value: str, expected: tuple[str, int] | None) -> None:
    cfg = config.load({"RAGFLOW_DEBUGPY_LISTEN": value}, ragflow_server.DEV_SERVER_DEFAULTS)
    assert cfg.debugpy_listen == expected


@pytest.mark.parametrize("value", ["abc", "host:", "70000"])
def test_debugpy_address_errors(value: str) -> None:
    with pytest.raises(config.ConfigError, match=f"RAGFLOW_DEBUGPY_LISTEN={value!r}: invalid"):
        config.load({"RAGFLOW_DEBUGPY_LISTEN": value}, ragflow_server.DEV_SERVER_DEFAULTS)


def test_the_dev_server_defaults_to_dev_mode_on_loopback() -> None:
    cfg = config.load({}, ragflow_server.DEV_SERVER_DEFAULTS)
    assert (cfg.mode, cfg.host_ip) == ("dev", "127.0.0.1")
    production = config.load({"RAGFLOW_MODE": "production", "RAGFLOW_DEBUGPY_LISTEN": "bad"})
    assert production.debugpy_listen is None  # a dev-mode setting, not read in production
