"""Signals to PID 1 as Gunicorn users expect them, on the REAL rendered bundle (launcher as PID 1
of a fresh PID namespace, nginx in front of Gunicorn): SIGHUP reloads gracefully under load,
SIGTTIN/SIGTTOU change the number of web workers. (TERM, INT and QUIT: test_supervise_launcher
and test_lifecycle_bundle.) Each test prints its figures."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import psutil
from conftest import StartBundle
from support.http_load import LoadGenerator
from support.waiting import wait_for


def _progress(load: LoadGenerator, requests: int = 200) -> None:
    target = load.ok_count() + requests
    wait_for(lambda: load.ok_count() >= target, 30, f"{requests} more successful requests")


def _workers(master: psutil.Process) -> set[int]:
    return {child.pid for child in master.children()}


def test_sighup_to_pid1_reloads_web_and_proxy_under_load_without_a_failed_request(
    start_bundle: StartBundle,
) -> None:
    run = start_bundle(WS="0", GUNICORN_WORKERS="2")
    pid1 = run.pid1().pid
    web = psutil.Process(run.host_pid("web"))
    proxy = psutil.Process(run.host_pid("proxy"))
    old_web, old_proxy = _workers(web), _workers(proxy)
    holders = {name: run.host_pid(name) for name in ("socket_holder:socket_holder_0",)}
    # the re-read configuration: an operator's edit of the rendered gunicorn.conf.py
    conf = Path(run.env["SUPERVISOR_RUN_DIR"]) / "gunicorn.conf.py"
    conf.write_text(
        re.sub(r"^workers = \d+$", "workers = 3", conf.read_text(), flags=re.M), encoding="utf-8"
    )
    with LoadGenerator(run.port, clients=4, max_seconds=90) as load:
        _progress(load)
        os.kill(pid1, signal.SIGHUP)
        wait_for(
            lambda: len(new := _workers(web)) == 3 and not new & old_web,
            30, "Gunicorn to replace its workers (3, as re-read)",
        )  # fmt: skip
        wait_for(lambda: not _workers(proxy) & old_proxy, 30, "nginx to replace its workers")
        _progress(load)
        outcome = load.stop()
    print(f"SIGHUP to PID 1 under load: {outcome.failed} failed of {outcome.total} requests")
    assert outcome.failed == 0, outcome.errors
    assert run.pid1().pid == pid1
    assert run.host_pid("web") == web.pid and run.host_pid("proxy") == proxy.pid  # same masters
    assert {name: run.host_pid(name) for name in holders} == holders
    assert "received SIGHUP indicating graceful reload: sent to web, proxy" in run.stdout()
    assert "indicating restart request" not in run.stdout()
    os.kill(pid1, signal.SIGTERM)
    assert run.wait_exit(60) == 0


def test_sigttin_and_sigttou_to_pid1_add_and_remove_a_web_worker(
    start_bundle: StartBundle,
) -> None:
    run = start_bundle(WS="0", GUNICORN_WORKERS="2")
    pid1 = run.pid1().pid
    web = psutil.Process(run.host_pid("web"))
    wait_for(lambda: len(_workers(web)) == 2, 30, "2 web workers")
    os.kill(pid1, signal.SIGTTIN)
    wait_for(lambda: len(_workers(web)) == 3, 30, "a third web worker after SIGTTIN")
    os.kill(pid1, signal.SIGTTOU)
    wait_for(lambda: len(_workers(web)) == 2, 30, "2 web workers after SIGTTOU")
    os.kill(pid1, signal.SIGTTOU)
    wait_for(lambda: len(_workers(web)) == 1, 30, "1 web worker after another SIGTTOU")
    print("SIGTTIN: 2 -> 3 web workers; 2 x SIGTTOU: 3 -> 1")
    assert run.pid1().status() != psutil.STATUS_STOPPED
    assert run.states()["web:web"] == "RUNNING"
    os.kill(pid1, signal.SIGTERM)
    assert run.wait_exit(60) == 0
