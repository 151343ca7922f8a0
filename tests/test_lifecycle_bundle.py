"""The REAL rendered bundle (render_config.py output, api.wsgi, api.task_executor) under the
launcher as PID 1 of a fresh PID namespace: graceful stop with slow in-flight uploads, port
conflict, and both log targets. Each test prints its figures."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import StartBundle
from support.http_load import LoadGenerator
from support.ragflow_client import create_dataset, slow_upload
from support.supervised import SupervisedRun
from support.waiting import wait_for


def _stop_budget(run: SupervisedRun) -> int:
    """The renderer's worst-case stop time, from the rendered config's header."""
    match = re.search(r"Worst-case stop time: (\d+) s", run.conf.read_text())
    assert match, "the rendered supervisord.conf states its stop budget"
    return int(match.group(1))


def _progress(load: LoadGenerator, requests: int = 200) -> None:
    target = load.ok_count() + requests
    wait_for(lambda: load.ok_count() >= target, 30, f"{requests} more successful requests")


def _all_ok(load: LoadGenerator, requests: int) -> None:
    """For a generator bounded by max_requests: wait until every one of them succeeded."""
    wait_for(lambda: load.ok_count() >= requests, 30, f"{requests} successful requests")


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_lets_slow_uploads_finish_and_exits_0_within_budget(
    start_bundle: StartBundle, signum: int
) -> None:
    run = start_bundle()
    dataset = create_dataset(run.port)
    answers: list[Any] = []

    def upload() -> None:
        try:
            answers.append(slow_upload(run.port, dataset, seconds=4))
        except OSError as exc:
            answers.append(f"error {exc}")

    clients = [threading.Thread(target=upload) for _ in range(2)]
    for client in clients:
        client.start()
    wait_for(lambda: run.connections_in_service() >= 2, 10, "both uploads in flight")
    started = time.monotonic()
    os.kill(run.pid1().pid, signum)
    wait_for(lambda: _refused(run.port), 5, "the port to refuse new connections")
    refused_after = time.monotonic() - started
    assert all(client.is_alive() for client in clients)  # ... while both uploads still drain
    budget = _stop_budget(run)
    code = run.wait_exit(budget + 10)
    elapsed = time.monotonic() - started
    for client in clients:
        client.join(30)
    print(
        f"{signal.Signals(signum).name} with 2 slow uploads in flight: exit {code} after "
        f"{elapsed:.2f} s (budget {budget} s), new connections refused after "
        f"{refused_after:.2f} s; upload codes "
        f"{[a.get('code') if isinstance(a, dict) else a for a in answers]}"
    )
    assert code == 0, run.output()
    assert elapsed <= budget
    assert len(answers) == 2
    for answer in answers:
        assert isinstance(answer, dict) and answer["code"] == 0, answer
        assert answer["data"][0]["name"].startswith("slow")
    assert "stopped: task_executor_00 (exit status 0)" in run.stdout()


def test_port_in_use_exits_non_zero_within_15_s_naming_host_port(
    start_bundle: StartBundle,
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        started = time.monotonic()
        run = start_bundle(wait=False, port=port)
        code = run.wait_exit(30)
        elapsed = time.monotonic() - started
    print(f"bundle: port conflict -> exit {code} after {elapsed:.2f} s")
    assert code != 0
    assert elapsed < 15
    message = f"Port {port} (HOST_PORT) is in use by another program."
    assert message in run.stderr()
    fatal = [line for line in run.stdout().splitlines() if "is FATAL" in line]
    assert len(fatal) == 1 and "socket_holder" in fatal[0] and message in fatal[0]


def test_stdout_target_every_line_names_its_program_once(start_bundle: StartBundle) -> None:
    run = start_bundle(LOG_TARGET="stdout")
    with LoadGenerator(run.port, clients=1, max_requests=20) as load:
        _all_ok(load, 20)
    wait_for(lambda: "gunicorn.access" in run.stdout(), 10, "access lines on stdout")
    os.kill(run.pid1().pid, signal.SIGTERM)
    assert run.wait_exit(40) == 0
    out, err = run.stdout(), run.stderr()
    access = [line for line in out.splitlines() if "gunicorn.access" in line]
    print(
        f"stdout target: {len(access)} access lines on stdout, "
        f"{err.count('gunicorn.error')} gunicorn error-log lines on stderr"
    )
    assert access and all(" web [" in line for line in access)
    assert "gunicorn.access" not in err  # access -> stdout only
    assert "Booting worker" in err and "Booting worker" not in out  # errors -> stderr
    assert re.search(r"task_executor_00\[\d+\]", err)  # the executor names itself
    # supervisord's own lines appear once (logfile=/dev/null, nodaemon echoes to stdout).
    assert (out + err).count("spawned: 'web'") == 1
    assert "CRIT" not in out + err  # user and socket auth are explicit decisions
    assert "access is limited by the socket's file mode 0700" in out


def test_file_target_rotates_and_supervisorctl_tail_works(start_bundle: StartBundle) -> None:
    run = start_bundle(LOG_TARGET="file", LOG_MAX_BYTES="8KB", LOG_BACKUPS="2")
    log_dir = Path(run.env["LOG_DIR"])
    with LoadGenerator(run.port, clients=2, max_seconds=60) as load:
        wait_for(lambda: (log_dir / "web.log.2").exists(), 60, "web.log rotated twice")
        outcome = load.stop()
    files = sorted(p.name for p in log_dir.iterdir())
    sizes = {name: (log_dir / name).stat().st_size for name in files if name.startswith("web.log")}
    print(f"file target: {outcome.total} requests; files {files}; web.log sizes {sizes}")
    assert not (log_dir / "web.log.3").exists()  # LOG_BACKUPS=2
    assert all(size <= 8 * 1024 + 4096 for size in sizes.values())
    for name in ("socket_holder_0.log", "socket_holder_1.log", "task_executor_00.err.log",
                 "web.err.log", "proxy.log", "proxy.err.log", "supervisord.log"):  # fmt: skip
        assert name in files

    def logged_until_shown(shown: Callable[[], str], marker: str) -> Callable[[], bool]:
        """Log one marked access line per poll until `shown()` contains one: web.log rotates
        every ~50 lines, and a line logged just before a rotation sits in web.log.1, which
        neither `tail` (the last 1600 bytes) nor `tail -f` (from the last KiB) shows."""

        def check() -> bool:
            if f"GET /v1/system/ping?{marker}" in shown():
                return True
            with LoadGenerator(
                run.port, clients=1, max_requests=1, path=f"/v1/system/ping?{marker}"
            ) as load:
                _all_ok(load, 1)
            return False

        return check

    wait_for(
        logged_until_shown(lambda: run.ctl("tail", "web").stdout, "tail-once"),
        20,
        "supervisorctl tail web to show the latest access line",
    )
    assert "Booting worker" in run.ctl("tail", "web", "stderr").stdout
    follow = subprocess.Popen(
        [*run.ctl_command(), "tail", "-f", "web"], stdout=subprocess.PIPE, text=True,
        cwd=run.env.get("PWD"),
    )  # fmt: skip
    try:
        assert follow.stdout is not None
        seen: list[str] = []
        reader = threading.Thread(target=lambda: seen.extend(follow.stdout or ()), daemon=True)
        reader.start()  # readline() could block past any deadline; a reader thread cannot
        wait_for(
            logged_until_shown(lambda: "".join(seen), "tail-follow"),
            20,
            "supervisorctl tail -f web to show new access lines",
        )
    finally:
        follow.kill()
        follow.wait(10)
