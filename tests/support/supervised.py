"""Run the real launcher (supervisord in-process) in a fresh PID namespace and drive it.

`unshare --pid --fork --mount-proc --kill-child` makes the launcher PID 1 of its own namespace:
orphans re-parent to it (so reaping is observable), every process of the run is a descendant of it
(so "orphans left" is countable), and killing the namespace's PID 1 at teardown kills everything.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
from supervisor.xmlrpc import SupervisorTransport

from support.ports import METRICS_PORT_FILE, port_from_file
from support.waiting import wait_for

APP_DIR = Path(__file__).resolve().parents[2]
TESTS_DIR = APP_DIR / "tests"
PYTHON = sys.executable


class SupervisedRun:
    """One launcher run: start, poll states over XML-RPC, run supervisorctl, signal, tear down."""

    def __init__(
        self,
        conf: Path,
        socket_path: Path,
        workdir: Path,
        port: int | Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``port``: the service port, or the port file (shared/ports.py) the run writes it to
        when it binds port 0."""
        self.conf = conf
        self._port = port if isinstance(port, int) else None
        self.port_file = port if isinstance(port, Path) else None
        self.socket_path = socket_path
        self.stdout_path = workdir / "launcher.stdout"
        self.stderr_path = workdir / "launcher.stderr"
        self.env = dict(os.environ if env is None else env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> SupervisedRun:
        command = [
            "unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
            PYTHON, "-m", "supervise.launcher", "-c", str(self.conf),
        ]  # fmt: skip
        # Append mode: children open /dev/stdout themselves; O_APPEND keeps their lines intact.
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                command, cwd=APP_DIR, env=self.env, stdout=out, stderr=err, start_new_session=True
            )
        self.started_at = time.monotonic()
        return self

    @property
    def port(self) -> int:
        """The service port; with a port file, read back once the run has bound it, and read
        again each time (a restarted development server binds a new one)."""
        if self._port is not None:
            return self._port
        assert self.port_file is not None
        return port_from_file(self.port_file, 60, self._running)

    @property
    def metrics_port(self) -> int:
        """The metrics endpoint's port (METRICS_PORT=0: read back from its port file)."""
        fixed = int(self.env.get("METRICS_PORT") or 0)
        port_file = Path(self.env["SUPERVISOR_RUN_DIR"]) / METRICS_PORT_FILE
        return fixed or port_from_file(port_file, 60, self._running)

    def _running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pid1(self) -> psutil.Process:
        """The launcher: PID 1 inside the namespace (the child of `unshare`)."""
        assert self.proc is not None

        def find() -> psutil.Process | None:
            try:
                children = psutil.Process(self.proc.pid).children()  # type: ignore[union-attr]
            except psutil.NoSuchProcess:
                return None
            return children[0] if children else None

        return wait_for(find, 10, "the launcher to start inside the PID namespace")

    def namespace_processes(self) -> list[psutil.Process]:
        """Every process of the run except PID 1 (orphans re-parent to PID 1, so none escape)."""
        try:
            return list(self.pid1().children(recursive=True))
        except psutil.NoSuchProcess:
            return []

    def host_pid(self, program: str) -> int:
        """Host pid of a program (supervisord reports pids as seen inside the namespace)."""
        ns_pid = int(self.info(program)["pid"])
        for process in self.namespace_processes():
            try:
                with open(f"/proc/{process.pid}/status") as status:
                    for line in status:
                        if line.startswith("NSpid:") and int(line.split()[-1]) == ns_pid:
                            return int(process.pid)
            except FileNotFoundError:
                continue
        raise AssertionError(f"{program} (pid {ns_pid} in the namespace) is not running")

    def connections_in_service(self) -> int:
        """Accepted client connections on the service port held by processes of this run."""
        count = 0
        for process in self.namespace_processes():
            try:
                connections = process.net_connections(kind="tcp")
            except psutil.NoSuchProcess:
                continue
            count += sum(
                1
                for c in connections
                if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == self.port
            )
        return count

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """Teardown: SIGKILL PID 1 of the namespace (the kernel kills the rest) and unshare."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(self.proc.pid).children():
                child.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    # -- observation -----------------------------------------------------------------------
    def rpc(self) -> Any:
        transport = SupervisorTransport(None, None, f"unix://{self.socket_path}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def states(self) -> dict[str, str]:
        """'group:name' -> state name; {} while supervisord does not answer yet."""
        try:
            infos = self.rpc().supervisor.getAllProcessInfo()
        except (OSError, xmlrpc.client.Fault, xmlrpc.client.ProtocolError):
            return {}
        return {f"{i['group']}:{i['name']}": str(i["statename"]) for i in infos}

    def info(self, name: str) -> dict[str, Any]:
        return dict(self.rpc().supervisor.getProcessInfo(name))

    def wait_running(self, timeout: float = 30) -> dict[str, str]:
        def all_running() -> dict[str, str] | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"launcher exited early:\n{self.output()}")
            states = self.states()
            return states if states and set(states.values()) == {"RUNNING"} else None

        return wait_for(all_running, timeout, "every program RUNNING")

    def ctl_command(self) -> list[str]:
        return [PYTHON, "-m", "supervisor.supervisorctl", "-c", str(self.conf)]

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The real supervisorctl against this run's config."""
        return subprocess.run(
            [*self.ctl_command(), *args],
            cwd=APP_DIR, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return f"--- stdout ---\n{self.stdout()[-6000:]}\n--- stderr ---\n{self.stderr()[-6000:]}"


def zombies(processes: Sequence[psutil.Process]) -> list[int]:
    found = []
    for process in processes:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        except psutil.NoSuchProcess:
            continue
    return found
