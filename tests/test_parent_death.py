"""shared.parent_death with real processes: the signal arrives when the parent is SIGKILLed, and
a parent that died before the signal was set is reported instead of waited for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
from support.supervised import APP_DIR
from support.waiting import wait_for

# A parent that forks a child; the child sets the parent-death signal (SIGUSR2, caught) like
# every user of the helper does, reports its pid, then waits for the signal and says so.
PARENT = """
import os, signal, sys
from shared.parent_death import die_with_parent
parent = os.getpid()
child = os.fork()
if child == 0:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    assert die_with_parent(signal.SIGUSR2, parent)
    print(os.getpid(), flush=True)
    got = signal.sigtimedwait([signal.SIGUSR2], 30)
    with open(sys.argv[1], "w") as out:
        out.write(str(got.si_signo if got else None))
    os._exit(0)
signal.sigtimedwait([signal.SIGUSR1], 60)
"""

# The parent exits at once; the child sets the signal only once it has been re-parented.
RACE = """
import os, sys, time
from shared.parent_death import die_with_parent
parent = os.getpid()
read_end, write_end = os.pipe()
if os.fork() == 0:
    os.close(write_end)
    os.read(read_end, 1)  # EOF once the parent has exited
    deadline = time.monotonic() + 10
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.01)
    with open(sys.argv[1], "w") as out:
        out.write(repr(die_with_parent(15, parent)))
    os._exit(0)
os._exit(0)
"""


def _report(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_child_gets_its_signal_when_its_parent_is_sigkilled(tmp_path: Path) -> None:
    report = tmp_path / "report"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, report], cwd=APP_DIR, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        assert child.ppid() == parent.pid
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        wait_for(lambda: _report(report), 5, "the orphan to receive its parent-death signal")
        assert _report(report) == str(int(signal.SIGUSR2))
    finally:
        parent.kill()
        parent.wait(10)


def test_a_parent_that_died_first_is_reported(tmp_path: Path) -> None:
    report = tmp_path / "report"
    subprocess.run([sys.executable, "-c", RACE, report], cwd=APP_DIR, timeout=30, check=True)
    wait_for(lambda: _report(report), 15, "the child's report")
    assert _report(report) == "False"
