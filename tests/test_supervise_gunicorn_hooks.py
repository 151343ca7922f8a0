"""Gunicorn hooks: pre_fork gc.freeze, each worker prepared before it serves, a sync worker told to
stop in the middle of a request, and the memory the watchdog measures (post_fork's parent-death
signal: test_parent_death.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests
from conftest import StartBundle
from support.ports import listening_socket, refusing_port
from support.postgres import PASSWORD
from support.supervised import APP_DIR, SupervisedRun
from support.waiting import wait_for

# A worker told to stop (SIGTERM) as its request starts: right after pre_request, or while
# Gunicorn reads the listening socket's address for the request (the signal's handler then runs
# inside the socket wrapper's attribute lookup).
STOPPING_CONF = """
import os, signal
from gunicorn import sock
from supervise import gunicorn_hooks
workers = 1
post_worker_init = gunicorn_hooks.post_worker_init
post_request = gunicorn_hooks.post_request
MOMENT = {moment!r}
armed = []

def pre_request(worker, req):
    gunicorn_hooks.pre_request(worker, req)
    if req.path == "/v1/system/healthz":
        if MOMENT == "after pre_request":
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            armed.append(True)

lookup = sock.BaseSocket.__getattr__

def reading_the_address(self, name):
    if name == "getsockname" and armed:
        armed.clear()
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the lookup goes on
    return lookup(self, name)

sock.BaseSocket.__getattr__ = reading_the_address
"""


def test_pre_fork_freezes_the_masters_objects() -> None:
    probe = subprocess.run(
        [sys.executable, "-c",
         "import gc; from supervise.gunicorn_hooks import pre_fork; "
         "assert gc.get_freeze_count() == 0; pre_fork(None, None); print(gc.get_freeze_count())"],
        cwd=APP_DIR, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert int(probe.stdout) > 1000  # the interpreter's and the app's objects are frozen


def _workers(run: SupervisedRun) -> list[psutil.Process]:
    workers: list[psutil.Process] = psutil.Process(run.host_pid("web")).children()
    return workers


def test_every_worker_opens_the_database_before_it_serves(start_bundle: StartBundle) -> None:
    """post_worker_init prepares each worker (api.app.App.warm): with no request sent yet,
    every web worker already holds the database open."""
    run = start_bundle(GUNICORN_WORKERS="3", WS="0")
    database = str(Path(run.env["DATA_DIR"]) / "ragflow.db")

    def prepared() -> bool:
        workers = _workers(run)
        opened = [any(f.path == database for f in w.open_files()) for w in workers]
        return len(workers) == 3 and all(opened)

    wait_for(prepared, 30, "every worker to open the database")


def test_a_worker_that_cannot_reach_the_database_still_serves_and_answers_503(
    start_bundle: StartBundle,
) -> None:
    """Preparing a worker never stops it from booting (Gunicorn would stop the whole server):
    with PostgreSQL unreachable, every worker logs why, serves, and health answers 503 (never a
    password)."""
    with refusing_port() as port:
        run = start_bundle(
            GUNICORN_WORKERS="2",
            WS="0",
            DATABASE_URL=f"postgresql://rf:{PASSWORD}@127.0.0.1:{port}/ragflow",
            DB_CONNECT_TIMEOUT="1",
        )
        logs = Path(run.env["LOG_DIR"])

        def output() -> str:
            files = [p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file()]
            return run.output() + "".join(files)

        wait_for(
            lambda: output().count("the worker serves unprepared") >= 2, 30, "both workers to log"
        )
        answer = requests.get(f"http://127.0.0.1:{run.port}/v1/system/healthz", timeout=30)
        assert answer.status_code == 503, answer.text
        assert len(_workers(run)) == 2 and run.states()["web:web"] == "RUNNING"
        assert "Traceback" not in output() and PASSWORD not in output()


@pytest.mark.parametrize("moment", ["after pre_request", "reading the listener's address"])
def test_a_worker_stopped_as_its_request_starts_still_answers_it(
    tmp_path: Path, moment: str
) -> None:
    """SIGTERM as a request starts: post_worker_init's handler drops the worker's copy of the
    listening socket, and the request still gets its answer (each moment was an HTTP 500 once:
    when the closed listener could not tell Gunicorn its address, and when the handler ran while
    Gunicorn was looking the address up); the worker exits and the master starts another."""
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(STOPPING_CONF.format(moment=moment))
    log_path = tmp_path / "gunicorn.log"
    listener = listening_socket()
    with log_path.open("wb") as log, listener:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(conf), "--pythonpath", "tests",
             "--bind", f"fd://{listener.fileno()}", "support.wsgi_app:application"],
            cwd=APP_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            pass_fds=(listener.fileno(),),
        )  # fmt: skip
        base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        master = psutil.Process(proc.pid)
        (first,) = wait_for(master.children, 30, "the first worker")
        wait_for(lambda: _pong(base), 30, "gunicorn to answer")
        answer = requests.get(f"{base}/v1/system/healthz", timeout=10)
        assert (answer.status_code, answer.text) == (200, '{"status": "ok"}')
        first.wait(timeout=30)  # it exited after answering
        (second,) = wait_for(master.children, 30, "the worker the master starts next")
        assert second.pid != first.pid
        wait_for(lambda: _pong(base), 30, "the next worker to answer")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    output = log_path.read_text(errors="replace")
    assert "Error handling request" not in output and "Traceback" not in output, output


# maps and reads a file as SQLite reads the database, then allocates as much of its own
MEMORY_PROBE = """
import mmap, sys
from api import metrics
from supervise.gunicorn_hooks import peak_private_bytes
MIB = 1 << 20
start = metrics.private_bytes()
peak_private_bytes()
with open(sys.argv[1], "rb") as f:
    mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
sum(mapped[i] for i in range(0, len(mapped), mmap.PAGESIZE))  # every page resident
def grown():
    return (metrics.private_bytes() - start) // MIB, (peak_private_bytes() - start) // MIB
print(metrics.resident_and_shared()[1] // MIB, *grown())
block = b"y" * (96 * MIB)  # written: private
del block
print(*grown())
"""


def test_the_watchdogs_count_private_memory_not_the_page_cache_a_process_maps(
    tmp_path: Path,
) -> None:
    """96 MiB of a mapped file read (as a web worker maps its code and libraries) are
    resident but shared with the page cache: neither private memory nor its peak grows. 96 MiB
    the process writes itself are private: gone once freed, but kept by the peak."""
    mapped = tmp_path / "mapped.bin"
    mapped.write_bytes(b"x" * (96 << 20))
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(mapped)],
        cwd=APP_DIR, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    print(probe.stdout)
    (shared, grown, peak), (after, peak_after) = [
        [int(mib) for mib in line.split()] for line in probe.stdout.splitlines()
    ]
    assert shared >= 90  # the mapped file is resident, as shared pages
    assert grown < 8 and peak < 8  # but neither private memory nor its peak grew
    assert after < 8 and peak_after >= 90  # the block's peak did, and stays after it is freed


def _pong(base: str) -> bool:
    try:
        return requests.get(f"{base}/v1/system/ping", timeout=2).text == "pong"
    except requests.ConnectionError:
        return False
