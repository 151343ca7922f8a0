"""Dev mode `web` (Werkzeug reloader parent + serving child) under the real launcher: the child
never outlives a stop or a SIGKILL of the parent, and debugpy listens only in the serving child."""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.request

import psutil
from conftest import StartBundle
from support.supervised import SupervisedRun
from support.waiting import wait_for


def _serves(run: SupervisedRun) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{run.port}/v1/system/ping", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _listeners(run: SupervisedRun, port: int) -> list[psutil.Process]:
    found = []
    for process in run.namespace_processes():
        try:
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                   for c in process.net_connections(kind="tcp")):  # fmt: skip
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


def _debugpy_ports(run: SupervisedRun) -> list[int]:
    """The ports debugpy bound (RAGFLOW_DEBUGPY_LISTEN=127.0.0.1:0), in the order it logged
    them: where a debugger attaches."""
    logged = re.findall(r"debugpy listening on 127\.0\.0\.1:(\d+)", run.stderr() + run.stdout())
    return [int(port) for port in logged]


def _connected(process: psutil.Process, other: psutil.Process) -> bool:
    """True when `process` has a loopback TCP connection to a port `other` holds."""
    other_ports = {c.laddr.port for c in other.net_connections(kind="tcp")}
    return any(c.raddr and c.raddr.port in other_ports for c in process.net_connections(kind="tcp"))


def _family(parent: psutil.Process) -> set[int]:
    try:
        return {parent.pid, *(p.pid for p in parent.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def test_dev_web_child_never_outlives_its_parent_and_debugpy_is_in_the_child(
    start_bundle: StartBundle,
) -> None:
    run = start_bundle(mode="dev", RAGFLOW_DEBUGPY_LISTEN="127.0.0.1:0")
    wait_for(lambda: _serves(run), 30, "the dev server to answer")
    parent = psutil.Process(run.host_pid("web"))
    (child,) = wait_for(parent.children, 10, "the reloader's serving child")
    (debug_port,) = wait_for(lambda: _debugpy_ports(run), 30, "debugpy's port in the log")
    debug = wait_for(lambda: _listeners(run, debug_port), 30, "debugpy to listen")
    print(
        f"dev web: reloader {parent.pid}, serving child {child.pid}, "
        f"debugpy listener(s) {[p.pid for p in debug]} on 127.0.0.1:{debug_port}"
    )
    assert len(debug) == 1
    adapter = debug[0]
    # debugpy.listen() runs its adapter as a separate process that the debuggee connects to:
    # it must be the serving child's adapter, never one started by the reloader parent.
    assert adapter.pid != parent.pid and "debugpy" in " ".join(adapter.cmdline())
    assert _connected(child, adapter), "the adapter serves the serving child"
    assert all(
        c.laddr.ip == "127.0.0.1"
        for c in debug[0].net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == debug_port
    )

    # SIGKILL of the reloader parent: its serving child (and what it started) must go too.
    old = _family(child) | {adapter.pid}
    killed_at = time.monotonic()
    os.kill(parent.pid, signal.SIGKILL)
    wait_for(lambda: not any(psutil.pid_exists(pid) for pid in old), 10,
             "the serving child to die with its parent")  # fmt: skip
    gone_after = time.monotonic() - killed_at
    wait_for(lambda: _serves(run) and len(_debugpy_ports(run)) == 2, 30,
             "the restarted dev server and its debugpy")  # fmt: skip
    back_after = time.monotonic() - killed_at
    print(
        f"dev web SIGKILL of the parent: child gone after {gone_after:.2f} s, serving again "
        f"(debugpy re-listening) after {back_after:.2f} s"
    )
    again = _debugpy_ports(run)[1]  # a port of its own (port 0 again)
    assert len(wait_for(lambda: _listeners(run, again), 10, "the new debugpy to listen")) == 1

    # A stop takes the whole process group: nothing of web is left.
    web_family = _family(psutil.Process(run.host_pid("web")))
    stop = run.ctl("stop", "web")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    wait_for(lambda: not any(psutil.pid_exists(pid) for pid in web_family), 10,
             "every process of web to stop")  # fmt: skip
    left = run.namespace_processes()
    print(f"dev web after supervisorctl stop: {len(left)} processes left in the namespace")
    assert left == []
    assert not _serves(run)
