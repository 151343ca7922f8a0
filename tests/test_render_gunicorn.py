"""Rendered gunicorn.conf.py judged by gunicorn itself (--check-config, --print-config), every
assigned name a real gunicorn setting, and the log format it configures."""

from __future__ import annotations

import ast
import io
import json
import logging
import logging.config
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from gunicorn.config import KNOWN_SETTINGS
from support.rendered import APP_DIR, pinned_environ

from renderer.cli import REFERENCE_DIR, main

APP = "api.wsgi:application"
GUNICORN_NAMES = {setting.name for setting in KNOWN_SETTINGS}


def render(tmp_path: Path, *argv: str, **overrides: str) -> Path:
    err = io.StringIO()
    output_dir = tmp_path / "out"
    code = main([*argv, "--output-dir", str(output_dir)], pinned_environ(tmp_path, **overrides),
                io.StringIO(), err)  # fmt: skip
    assert code == 0, err.getvalue()
    return output_dir / "gunicorn.conf.py"


def gunicorn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", *args], cwd=APP_DIR, capture_output=True, text=True,
        timeout=60, check=False, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def printed_config(conf: Path) -> dict[str, str]:
    result = gunicorn("--print-config", "-c", str(conf), APP)
    assert result.returncode == 0, result.stderr
    lines = (line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return {name.strip(): value.strip() for name, value in lines}


# the reference inputs with a Gunicorn (not dev mode, not ROLE=executor): a committed render
@pytest.mark.parametrize("env_file", [p for p in sorted(REFERENCE_DIR.glob("*.env"))
                                      if (REFERENCE_DIR / f"{p.stem}.gunicorn.conf.py").exists()],
                         ids=lambda p: p.name)  # fmt: skip
def test_check_config_accepts_reference_renders(tmp_path: Path, env_file: Path) -> None:
    conf = render(tmp_path, "--env-file", str(env_file))
    result = gunicorn("--check-config", "-c", str(conf), APP)
    assert result.returncode == 0, result.stdout + result.stderr


def test_settings_reach_gunicorn(tmp_path: Path) -> None:
    conf = render(tmp_path, GUNICORN_WORKERS="3", GUNICORN_WORKER_CLASS="gthread",
                  GUNICORN_THREADS="4", GUNICORN_TIMEOUT="120", GUNICORN_GRACEFUL_TIMEOUT="15",
                  GUNICORN_KEEPALIVE="7", GUNICORN_MAX_REQUESTS="500",
                  GUNICORN_MAX_REQUESTS_JITTER="25", GUNICORN_PRELOAD="false",
                  GUNICORN_LOG_LEVEL="warning", FORWARDED_ALLOW_IPS="10.0.0.0/8,127.0.0.1",
                  HOST_IP="::1", HOST_PORT="9555")  # fmt: skip
    printed = printed_config(conf)
    assert printed["workers"] == "3"
    assert printed["worker_class"] == "gthread"
    assert printed["threads"] == "4"
    assert printed["timeout"] == "120"
    assert printed["graceful_timeout"] == "15"
    assert printed["keepalive"] == "7"
    assert printed["max_requests"] == "500"
    assert printed["max_requests_jitter"] == "25"
    assert printed["preload_app"] == "False"
    assert printed["loglevel"] == "warning"
    assert printed["forwarded_allow_ips"] == "['10.0.0.0/8', '127.0.0.1']"
    assert printed["bind"] == "['[::1]:9555']"
    assert printed["control_socket_disable"] == "True"
    assert printed["worker_tmp_dir"] == "/dev/shm"
    assert printed["chdir"] == str(APP_DIR)
    assert printed["post_fork"].startswith("<post_fork")


def test_gunicorn_cmd_args_still_apply(tmp_path: Path) -> None:
    conf = render(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--print-config", "-c", str(conf), APP],
        cwd=APP_DIR, capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "GUNICORN_CMD_ARGS": "--workers 11"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "workers                            = 11" in result.stdout


def test_every_assigned_lowercase_name_is_a_gunicorn_setting(tmp_path: Path) -> None:
    tree = ast.parse(render(tmp_path).read_text())
    assigned = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name) and target.id.islower()
    }
    assert assigned - GUNICORN_NAMES == set()
    assert {"bind", "workers", "logconfig_dict", "control_socket_disable"} <= assigned


def _log_lines(conf: Path, environ_name: str | None = None) -> tuple[str, str]:
    namespace = runpy.run_path(str(conf))
    out, err = io.StringIO(), io.StringIO()
    config = json.loads(json.dumps(namespace["logconfig_dict"], default=lambda f: "FORMATTER"))
    config["formatters"]["line"] = namespace["logconfig_dict"]["formatters"]["line"]
    config["handlers"]["access"]["stream"] = out
    config["handlers"]["error"]["stream"] = err
    logging.config.dictConfig(config)
    try:
        logging.getLogger("gunicorn.access").info('127.0.0.1 "GET / HTTP/1.1" 200')
        logging.getLogger("gunicorn.error").error("Worker timeout")
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    return out.getvalue(), err.getvalue()


def test_text_logs_name_the_program_and_pid_access_to_stdout(tmp_path: Path) -> None:
    out, err = _log_lines(render(tmp_path))
    assert f" web [{__import__('os').getpid()}] INFO gunicorn.access: " in out
    assert "Worker timeout" in err and "Worker timeout" not in out


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    out, err = _log_lines(render(tmp_path, LOG_FORMAT="json"))
    (access,) = [json.loads(line) for line in out.splitlines()]
    (error,) = [json.loads(line) for line in err.splitlines()]
    assert access["program"] == "web" and access["logger"] == "gunicorn.access"
    assert error["level"] == "ERROR" and error["message"] == "Worker timeout"
    assert isinstance(error["pid"], int)
