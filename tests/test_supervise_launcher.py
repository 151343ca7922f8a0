"""The PID-1 launcher with real supervisord in a fresh PID namespace: exit codes, stop order,
fatal programs, port conflicts and orphan reaping."""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request

import pytest
from conftest import StartPlumbing
from support.supervised import PYTHON, TESTS_DIR, zombies
from support.waiting import wait_for


def _fatal_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "is FATAL" in line]


def _get(url: str, results: list[str], timeout: float = 30) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            results.append(f"{response.status} {response.read().decode()}")
    except OSError as exc:
        results.append(f"error {exc}")


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT], ids=["SIGTERM", "SIGINT", "SIGQUIT"]
)
def test_stop_signal_drains_in_flight_requests_and_exits_0(
    start_plumbing: StartPlumbing, signum: int
) -> None:
    finish = 2.0
    run = start_plumbing(graceful_timeout=8, executor_finish_seconds=finish)
    results: list[str] = []
    clients = [
        threading.Thread(
            target=_get, args=(f"http://127.0.0.1:{run.port}/sleep?seconds=6", results)
        )
        for _ in range(2)
    ]
    for client in clients:
        client.start()
    wait_for(lambda: run.connections_in_service() >= 2, 10, "both requests in a worker")
    started = time.monotonic()
    os.kill(run.pid1().pid, signum)
    budget = (8 + 2) + (int(finish) + 2) + 2  # sum of stopwaitsecs: web, executors, holder
    code = run.wait_exit(budget + 5)
    elapsed = time.monotonic() - started
    for client in clients:
        client.join(10)
    print(
        f"{signal.Signals(signum).name}: exit {code} after {elapsed:.2f} s (budget {budget} s); "
        f"in-flight results {results}"
    )
    assert code == 0, run.output()
    assert results == ["200 slept 6.0", "200 slept 6.0"]
    assert elapsed <= budget
    out = run.stdout()
    assert out.count("finished task") == 2
    # Executors were asked to stop at once, in parallel with web's 6 s drain, not after it
    # (priority order alone would stop them only once web has stopped).
    assert out.index("stopped: task_executor_00") < out.index("stopped: web"), run.output()


def test_all_executors_fatal_exits_1_with_one_line(start_plumbing: StartPlumbing) -> None:
    started = time.monotonic()
    run = start_plumbing(wait=False, executor_crash=True)
    code = run.wait_exit(30)
    elapsed = time.monotonic() - started
    lines = _fatal_lines(run.stdout())
    print(f"crash loop -> FATAL -> exit {code} after {elapsed:.2f} s: {lines}")
    assert code == 1, run.output()
    assert len(lines) == 1
    assert "task_executor is FATAL" in lines[0]
    assert "cannot open the task queue" in lines[0]
    # Rate-limited: supervisord backs off between attempts instead of a tight loop.
    spawned = run.stdout().count("spawned: 'task_executor_00'")
    assert spawned == 3  # startretries=2 -> 1 start + 2 retries, then FATAL


def test_web_fatal_exits_1_naming_web_and_its_error(start_plumbing: StartPlumbing) -> None:
    started = time.monotonic()
    run = start_plumbing(wait=False, web_app="support.wsgi_app:no_such_app", executors=0)
    code = run.wait_exit(40)
    elapsed = time.monotonic() - started
    lines = _fatal_lines(run.stdout())
    print(f"web crash loop -> exit {code} after {elapsed:.2f} s: {lines}")
    assert code == 1, run.output()
    assert len(lines) == 1
    assert lines[0].split(" CRIT ", 1)[1].startswith("web is FATAL")
    assert "no_such_app" in lines[0]


def test_pid1_reaps_orphaned_grandchildren(start_plumbing: StartPlumbing) -> None:
    extra = f"""
[program:orphan_maker]
command={PYTHON} {TESTS_DIR}/support/orphan_maker.py
startsecs=0
autorestart=false
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
"""
    run = start_plumbing(executors=0, extra=extra)
    orphans = wait_for(
        lambda: [line.split()[-1] for line in run.stdout().splitlines() if "orphan " in line]
        if run.stdout().count("orphan ") >= 3 else None,
        10, "the orphan maker's three grandchildren",
    )  # fmt: skip
    wait_for(lambda: run.stdout().count("reaped unknown pid") >= 3, 10, "PID 1 to reap orphans")
    left = zombies(run.namespace_processes())
    print(f"orphans {orphans} reaped by PID 1; zombies left: {len(left)}")
    assert left == []
    assert run.pid1().status() != "zombie"
    os.kill(run.pid1().pid, signal.SIGTERM)
    assert run.wait_exit(30) == 0


def test_supervisor_still_execs_programs_through_options_execve() -> None:
    """The launcher sets each program's parent-death signal in LauncherOptions.execve, which
    relies on supervisor's Subprocess._spawn_as_child calling options.execve in the child
    after its setuid: an upgrade that changes this must fail here, not silently in production."""
    import inspect

    from supervisor.process import Subprocess

    source = inspect.getsource(Subprocess._spawn_as_child)
    assert source.index("self.set_uid()") < source.index("options.execve(filename, argv, env)")


def test_after_the_proxy_stops_web_gets_only_a_short_stop(start_plumbing: StartPlumbing) -> None:
    """A `proxy` program stops first; what web still runs then has no client left: the launcher
    SIGKILLs it after AFTER_PROXY_STOP_SECONDS instead of web's full stopwaitsecs (10 s here),
    which is what the renderer's worst-case budget counts."""
    from renderer.render import WEB_AFTER_PROXY_STOPWAITSECS
    from supervise.launcher import AFTER_PROXY_STOP_SECONDS

    assert AFTER_PROXY_STOP_SECONDS == WEB_AFTER_PROXY_STOPWAITSECS  # the budget counts this
    extra = f"""
[program:proxy]
command={PYTHON} -c "import signal, time; signal.signal(signal.SIGQUIT, lambda *a: exit(0)); time.sleep(600)"
priority=20
startsecs=1
stopsignal=QUIT
stopwaitsecs=5
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
"""  # noqa: E501
    run = start_plumbing(graceful_timeout=8, executors=0, extra=extra)
    results: list[str] = []
    client = threading.Thread(
        target=_get, args=(f"http://127.0.0.1:{run.port}/sleep?seconds=25", results)
    )
    client.start()
    wait_for(lambda: run.connections_in_service() >= 1, 10, "the request in a worker")
    started = time.monotonic()
    os.kill(run.pid1().pid, signal.SIGTERM)
    code = run.wait_exit(30)
    elapsed = time.monotonic() - started
    client.join(30)
    out = run.stdout()
    print(f"proxy stopped, then web cut after {elapsed:.2f} s (web's stopwaitsecs 10): {results}")
    assert code == 0, run.output()
    assert out.index("stopped: proxy") < out.index("killing 'web'")
    assert "killing 'web'" in out and "with SIGKILL" in out
    assert AFTER_PROXY_STOP_SECONDS <= elapsed < AFTER_PROXY_STOP_SECONDS + 3


def test_supervisor_internals_the_launcher_relies_on() -> None:
    """supervisord SIGKILLs a STOPPING process once time passes its `delay` (hurry_after_proxy
    shortens it), and stops one group at a time from `stop_groups`."""
    import inspect

    from supervisor.process import Subprocess
    from supervisor.supervisord import Supervisor

    transition = inspect.getsource(Subprocess.transition)
    assert "time_left = self.delay - now" in transition
    assert "self.kill(signal.SIGKILL)" in transition
    assert "self.stop_groups[-1].stop_all()" in inspect.getsource(
        Supervisor.ordered_stop_groups_phase_1
    )
