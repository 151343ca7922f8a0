"""Restarts, reloads and chaos under load on the REAL rendered bundle (render_config.py output,
api.wsgi under Gunicorn, socket holder, executors) with the launcher as PID 1 of a fresh PID
namespace. Each test prints its measured figures."""

from __future__ import annotations

import os
import signal
import time
import urllib.request

import psutil
from conftest import StartBundle
from support.http_load import LoadGenerator
from support.supervised import SupervisedRun
from support.waiting import wait_for


def _serves(run: SupervisedRun) -> bool:
    try:
        url = f"http://127.0.0.1:{run.port}/v1/system/ping"
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _web_pids(run: SupervisedRun) -> tuple[int, list[int]]:
    master = psutil.Process(run.host_pid("web"))
    return master.pid, [child.pid for child in master.children()]


def _wait_for_progress(load: LoadGenerator, requests: int = 200) -> None:
    target = load.ok_count() + requests
    wait_for(lambda: load.ok_count() >= target, 30, f"{requests} more successful requests")


def test_restart_web_under_load_fails_no_request(start_bundle: StartBundle) -> None:
    run = start_bundle(WS="0")
    old_master, _ = _web_pids(run)
    with LoadGenerator(run.port, clients=4, max_seconds=60) as load:
        _wait_for_progress(load)
        started = time.monotonic()
        result = run.ctl("restart", "web")
        restart_seconds = time.monotonic() - started
        _wait_for_progress(load)
        outcome = load.stop()
    print(
        f"restart web: {outcome.failed} failed of {outcome.total} requests "
        f"(restart took {restart_seconds:.2f} s) errors={outcome.errors[:3]}"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "web: stopped" in result.stdout and "web: started" in result.stdout
    assert _web_pids(run)[0] != old_master
    assert outcome.failed == 0
    assert outcome.ok > 400


def test_hup_reload_under_load_fails_no_request(start_bundle: StartBundle) -> None:
    run = start_bundle(WS="0")
    master, old_workers = _web_pids(run)
    with LoadGenerator(run.port, clients=4, max_seconds=60) as load:
        _wait_for_progress(load)
        result = run.ctl("signal", "HUP", "web")
        wait_for(
            lambda: not set(_web_pids(run)[1]) & set(old_workers) and len(_web_pids(run)[1]) == 2,
            30, "the reload to replace every worker",
        )  # fmt: skip
        _wait_for_progress(load)
        outcome = load.stop()
    print(f"signal HUP web: {outcome.failed} failed of {outcome.total} requests")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _web_pids(run)[0] == master  # same master, new workers
    assert outcome.failed == 0


def test_sigkill_one_worker_fails_at_most_its_in_flight_request(
    start_bundle: StartBundle,
) -> None:
    run = start_bundle(WS="0")
    _, workers = _web_pids(run)
    with LoadGenerator(run.port, clients=4, max_seconds=60) as load:
        _wait_for_progress(load)
        os.kill(workers[0], signal.SIGKILL)
        wait_for(lambda: len(_web_pids(run)[1]) == 2 and workers[0] not in _web_pids(run)[1],
                 30, "the master to replace the killed worker")  # fmt: skip
        _wait_for_progress(load)
        outcome = load.stop()
    print(f"SIGKILL one worker: {outcome.failed} failed of {outcome.total} requests")
    # A sync worker handles one request at a time: at most that one is lost.
    assert outcome.failed <= 1


def test_sigkill_master_serves_again_within_5_s_without_orphans(
    start_bundle: StartBundle,
) -> None:
    run = start_bundle(WS="0")
    master, workers = _web_pids(run)
    with LoadGenerator(run.port, clients=4, max_seconds=60) as load:
        _wait_for_progress(load)
        killed_at = time.monotonic()
        os.kill(master, signal.SIGKILL)

        def served_by_new_master() -> bool:
            # Old workers get SIGTERM from the kernel when the master dies (PR_SET_PDEATHSIG);
            # once they are gone, an answered request comes from a new master's worker.
            return all(not psutil.pid_exists(pid) for pid in workers) and _serves(run)

        wait_for(served_by_new_master, 10, "service by a new master")
        back_after = time.monotonic() - killed_at
        _wait_for_progress(load)
        outcome = load.stop()
    wait_for(lambda: run.info("web")["statename"] == "RUNNING", 10, "web RUNNING again")
    new_master = run.host_pid("web")
    orphans = [pid for pid in workers if psutil.pid_exists(pid)]
    print(
        f"SIGKILL master: serving again after {back_after:.2f} s, orphans left={len(orphans)}, "
        f"{outcome.failed} failed of {outcome.total} requests (new master {new_master})"
    )
    assert back_after < 5
    assert orphans == []
    # Every process left in the namespace belongs to the new web, the holders or the proxy.
    holders = {run.host_pid(f"socket_holder:socket_holder_{n}") for n in (0, 1)}
    proxy = psutil.Process(run.host_pid("proxy"))
    living = {p.pid for p in run.namespace_processes() if p.status() != psutil.STATUS_ZOMBIE}
    allowed = {*holders, proxy.pid, *(c.pid for c in proxy.children()), new_master,
               *_web_pids(run)[1]}  # fmt: skip
    assert living <= allowed, f"stray processes {living - allowed}"


def test_supervisorctl_status_restart_executors_and_shutdown(start_bundle: StartBundle) -> None:
    run = start_bundle(WS="2")
    status = run.ctl("status")
    print(status.stdout)
    assert status.returncode == 0
    for name in ("socket_holder:socket_holder_0", "socket_holder:socket_holder_1", "web",
                 "proxy", "task_executor:task_executor_00",
                 "task_executor:task_executor_01"):  # fmt: skip
        assert any(line.split()[:2] == [name, "RUNNING"] for line in status.stdout.splitlines())
    before = {
        name: run.info(name)["pid"]
        for name in ("task_executor:task_executor_00", "task_executor:task_executor_01")
    }
    restart = run.ctl("restart", "task_executor:*")
    assert restart.returncode == 0, restart.stdout + restart.stderr
    after = {name: run.info(name)["pid"] for name in before}
    assert all(after[name] != before[name] for name in before)
    assert _serves(run)
    started = time.monotonic()
    shutdown = run.ctl("shutdown")
    code = run.wait_exit(30)
    print(f"supervisorctl shutdown: exit {code} after {time.monotonic() - started:.2f} s")
    assert shutdown.returncode == 0 and "Shut down" in shutdown.stdout
    assert code == 0
