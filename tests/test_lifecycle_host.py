"""The bundle on a host (no PID namespace whose end kills everything): `kill -9` of the launcher
leaves no process of the bundle behind for more than 5 s, and the same command serves again
within 5 s; started as root with SUPERVISOR_RUN_USER, the directories are created for that user
and every process runs as that user."""

from __future__ import annotations

import io
import os
import pwd
import shutil
import signal
import site
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support.host_run import HostRun
from support.ragflow_client import create_dataset, start_parsing, upload
from support.rendered import pinned_environ
from support.rendered_bundle import bundle_environment
from support.supervised import APP_DIR
from support.waiting import wait_for

from renderer.cli import main

BOUND_SECONDS = 5.0


def _task_states(env: dict[str, str]) -> list[str]:
    path = Path(env["DATA_DIR"]) / "ragflow.db"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return [str(row[0]) for row in conn.execute("SELECT state FROM tasks")]
    finally:
        conn.close()


@pytest.fixture
def host_runs() -> Iterator[list[HostRun]]:
    runs: list[HostRun] = []
    yield runs
    for run in runs:
        run.kill()


@pytest.mark.parametrize("mode", ["production", "dev"])
def test_kill_9_of_the_launcher_leaves_nothing_and_the_same_command_serves_again(
    tmp_path: Path, host_runs: list[HostRun], mode: str
) -> None:
    # a long TASK_STOP_TIMEOUT: an executor that waited for its task would outlive the bound
    settings = {"WS": "2", "TASK_STOP_TIMEOUT": "30", "STOP_GRACE_SECONDS": "60",
                "RAGFLOW_TEST_SECTION_DELAY": "0.2"}  # fmt: skip
    env = bundle_environment(tmp_path, 0, settings)  # the renderer creates the dirs
    flags = (f"--{mode}-mode", "--output-dir", env["SUPERVISOR_RUN_DIR"])
    first = HostRun(env, tmp_path / "first.log", flags)
    host_runs.append(first)
    wait_for(first.serves, 60, "the first run to serve")
    # a document mid-parse when PID 1 dies (production: in an executor; dev: in-process)
    dataset = create_dataset(first.port, {"chunk_token_num": 32})
    text = "\n".join(f"line {i} of a slow document" for i in range(40)).encode()
    start_parsing(first.port, dataset, upload(first.port, dataset, {"slow.txt": text}))
    wait_for(lambda: _task_states(env) == ["leased"], 30, "the document mid-parse")
    # production: launcher, socket holder, 2 executors, Gunicorn master + 2 workers;
    # dev: launcher, reloader parent and its serving child
    expected = 7 if mode == "production" else 3

    def all_started() -> list[psutil.Process] | None:
        found = first.processes()
        return found if len(found) >= expected else None

    members = wait_for(all_started, 30, f"{expected} processes in the run's session")
    assert all(p.uids().real == os.getuid() for p in members)

    killed_at = time.monotonic()
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    wait_for(lambda: not first.processes(), BOUND_SECONDS,
             "every process of the bundle to exit after the launcher's SIGKILL")  # fmt: skip
    gone_after = time.monotonic() - killed_at
    handed_back = _task_states(env)

    # the port the first run bound (HOST_PORT=0), by number: nothing of the first run holds it
    second = HostRun({**env, "HOST_PORT": str(first.port)}, tmp_path / "second.log", flags)
    host_runs.append(second)
    wait_for(second.serves, BOUND_SECONDS, "the same command to serve again")
    serves_after = time.monotonic() - second.started
    print(
        f"{mode}: {len(members)} processes gone {gone_after:.2f} s after kill -9 of the "
        f"launcher (task states then: {handed_back}); the same command served again after "
        f"{serves_after:.2f} s"
    )
    assert handed_back == ["queued"]  # handed back at once, not left leased until it expires
    log = (tmp_path / "second.log").read_text(errors="replace")
    assert "in use" not in log, log[-3000:]


RUN_USER = "nobody"
NEEDS_ROOT = pytest.mark.skipif(
    os.getuid() != 0,
    reason="needs root: only root can start supervisord for another user (SUPERVISOR_RUN_USER)",
)


def _interpreter_for(user: str) -> tuple[str, dict[str, str]]:
    """A Python the user can run with this project's dependencies, and the environment it needs:
    this interpreter, or else the system python3 of the same version with our site-packages."""
    probe = ["-c", "import supervisor, gunicorn, werkzeug"]
    site_packages = site.getsitepackages()[0]
    candidates = [(sys.executable, {}), ("/usr/bin/python3", {"PYTHONPATH": site_packages})]
    for python, extra in candidates:
        try:
            result = subprocess.run([python, *probe], user=user, cwd=APP_DIR, timeout=60,
                                    env={**os.environ, **extra}, capture_output=True)  # fmt: skip
        except OSError:
            continue
        if result.returncode == 0:
            return python, extra
    raise AssertionError(f"no Python interpreter that {user} may run with the dependencies")


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temporary directory the run user can reach (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="ragflow-run-user-", dir="/tmp"))
    base.chmod(0o711)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@NEEDS_ROOT
def test_started_as_root_everything_runs_as_the_run_user(
    shared_tmp: Path, host_runs: list[HostRun]
) -> None:
    user = pwd.getpwnam(RUN_USER)
    python, extra = _interpreter_for(RUN_USER)
    env = bundle_environment(shared_tmp / "bundle", 0, {
        "SUPERVISOR_RUN_USER": RUN_USER, "LOG_TARGET": "file", "PYTHON_BIN": python, **extra,
    })  # fmt: skip
    # none of the directories exists: the renderer (as root) creates them for the user
    flags = ("--production-mode", "--output-dir", env["SUPERVISOR_RUN_DIR"])
    run = HostRun(env, shared_tmp / "run.log", flags)
    host_runs.append(run)
    wait_for(run.serves, 60, "the bundle started as root to serve")

    def all_started() -> list[psutil.Process] | None:
        found = run.processes()
        return found if len(found) >= 6 else None

    members = wait_for(all_started, 30, "the launcher, holder, executor, Gunicorn master, workers")
    owners = {(p.pid, " ".join(p.cmdline()[1:4])): p.uids() for p in members}
    print(f"started as root for {RUN_USER}: " + ", ".join(
        f"{cmd} uid {ids.real}/{ids.effective}" for (_, cmd), ids in owners.items()))  # fmt: skip
    assert all(ids.real == ids.effective == ids.saved == user.pw_uid for ids in owners.values())

    for key in ("SUPERVISOR_RUN_DIR", "DATA_DIR", "LOG_DIR"):
        st = Path(env[key]).stat()
        assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid), key
    for log in Path(env["LOG_DIR"]).iterdir():
        assert log.stat().st_uid == user.pw_uid and stat.S_IMODE(log.stat().st_mode) == 0o640

    def status_as_the_user() -> str | None:  # supervisorctl works for the user, not only root
        ctl = subprocess.run(
            [python, "-m", "supervisor.supervisorctl", "-c",
             f"{env['SUPERVISOR_RUN_DIR']}/supervisord.conf", "status"],
            user=RUN_USER, cwd=APP_DIR, env={**env, **extra}, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        # supervisorctl status exits 0 only when every process is RUNNING
        return ctl.stdout if ctl.returncode == 0 and "RUNNING" in ctl.stdout else None

    wait_for(status_as_the_user, 30, f"supervisorctl status as {RUN_USER}: every program RUNNING")

    os.kill(run.proc.pid, signal.SIGTERM)
    assert run.proc.wait(40) == 0, (shared_tmp / "run.log").read_text()[-3000:]


@NEEDS_ROOT
def test_an_existing_directory_the_run_user_cannot_write_is_refused(shared_tmp: Path) -> None:
    logs = shared_tmp / "logs"
    logs.mkdir(mode=0o755)  # owned by root, as an earlier start as root would have left it
    python, _ = _interpreter_for(RUN_USER)
    environ = pinned_environ(shared_tmp, SUPERVISOR_RUN_USER=RUN_USER, LOG_TARGET="file",
                             PYTHON_BIN=python)  # fmt: skip
    err = io.StringIO()
    code = main(["--output-dir", str(shared_tmp / "out")], environ, io.StringIO(), err)
    assert code == 2
    assert err.getvalue().count("\n  - ") == 1, err.getvalue()
    assert (
        f"  - LOG_DIR='{logs}': SUPERVISOR_RUN_USER='{RUN_USER}', which every program runs as, "
        f"cannot write to it: {logs} is owned by root with mode 0755; accepted: a path that user "
        f"can write to (chown {RUN_USER} {logs}, or a path that does not exist yet"
    ) in err.getvalue()
    assert not (shared_tmp / "out").exists() and not (shared_tmp / "run").exists()
    # a private directory on the way (pytest's own tmp_path is one) is named as the blocker
    private = shared_tmp / "private"
    private.mkdir(mode=0o700)
    hidden = pinned_environ(private, SUPERVISOR_RUN_USER=RUN_USER, DATA_DIR=str(private / "d"))
    err = io.StringIO()
    assert main(["--output-dir", str(private / "out")], hidden, io.StringIO(), err) == 2
    assert (
        f"  - DATA_DIR='{private}/d': SUPERVISOR_RUN_USER='{RUN_USER}', which every program "
        f"runs as, cannot write to it: {private} is owned by root with mode 0700"
    ) in err.getvalue()
    assert f"  - SUPERVISOR_RUN_DIR='{private}/run'" in err.getvalue()
    # the output directory is only read by the programs: root may own it
    logs.chmod(0o777)
    (shared_tmp / "out").mkdir(mode=0o755)
    code = main(["--output-dir", str(shared_tmp / "out")], environ, io.StringIO(), err)
    assert code == 0, err.getvalue()
    conf = (shared_tmp / "out" / "supervisord.conf").stat()
    assert (conf.st_uid, stat.S_IMODE(conf.st_mode)) == (pwd.getpwnam(RUN_USER).pw_uid, 0o640)
