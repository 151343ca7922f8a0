"""The bundle started on the host the way an operator starts it: `render_config.py --exec` in a
session of its own, NOT as PID 1 of a PID namespace. The session id finds every process of the
run (supervisord's children and their workers stay in the session), even after the launcher is
gone and they were re-parented; teardown kills whatever is left of it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from shared.ports import read_port
from support.ports import HTTP_PORT_FILE, port_from_file
from support.supervised import APP_DIR, PYTHON


class HostRun:
    def __init__(
        self,
        env: Mapping[str, str],
        log: Path,
        flags: Sequence[str] = ("--production-mode",),
        python: str = PYTHON,
    ) -> None:
        self.env = dict(env)
        self._port = int(self.env["HOST_PORT"])  # 0: read back from the port file once bound
        self.command = [python, "render_config.py", *flags, "--exec"]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                self.command, cwd=APP_DIR, env=self.env, stdout=out, stderr=out,
                start_new_session=True,
            )  # fmt: skip
        self.sid = self.proc.pid  # the session leader; --exec keeps the pid
        self.started = time.monotonic()

    @property
    def port(self) -> int:
        if not self._port:
            port_file = Path(self.env["SUPERVISOR_RUN_DIR"]) / HTTP_PORT_FILE
            self._port = port_from_file(port_file, 60, lambda: self.proc.poll() is None)
        return self._port

    def processes(self) -> list[psutil.Process]:
        """Live (not zombie) processes of this run's session."""
        found = []
        for process in psutil.process_iter():
            try:
                if os.getsid(process.pid) == self.sid and process.status() != psutil.STATUS_ZOMBIE:
                    found.append(process)
            except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
                continue
        return found

    def serves(self) -> bool:
        if not self._port and self.proc.poll() is None:
            port_file = Path(self.env["SUPERVISOR_RUN_DIR"]) / HTTP_PORT_FILE
            if read_port(port_file) is None:
                return False  # not bound yet
        url = f"http://127.0.0.1:{self.port}/v1/system/ping"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        """Teardown: SIGKILL every process left in the session, then reap the launcher."""
        for process in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(10)
