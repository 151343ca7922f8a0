"""`render_config.py --exec` for real: renders the production config on a free loopback port,
execs the launcher (supervisord in-process as PID 1 of a fresh PID namespace), every program
reaches RUNNING, the control socket is 0700, supervisorctl works literally, HTTP answers, and
SIGTERM shuts everything down with exit code 0 inside the shutdown budget."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xmlrpc.client
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from supervisor.xmlrpc import SupervisorTransport
from support.ports import HTTP_PORT_FILE, port_from_file
from support.rendered import APP_DIR, pinned_environ
from support.waiting import wait_for

from shared.ports import read_port

PROGRAMS = {"socket_holder_0", "socket_holder_1", "web", "proxy", "task_executor_00",
            "task_executor_01"}  # fmt: skip


class ExecRun:
    def __init__(self, tmp_path: Path, *flags: str, **overrides: str) -> None:
        self.run_dir = tmp_path / "run"
        self.log = tmp_path / "exec.log"
        self._port = 0  # HOST_PORT=0: read back from the port file once bound
        self.env = {
            **pinned_environ(tmp_path, HOST_IP="127.0.0.1", HOST_PORT="0", **overrides),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        }
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                 sys.executable, "render_config.py", *flags, "--exec"],
                cwd=APP_DIR, env=self.env, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip

    @property
    def port(self) -> int:
        if not self._port:
            self._port = port_from_file(self.run_dir / HTTP_PORT_FILE, 60, self.running)
        return self._port

    def running(self) -> bool:
        return self.proc.poll() is None

    def program(self, name: str) -> psutil.Process:
        """The process of program ``name`` (a direct child of PID 1)."""
        for process in self.pid1().children():
            if process.environ().get("SUPERVISOR_PROCESS_NAME") == name:
                return process
        raise AssertionError(f"no process {name} under PID 1")

    def process_environ(self, name: str) -> dict[str, str]:
        """The environment of program ``name``."""
        return dict(self.program(name).environ())

    def stop(self) -> tuple[int, float]:
        started = time.monotonic()
        self.pid1().send_signal(signal.SIGTERM)
        code = self.proc.wait(40)
        return code, time.monotonic() - started

    def rpc(self) -> Any:
        transport = SupervisorTransport(None, None, f"unix://{self.run_dir / 'supervisor.sock'}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def states(self) -> dict[str, str]:
        try:
            return {i["name"]: i["statename"] for i in self.rpc().supervisor.getAllProcessInfo()}
        except (OSError, xmlrpc.client.Fault, xmlrpc.client.ProtocolError):
            return {}

    def wait_running(self) -> dict[str, str]:
        def running() -> dict[str, str] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited early:\n{self.output()}")
            states = self.states()
            return states if states and set(states.values()) == {"RUNNING"} else None

        return wait_for(running, 40, f"every program RUNNING\n{self.output()}")

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        conf = self.run_dir / "supervisord.conf"
        return subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    def get(self, path: str) -> str | None:
        if not self._port and read_port(self.run_dir / HTTP_PORT_FILE) is None:
            return None  # not bound yet
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return str(r.read().decode())
        except OSError:
            return None

    def pid1(self) -> psutil.Process:
        children = psutil.Process(self.proc.pid).children()
        assert children, "no PID 1 inside the namespace"
        return children[0]

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def _namespace_pid(process: psutil.Process) -> int:
    """A process's pid inside the run's PID namespace (as the programs see and log it)."""
    status = Path(f"/proc/{process.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("NSpid:")).split()[-1])


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., ExecRun]]:
    runs: list[ExecRun] = []

    def start_run(*flags: str, **overrides: str) -> ExecRun:
        runs.append(ExecRun(tmp_path, *flags, **overrides))
        return runs[-1]

    yield start_run
    for run in runs:
        run.kill()


def test_exec_runs_every_program_and_stops_cleanly(
    start: Callable[..., ExecRun], tmp_path: Path
) -> None:
    env_file = tmp_path / "secrets.env"
    env_file.write_text("RAGFLOW_API_KEY=ragflow-test-key-123\nWS=2\n")
    exec_run = start("--env-file", str(env_file))
    states = exec_run.wait_running()
    assert set(states) == PROGRAMS
    assert exec_run.pid1().cmdline()[1:4] == ["-m", "supervise.launcher", "-c"]

    sock = exec_run.run_dir / "supervisor.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o700
    status = exec_run.ctl("status")
    assert status.returncode == 0, status.stdout + status.stderr
    for name in ("socket_holder:socket_holder_0", "web", "proxy", "task_executor:task_executor_00"):
        assert name in status.stdout

    assert wait_for(lambda: exec_run.get("/v1/system/ping"), 20, "HTTP ping") == "pong"
    restart = exec_run.ctl("restart", "web")  # literally `web`, as the issue requires
    assert restart.returncode == 0 and "web: started" in restart.stdout, restart.stdout
    exec_run.wait_running()
    assert wait_for(lambda: exec_run.get("/v1/system/ping"), 20, "HTTP after restart") == "pong"

    # the secret from the env file reaches the programs through the environment only
    assert exec_run.process_environ("web")["RAGFLOW_API_KEY"] == "ragflow-test-key-123"
    for rendered in exec_run.run_dir.glob("*.conf*"):
        assert "ragflow-test-key-123" not in rendered.read_text()

    code, elapsed = exec_run.stop()
    assert code == 0, exec_run.output()
    assert elapsed < 30, f"shutdown took {elapsed:.1f} s, over STOP_GRACE_SECONDS"


def test_dev_mode_runs_the_werkzeug_server_alone(start: Callable[..., ExecRun]) -> None:
    exec_run = start("--dev-mode", RAGFLOW_MODE="production")  # the flag wins
    assert set(exec_run.wait_running()) == {"web"}
    assert wait_for(lambda: exec_run.get("/v1/system/ping"), 30, "dev server ping") == "pong"
    assert exec_run.process_environ("web")["RAGFLOW_MODE"] == "dev"
    code, elapsed = exec_run.stop()
    assert code == 0, exec_run.output()
    assert elapsed < 30


def test_file_log_target_writes_one_log_per_process(
    start: Callable[..., ExecRun], tmp_path: Path
) -> None:
    exec_run = start(LOG_TARGET="file", LOG_FORMAT="json", WS="1")
    assert set(exec_run.wait_running()) == {"socket_holder_0", "socket_holder_1", "web", "proxy",
                                            "task_executor_00"}  # fmt: skip
    assert wait_for(lambda: exec_run.get("/v1/system/ping"), 20, "HTTP ping") == "pong"
    logs = tmp_path / "logs"

    def access_line() -> dict[str, Any] | None:
        for line in (logs / "web.log").read_text().splitlines():
            record = json.loads(line)  # LOG_FORMAT=json: every line is one JSON object
            if "/v1/system/ping" in record["message"]:
                return dict(record)
        return None

    record = wait_for(access_line, 10, "the access log line in web.log")
    assert record["program"] == "web" and record["logger"] == "gunicorn.access"
    names = {p.name for p in logs.iterdir()}
    assert {"supervisord.log", "web.log", "web.err.log", "socket_holder_0.log", "proxy.log",
            "proxy.err.log", "task_executor_00.log",
            "task_executor_00.err.log"} <= names  # fmt: skip

    # nginx's access line: one JSON object, the same fields as every program's lines
    # (nginx writes it after the response and supervisord copies it later: wait for it too)
    def proxy_line() -> dict[str, Any] | None:
        for line in (logs / "proxy.log").read_text().splitlines():
            record = json.loads(line)
            if "/v1/system/ping" in record["request"]:
                return dict(record)
        return None

    ping = wait_for(proxy_line, 10, "the access log line in proxy.log")
    assert ping["program"] == "proxy" and ping["logger"] == "nginx.access"
    assert ping["client"] == "127.0.0.1" and ping["status"] == 200
    assert "supervisord started" in (logs / "supervisord.log").read_text()
    code, _ = exec_run.stop()
    assert code == 0, exec_run.output()


def test_nginx_error_log_lines_are_json_through_reload_and_stop(
    start: Callable[..., ExecRun], tmp_path: Path
) -> None:
    """LOG_FORMAT=json: nginx's error log (proxy.err.log) is one JSON object per line, with the
    fields of every program's lines; a real [error] line (a body over MAX_CONTENT_LENGTH, 413),
    `signal HUP proxy` reaching the nginx master, and its last line ("exit") kept at the stop."""
    exec_run = start(LOG_TARGET="file", LOG_FORMAT="json", WS="0", MAX_CONTENT_LENGTH="4096")
    exec_run.wait_running()
    assert wait_for(lambda: exec_run.get("/v1/system/ping"), 20, "HTTP ping") == "pong"
    request = urllib.request.Request(
        f"http://127.0.0.1:{exec_run.port}/api/v1/datasets", data=b"x" * 10_000, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 413
    err_log = tmp_path / "logs" / "proxy.err.log"

    def records() -> list[dict[str, Any]]:
        text = err_log.read_text() if err_log.exists() else ""
        complete = text[: text.rfind("\n") + 1]  # not a line supervisord is still writing
        return [json.loads(line) for line in complete.splitlines()]  # every line: one object

    def logged(level: str, text: str) -> dict[str, Any] | None:
        return next((r for r in records() if r["level"] == level and text in r["message"]), None)

    error = wait_for(lambda: logged("ERROR", "too large body: 10000 bytes"), 10, "[error] line")
    print("nginx error line:", error)
    assert (error["program"], error["logger"]) == ("proxy", "nginx.error")
    assert datetime.fromisoformat(error["time"]).utcoffset() is not None
    relay = exec_run.program("proxy")
    (master,) = relay.children()  # the nginx master, under the relay (supervise.nginx_errors)
    assert error["pid"] in {_namespace_pid(worker) for worker in master.children()}
    master_pid = _namespace_pid(master)
    hup = exec_run.ctl("signal", "HUP", "proxy")
    assert hup.returncode == 0, hup.stdout + hup.stderr
    wait_for(lambda: logged("INFO", "reconfiguring"), 10, "nginx's reload line")
    assert master.is_running()  # the same master, reloaded
    assert wait_for(lambda: exec_run.get("/v1/system/ping"), 20, "HTTP after reload") == "pong"

    code, _ = exec_run.stop()
    assert code == 0, exec_run.output()
    last = [r for r in records() if r["pid"] == master_pid][-1]
    assert last["message"] == "exit", last  # the master's last line, written as it exited
    print((tmp_path / "logs/supervisord.log").read_text())


def test_nothing_the_bundle_creates_is_readable_by_other_users(
    start: Callable[..., ExecRun], tmp_path: Path
) -> None:
    """LOG_TARGET=file: logs 0640, the renderer's directories 0750 (DATA_DIR 0700), and no file
    or directory the run creates (logs, pid file, sockets, database) open to other users."""
    key = "modes-test-key-000001"
    exec_run = start(LOG_TARGET="file", WS="1", RAGFLOW_API_KEY=key)
    exec_run.wait_running()
    request = urllib.request.Request(
        f"http://127.0.0.1:{exec_run.port}/api/v1/datasets",
        headers={"Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["code"] == 0  # the database exists now
    logs, run, data = tmp_path / "logs", tmp_path / "run", tmp_path / "data"
    wait_for(lambda: (logs / "supervisord.log").exists(), 10, "supervisord.log")
    code, _ = exec_run.stop()
    assert code == 0, exec_run.output()

    modes = {
        str(path.relative_to(tmp_path)): stat.S_IMODE(path.lstat().st_mode)
        for top in (logs, run, data)
        for path in (top, *top.rglob("*"))
    }
    print("modes:", {name: f"{mode:04o}" for name, mode in sorted(modes.items())})
    assert {name: mode for name, mode in modes.items() if mode & 0o007} == {}
    assert (modes["logs"], modes["run"], modes["data"]) == (0o750, 0o750, 0o700)
    log_files = {name: mode for name, mode in modes.items() if name.endswith(".log")}
    assert {"logs/supervisord.log", "logs/web.log", "logs/web.err.log"} <= set(log_files)
    assert set(log_files.values()) == {0o640}
    assert modes["run/supervisord.conf"] == modes["run/gunicorn.conf.py"] == 0o640
    assert any(name.startswith("data/ragflow.db") for name in modes)
