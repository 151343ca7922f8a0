"""The bundle on a host (no PID namespace whose end kills everything): `kill -9` of the launcher
leaves no process of the bundle behind for more than 5 s, and the same command serves again
within 5 s."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support.host_run import HostRun
from support.rendered_bundle import bundle_environment
from support.waiting import free_port, wait_for

BOUND_SECONDS = 5.0


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
    env = bundle_environment(tmp_path, free_port(), {"WS": "2"})
    for key in ("SUPERVISOR_RUN_DIR", "DATA_DIR", "LOG_DIR"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    flags = (f"--{mode}-mode", "--output-dir", env["SUPERVISOR_RUN_DIR"])
    first = HostRun(env, tmp_path / "first.log", flags)
    host_runs.append(first)
    wait_for(first.serves, 60, "the first run to serve")
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

    second = HostRun(env, tmp_path / "second.log", flags)
    host_runs.append(second)
    wait_for(second.serves, BOUND_SECONDS, "the same command to serve again")
    serves_after = time.monotonic() - second.started
    print(
        f"{mode}: {len(members)} processes gone {gone_after:.2f} s after kill -9 of the "
        f"launcher; the same command served again after {serves_after:.2f} s"
    )
    log = (tmp_path / "second.log").read_text(errors="replace")
    assert "in use" not in log, log[-3000:]
