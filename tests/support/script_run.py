"""A launcher run started by a script (the guide's launch scripts, `make run`) instead of by the
launcher command itself: still PID 1 of a fresh PID namespace, observed like SupervisedRun."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from support.ports import HTTP_PORT_FILE
from support.supervised import APP_DIR, SupervisedRun


class ScriptRun(SupervisedRun):
    """A SupervisedRun started by one of the guide's scripts instead of the launcher itself."""

    def __init__(self, command: Sequence[str], env: dict[str, str], workdir: Path) -> None:
        run_dir = Path(env["SUPERVISOR_RUN_DIR"])
        port = int(env["HOST_PORT"]) or run_dir / HTTP_PORT_FILE  # 0: read back once bound
        super().__init__(run_dir / "supervisord.conf", run_dir / "supervisor.sock", workdir,
                         port, env)  # fmt: skip
        self.command = list(command)

    def start(self) -> ScriptRun:
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *self.command],
                cwd=APP_DIR, env=self.env, stdout=out, stderr=err, start_new_session=True,
            )  # fmt: skip
        return self
