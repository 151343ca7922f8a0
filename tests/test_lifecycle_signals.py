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


def test_signals_to_web_itself_reach_the_gunicorn_master(start_bundle: StartBundle) -> None:
    """`supervisorctl signal SIG web`: TTIN/TTOU change the workers, HUP replaces them, INT stops
    the master at once and supervisord starts a new one."""
    run = start_bundle(WS="0", GUNICORN_WORKERS="2")
    web = psutil.Process(run.host_pid("web"))
    wait_for(lambda: len(_workers(web)) == 2, 30, "2 web workers")
    assert run.ctl("signal", "TTIN", "web").returncode == 0
    wait_for(lambda: len(_workers(web)) == 3, 30, "3 workers after TTIN")
    assert run.ctl("signal", "TTOU", "web").returncode == 0
    wait_for(lambda: len(_workers(web)) == 2, 30, "2 workers after TTOU")
    old = _workers(web)
    assert run.ctl("signal", "HUP", "web").returncode == 0
    wait_for(lambda: len(new := _workers(web)) == 2 and not new & old, 30, "new workers")
    assert run.host_pid("web") == web.pid
    assert run.ctl("signal", "INT", "web").returncode == 0
    wait_for(lambda: not web.is_running() or web.status() == psutil.STATUS_ZOMBIE, 30, "a stop")
    wait_for(
        lambda: run.states().get("web:web") == "RUNNING" and run.host_pid("web") != web.pid,
        60, "supervisord to start web again",
    )  # fmt: skip
    print("signal TTIN/TTOU/HUP/INT web: 2 -> 3 -> 2 workers, replaced, master restarted")


def test_dev_mode_sighup_restarts_and_sigttin_is_ignored(start_bundle: StartBundle) -> None:
    run = start_bundle(mode="dev")
    pid1 = run.pid1().pid
    web_before = run.host_pid("web")
    os.kill(pid1, signal.SIGTTIN)
    wait_for(lambda: "received SIGTTIN: ignored (no Gunicorn in dev mode)" in run.stdout(), 10,
             "the launcher to log the ignored SIGTTIN")  # fmt: skip
    assert run.pid1().status() != psutil.STATUS_STOPPED
    assert run.host_pid("web") == web_before
    os.kill(pid1, signal.SIGHUP)
    wait_for(lambda: "received SIGHUP indicating restart request" in run.stdout(), 10, "SIGHUP")
    wait_for(
        lambda: run.states().get("web:web") == "RUNNING" and run.host_pid("web") != web_before,
        60, "web to start again",
    )  # fmt: skip
    print(f"dev mode: SIGTTIN ignored, SIGHUP restarted web {web_before} -> {run.host_pid('web')}")
    assert run.pid1().pid == pid1
    os.kill(pid1, signal.SIGTERM)
    assert run.wait_exit(60) == 0
