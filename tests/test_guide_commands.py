"""The commands of RAGFlow's production-mode guide work literally here (README: "Coming from
RAGFlow's production-mode guide"), each a thin shim over render_config.py, with real processes:
the launch scripts and entrypoint.sh start the real bundle (launcher as PID 1 of a fresh PID
namespace); `gunicorn -c gunicorn_config.py api.wsgi:application` serves and resolves exactly as
the rendered gunicorn.conf.py. (`python api/ragflow_server.py --debug`: test_api_devserver; the
image's forms: test_container.)"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support.ports import listening_port
from support.rendered_bundle import bundle_environment
from support.script_run import ScriptRun
from support.supervised import APP_DIR, SupervisedRun
from support.waiting import wait_for

GUNICORN = str(Path(sys.executable).parent / "gunicorn")
APP = "api.wsgi:application"


@pytest.fixture
def runs() -> Iterator[list[SupervisedRun]]:
    started: list[SupervisedRun] = []
    yield started
    for run in started:
        run.kill()


def _ping(port: int) -> int:
    """HTTP status of /v1/system/ping, 0 while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/system/ping", timeout=10) as ok:
            return int(ok.status)
    except OSError:
        return 0


GUIDE_SCRIPTS = {
    "launch_production_service": (["./docker/launch_production_service.sh"], "production"),
    "launch_backend_service --production-mode": (
        ["./docker/launch_backend_service.sh", "--production-mode"], "production"),
    "launch_backend_service --dev-mode": (
        ["./docker/launch_backend_service.sh", "--dev-mode"], "dev"),
    "entrypoint.sh --dev-mode": (["./entrypoint.sh", "--dev-mode"], "dev"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(GUIDE_SCRIPTS))
def test_guide_script_starts_the_bundle_and_stops_on_sigterm(
    name: str, runs: list[SupervisedRun], tmp_path: Path
) -> None:
    command, mode = GUIDE_SCRIPTS[name]
    env = bundle_environment(tmp_path, 0, {"WS": "1"})  # HOST_PORT=0: run.port from the port file
    run = ScriptRun(command, env, tmp_path).start()
    runs.append(run)
    states = run.wait_running(60)
    wait_for(lambda: _ping(run.port) == 200, 30, f"{name} to answer")
    programs = {key.split(":")[0] for key in states}
    print(f"{' '.join(command)}: {sorted(states)}")
    if mode == "production":
        assert {"proxy", "web", "socket_holder", "task_executor"} <= programs
        assert "Mode: production" in run.conf.read_text()
    else:
        assert programs == {"web"}
        assert "Mode: dev" in run.conf.read_text()
    assert "supervise.launcher" in run.pid1().cmdline()
    os.kill(run.pid1().pid, signal.SIGTERM)
    assert run.wait_exit(60) == 0


def _gunicorn_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    return bundle_environment(tmp_path, 0, overrides)  # HOST_PORT=0: Gunicorn binds a free port


def _print_config(env: dict[str, str], config: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GUNICORN, "--print-config", "-c", config, APP],
        cwd=APP_DIR, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _settings(printed: str) -> dict[str, str]:
    """`gunicorn --print-config` as name -> value (object addresses of hooks blanked)."""
    pairs = (line.split(" = ", 1) for line in printed.splitlines() if " = " in line)
    return {name.strip(): re.sub(r" at 0x[0-9a-f]+", "", value.strip()) for name, value in pairs}


def test_gunicorn_config_resolves_like_the_rendered_file(tmp_path: Path) -> None:
    env = _gunicorn_env(tmp_path, GUNICORN_WORKERS="3", GUNICORN_LOG_LEVEL="debug")
    rendered = subprocess.run(
        [sys.executable, "render_config.py", "--output-dir", str(tmp_path / "out")],
        cwd=APP_DIR, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert rendered.returncode == 0
    shim = _print_config(env, "gunicorn_config.py")
    reference = _print_config(env, str(tmp_path / "out" / "gunicorn.conf.py"))
    assert shim.returncode == 0, shim.stderr
    assert reference.returncode == 0, reference.stderr
    lines, expected = _settings(shim.stdout), _settings(reference.stdout)
    print(f"gunicorn --print-config: {len(lines)} settings identical to the rendered file's")
    assert len(lines) > 100
    assert lines.pop("config") == "gunicorn_config.py"  # the only line that may differ
    expected.pop("config")
    assert lines == expected
    assert lines["bind"] == f"['127.0.0.1:{env['HOST_PORT']}']"
    assert (lines["workers"], lines["loglevel"]) == ("3", "debug")


def test_gunicorn_config_rejects_what_render_config_rejects(tmp_path: Path) -> None:
    env = _gunicorn_env(tmp_path, GUNICORN_WORKERS="0", HOST_PORT="http", GUNICORN_LOG_LEVEL="loud")
    shim = _print_config(env, "gunicorn_config.py")
    renderer = subprocess.run(
        [sys.executable, "render_config.py", "--print-config"],
        cwd=APP_DIR, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    print(shim.stderr)
    assert (shim.returncode, renderer.returncode) == (2, 2)
    assert shim.stderr == renderer.stderr
    for name in ("GUNICORN_WORKERS='0'", "HOST_PORT='http'", "GUNICORN_LOG_LEVEL='loud'"):
        assert name in shim.stderr


def test_gunicorn_config_serves_with_the_environment_at_start(tmp_path: Path) -> None:
    env = _gunicorn_env(tmp_path, GUNICORN_WORKERS="3", GUNICORN_LOG_LEVEL="debug")
    for key in ("DATA_DIR", "LOG_DIR"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [GUNICORN, "-c", "gunicorn_config.py", APP],
            cwd=APP_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        port = listening_port(proc.pid, 60)  # HOST_PORT=0, read back from the kernel
        wait_for(lambda: _ping(port) == 200 or proc.poll() is not None, 60, "gunicorn to answer")
        assert proc.poll() is None, log.read_text()
        master = psutil.Process(proc.pid)
        workers = wait_for(lambda: len(master.children()) == 3, 30, "3 workers")
        assert workers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    text = log.read_text(errors="replace")
    print(f"gunicorn -c gunicorn_config.py: 3 workers on 127.0.0.1:{port}, DEBUG lines logged")
    assert f"Listening at: http://127.0.0.1:{port}" in text
    assert " DEBUG " in text  # GUNICORN_LOG_LEVEL=debug


def test_uv_sync_frozen_all_extras(tmp_path: Path) -> None:
    uv = APP_DIR / ".cache" / "bootstrap" / "bin" / "uv"
    if not uv.exists():
        pytest.fail("uv is bootstrapped by `make venv`; run it first")
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(tmp_path / "venv")}
    result = subprocess.run(
        [str(uv), "sync", "--frozen", "--all-extras"],
        cwd=APP_DIR, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    check = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "python"), "-c", "import gunicorn, supervisor, werkzeug"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
