"""Start and stop a rendered bundle (or the plain supervisord + Gunicorn baseline) for a benchmark.

`Bundle` renders the configuration with `render_config.py --output-dir` into a temporary work
directory, starts `python -m supervise.launcher -c supervisord.conf` in its own session with
HOST_PORT=0 (the port it binds is read back: the bundle's port file, or the listening socket of
the plain baseline's Gunicorn; tests/support/ports.py), waits for the first healthy response with
a deadline, and on exit stops it with SIGTERM (the container's stop signal) and kills whatever of
its process tree is still alive.
"""

from __future__ import annotations

import getpass
import http.client
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import psutil
from support.ports import HTTP_PORT_FILE, METRICS_PORT_FILE, listening_port, port_from_file

from bench import REPO_ROOT

PY = sys.executable
APP = "api.wsgi:application"
READY_PATH = "/v1/system/healthz"
START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 45.0


def http_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    """HTTP status of GET `path`, or None when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _plain_supervisord_conf(run_dir: Path, gunicorn_conf: Path, app: str) -> str:
    """The baseline: plain supervisord running Gunicorn, which binds the port itself."""
    return f"""\
[supervisord]
nodaemon=true
user={getpass.getuser()}
pidfile={run_dir}/supervisord.pid
logfile={run_dir}/supervisord.log
childlogdir={run_dir}

[unix_http_server]
file={run_dir}/supervisor.sock
chmod=0700

[supervisorctl]
serverurl=unix://{run_dir}/supervisor.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[program:web]
command={PY} -m gunicorn -c {gunicorn_conf} {app}
directory={REPO_ROOT}
stopsignal=TERM
stopwaitsecs=22
stopasgroup=true
killasgroup=true
autorestart=true
startsecs=2
startretries=3
stdout_logfile={run_dir}/web.log
redirect_stderr=true
"""


class Bundle:
    """One bundle under test. Use as a context manager; `start()` returns seconds to healthy.

    mode: "production" or "dev". settings: environment variables for the renderer and the
    programs (on top of this process's environment). app: a WSGI app to serve instead of
    api.wsgi:application (e.g. the bare hello-world ceiling). plain: run the hand-written
    plain supervisord + Gunicorn baseline instead of the rendered supervisord.conf.
    gunicorn_extra: Python appended to the rendered gunicorn.conf.py (e.g. to drop a hook).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        mode: str = "production",
        settings: Mapping[str, str] | None = None,
        data_dir: Path | None = None,
        app: str = APP,
        plain: bool = False,
        api_key: str | None = None,
        ready_path: str = READY_PATH,
        gunicorn_extra: str = "",
    ) -> None:
        self.workdir = workdir
        self.mode = mode
        self.app = app
        self.plain = plain
        self.ready_path = ready_path
        self.gunicorn_extra = gunicorn_extra
        self._port = 0  # HOST_PORT=0: read back once bound (port)
        self.out_dir = workdir / "conf"
        self.run_dir = workdir / "run"
        self.data_dir = data_dir if data_dir is not None else workdir / "data"
        self.api_key = api_key or secrets.token_hex(16)
        self.env = {
            **os.environ,
            "HOST_IP": "127.0.0.1",
            "HOST_PORT": "0",
            "DATA_DIR": str(self.data_dir),
            "SUPERVISOR_RUN_DIR": str(self.run_dir),
            "RAGFLOW_API_KEY": self.api_key,
            **(settings or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "supervisord.out"
        self._known: dict[int, psutil.Process] = {}

    @property
    def port(self) -> int:
        """The port the bundle bound (HOST_PORT=0), waiting for it within START_DEADLINE_S."""
        if not self._port:
            if self.proc is None:
                raise RuntimeError("the port of a bundle that was not launched")
            if self.plain:  # Gunicorn alone binds port 0: its listening socket
                self._port = listening_port(self.proc.pid, START_DEADLINE_S)
            else:
                port_file = self.run_dir / HTTP_PORT_FILE
                self._port = port_from_file(port_file, START_DEADLINE_S, self._alive)
        return self._port

    @property
    def metrics_port(self) -> int:
        """The metrics endpoint's port (METRICS_PORT=0: from its port file)."""
        port_file = self.run_dir / METRICS_PORT_FILE
        return int(self.env.get("METRICS_PORT") or 0) or port_from_file(
            port_file, START_DEADLINE_S, self._alive
        )

    def _alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def conf_path(self) -> Path:
        name = "plain-supervisord.conf" if self.plain else "supervisord.conf"
        return self.out_dir / name

    def render(self) -> float:
        """Render the configuration; returns the seconds render_config.py took."""
        for path in (self.out_dir, self.run_dir, self.data_dir):
            path.mkdir(parents=True, exist_ok=True)
        mode_flag = "--dev-mode" if self.mode == "dev" else "--production-mode"
        started = time.monotonic()
        done = subprocess.run(
            [PY, "render_config.py", mode_flag, "--output-dir", str(self.out_dir)],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        elapsed = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(f"render_config.py exited {done.returncode}: {done.stderr.strip()}")
        if self.gunicorn_extra:  # later assignments in a Gunicorn config file win
            gunicorn_conf = self.out_dir / "gunicorn.conf.py"
            gunicorn_conf.write_text(gunicorn_conf.read_text() + "\n" + self.gunicorn_extra + "\n")
        if self.plain:
            conf = _plain_supervisord_conf(
                self.run_dir, self.out_dir / "gunicorn.conf.py", self.app
            )
            self.conf_path.write_text(conf)
        elif self.app != APP:
            rendered = self.conf_path.read_text()
            if APP not in rendered:
                raise RuntimeError(f"{APP} not found in {self.conf_path}: cannot swap the app")
            self.conf_path.write_text(rendered.replace(APP, self.app))
        return elapsed

    def launch(self) -> None:
        """Start supervisord (our launcher, or plain supervisord for the baseline)."""
        module = "supervisor.supervisord" if self.plain else "supervise.launcher"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [PY, "-m", module, "-c", str(self.conf_path)],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, deadline_s: float = START_DEADLINE_S) -> float:
        """Poll `ready_path` until it answers 200; returns seconds since launch() was called."""
        if self.proc is None:
            raise RuntimeError("wait_ready() before launch()")
        started = float(psutil.Process(self.proc.pid).create_time())
        limit = time.monotonic() + deadline_s
        while time.monotonic() < limit:
            if http_status(self.port, self.ready_path, timeout=2.0) == 200:
                ready = time.time() - started
                self.remember_processes()
                return ready
            if self.proc.poll() is not None:
                raise RuntimeError(f"bundle exited {self.proc.returncode}:\n{self.log_tail()}")
            time.sleep(0.02)
        raise RuntimeError(
            f"no 200 from {self.ready_path} in {deadline_s:.0f} s:\n{self.log_tail()}"
        )

    def start(self) -> float:
        self.render()
        self.launch()
        return self.wait_ready()

    def wait_running(self, deadline_s: float = 30.0) -> None:
        """Poll `supervisorctl status` until every program is RUNNING."""
        limit = time.monotonic() + deadline_s
        lines: list[str] = []
        while time.monotonic() < limit:
            lines = self.supervisorctl("status").stdout.strip().splitlines()
            if lines and all(line.split()[1:2] == ["RUNNING"] for line in lines):
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"bundle exited {self.proc.returncode}:\n{self.log_tail()}")
            time.sleep(0.1)
        raise RuntimeError(f"programs not all RUNNING after {deadline_s:.0f} s: {lines}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:])

    def supervisorctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PY, "-m", "supervisor.supervisorctl", "-c", str(self.conf_path), *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    # -- processes ---------------------------------------------------------------------------

    def tree(self) -> list[psutil.Process]:
        """supervisord and every live descendant."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def remember_processes(self) -> None:
        for proc in self.tree():
            self._known[proc.pid] = proc

    def web_master(self) -> psutil.Process:
        """The process supervisord runs as program `web` (the Gunicorn master in production)."""
        done = self.supervisorctl("pid", "web")
        pid = done.stdout.strip()
        if not pid.isdigit() or pid == "0":
            raise RuntimeError(
                f"supervisorctl pid web: {done.stdout.strip()} {done.stderr.strip()}"
            )
        return psutil.Process(int(pid))

    def web_workers(self) -> list[psutil.Process]:
        return list(self.web_master().children())

    def executors(self) -> list[psutil.Process]:
        return [p for p in self.tree()[1:] if "api.task_executor" in " ".join(_cmdline(p))]

    # -- stop --------------------------------------------------------------------------------

    def stop(self, deadline_s: float = STOP_DEADLINE_S) -> float:
        """SIGTERM supervisord and wait for it to exit; returns the seconds it took."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        self.remember_processes()
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"bundle did not stop within {deadline_s:.0f} s") from None
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL supervisord and every process of its tree we have seen."""
        self.remember_processes()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for proc in self._known.values():
            try:
                if proc.is_running():
                    proc.kill()
            except psutil.NoSuchProcess:
                continue

    def __enter__(self) -> Bundle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            self.kill()  # leftovers only: a clean stop leaves nothing to kill


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return list(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []
