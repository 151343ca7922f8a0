"""Real Gunicorn on the rendered gunicorn.conf.py, outside supervisord, on a free loopback port:
a socket bound to port 0 here, handed to Gunicorn as ``--bind fd://N``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import requests

from support.ports import listening_socket
from support.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent.parent


def _answers(base: str, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"gunicorn exited with {proc.returncode} before answering")
    try:
        return requests.get(f"{base}/v1/system/ping", timeout=2).text == "pong"
    except requests.ConnectionError:
        return False


@contextlib.contextmanager
def rendered_gunicorn(env: Mapping[str, str], tmp: Path) -> Iterator[str]:
    """Render with `env` (HOST_IP must be set), start `gunicorn -c gunicorn.conf.py
    api.wsgi:application` on a socket bound to a free port of HOST_IP, yield its base URL once
    it answers; stop it with SIGTERM and fail when it ignores the signal or logged a
    traceback."""
    rendered = subprocess.run(
        [sys.executable, "render_config.py", "--output-dir", str(tmp / "conf")],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    log_path = tmp / "gunicorn.log"
    listener = listening_socket(env["HOST_IP"])
    with log_path.open("wb") as log, listener:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(tmp / "conf" / "gunicorn.conf.py"),
             "--bind", f"fd://{listener.fileno()}", "api.wsgi:application"],
            cwd=ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=(listener.fileno(),),
        )  # fmt: skip
        base = f"http://{env['HOST_IP']}:{listener.getsockname()[1]}"
    try:
        wait_for(lambda: _answers(base, proc), timeout=30, what=f"gunicorn to answer on {base}")
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            raise AssertionError(f"{proc.args!r} ignored SIGTERM") from None
    output = log_path.read_text(errors="replace")
    assert "Traceback" not in output, output[-3000:]
