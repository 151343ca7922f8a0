"""Gunicorn hooks: pre_fork gc.freeze, and a sync worker told to stop in the middle of a request
(post_fork's parent-death signal: test_parent_death.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import requests
from support.ports import listening_socket
from support.supervised import APP_DIR
from support.waiting import wait_for

# pre_request as rendered, then SIGTERM to the worker itself: the signal lands between the hook
# and Gunicorn reading the request's server address from the listener
STOPPING_CONF = """
import os, signal
from supervise import gunicorn_hooks
workers = 1
post_worker_init = gunicorn_hooks.post_worker_init
post_request = gunicorn_hooks.post_request

def pre_request(worker, req):
    gunicorn_hooks.pre_request(worker, req)
    if req.path == "/v1/system/healthz":
        os.kill(os.getpid(), signal.SIGTERM)
"""


def test_pre_fork_freezes_the_masters_objects() -> None:
    probe = subprocess.run(
        [sys.executable, "-c",
         "import gc; from supervise.gunicorn_hooks import pre_fork; "
         "assert gc.get_freeze_count() == 0; pre_fork(None, None); print(gc.get_freeze_count())"],
        cwd=APP_DIR, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert int(probe.stdout) > 1000  # the interpreter's and the app's objects are frozen


def test_a_worker_stopped_as_its_request_starts_still_answers_it(
    tmp_path: Path,
) -> None:
    """SIGTERM right after pre_request: post_worker_init's handler closes the worker's copy of the
    listening socket, and the request still gets its answer (it was an HTTP 500 when the closed
    listener could not tell Gunicorn its address); the worker exits and the master starts
    another."""
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(STOPPING_CONF)
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


def _pong(base: str) -> bool:
    try:
        return requests.get(f"{base}/v1/system/ping", timeout=2).text == "pong"
    except requests.ConnectionError:
        return False
