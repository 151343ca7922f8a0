"""`python -m api.healthcheck`: exit 0 only when /v1/system/healthz answers 200 with status ok.

Checked as the container HEALTHCHECK runs it (a subprocess) against real HTTP servers on loopback:
a stdlib server answering chosen replies, and the real app under real Gunicorn.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StartBundle
from support.ports import refusing_port
from support.supervised import APP_DIR

from api.healthcheck import NoPortError, default_url
from shared.ports import write_port

REPLIES: dict[str, tuple[int, bytes]] = {}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = REPLIES[self.path]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def fake_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _healthcheck(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.healthcheck", *args],
        cwd=APP_DIR, env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ((200, b'{"db": "ok", "storage": "ok", "status": "ok"}'), 0),
        ((500, b'{"db": "database is locked", "status": "error"}'), 1),
        ((200, b'{"db": "ok", "status": "degraded"}'), 1),
        ((200, b"pong"), 1),
        ((200, b'["ok"]'), 1),
        ((404, b"not found"), 1),
    ],
    ids=["ok", "http-500", "status-not-ok", "not-json", "not-an-object", "http-404"],
)
def test_exit_code_follows_healthz(
    fake_server: int, reply: tuple[int, bytes], expected: int
) -> None:
    path = f"/v1/system/healthz-{reply[0]}-{abs(hash(reply[1]))}"
    REPLIES[path] = reply
    result = _healthcheck("--url", f"http://127.0.0.1:{fake_server}{path}")
    assert result.returncode == expected, result.stdout + result.stderr
    line = (result.stdout if expected == 0 else result.stderr).strip()
    assert len(line.splitlines()) == 1
    assert path in line


@pytest.mark.parametrize(("reply", "expected"), [((200, b"pong"), 0), ((200, b"{}"), 1),
                                                 ((503, b"pong"), 1)])  # fmt: skip
def test_live_checks_ping_only(fake_server: int, reply: tuple[int, bytes], expected: int) -> None:
    path = f"/v1/system/ping-{reply[0]}-{abs(hash(reply[1]))}"
    REPLIES[path] = reply
    result = _healthcheck("--live", "--url", f"http://127.0.0.1:{fake_server}{path}")
    assert result.returncode == expected, result.stdout + result.stderr
    assert (result.stdout if expected == 0 else result.stderr).startswith(
        "alive" if expected == 0 else "unhealthy"
    )


def test_nothing_listening_is_unhealthy() -> None:
    with refusing_port() as port:
        result = _healthcheck("--url", f"http://127.0.0.1:{port}/v1/system/healthz",
                              "--timeout", "2")  # fmt: skip
    assert result.returncode == 1
    assert "not reachable" in result.stderr


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        ({}, "http://127.0.0.1:9380/v1/system/healthz"),
        ({"HOST_PORT": "8080"}, "http://127.0.0.1:8080/v1/system/healthz"),
        ({"HOST_IP": "0.0.0.0", "HOST_PORT": "1"}, "http://127.0.0.1:1/v1/system/healthz"),
        ({"HOST_IP": "10.1.2.3"}, "http://10.1.2.3:9380/v1/system/healthz"),
        ({"HOST_IP": "::1", "HOST_PORT": "81"}, "http://[::1]:81/v1/system/healthz"),
    ],
)
def test_default_url_comes_from_host_ip_and_host_port(environ: dict[str, str], url: str) -> None:
    assert default_url(environ) == url


@pytest.mark.parametrize("environ", [{"HOST_PORT": "70000"}, {"HOST_PORT": " 80x"},
                                     {"HOST_IP": "not a host"}])  # fmt: skip
def test_an_invalid_host_setting_is_unhealthy_with_the_settings_message(
    environ: dict[str, str],
) -> None:
    result = _healthcheck(env={"PATH": "/usr/bin:/bin", **environ})
    assert result.returncode == 1, result.stdout + result.stderr
    name, value = next(iter(environ.items()))
    assert result.stderr.startswith("unhealthy: the configuration is invalid: ")
    assert f"{name}={value!r}: invalid; accepted: " in result.stderr


def test_host_port_0_probes_the_port_in_the_port_file(tmp_path: Path) -> None:
    environ = {"HOST_PORT": "0", "SUPERVISOR_RUN_DIR": str(tmp_path)}
    with pytest.raises(NoPortError, match=r"HOST_PORT=0 and .*http\.port does not exist"):
        default_url(environ)
    write_port(tmp_path / "http.port", 41234)
    assert default_url(environ) == "http://127.0.0.1:41234/v1/system/healthz"


def test_host_port_0_before_the_bundle_bound_it_is_unhealthy(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOST_PORT": "0", "SUPERVISOR_RUN_DIR": str(tmp_path)}
    result = _healthcheck(env=env)
    assert result.returncode == 1
    assert result.stderr.startswith(f"unhealthy: HOST_PORT=0 and {tmp_path}/http.port does not")


def test_real_app_is_healthy_via_host_port(start_bundle: StartBundle) -> None:
    run = start_bundle(WS="0", port=0)  # HOST_PORT=0: the bound port from the port file
    env = run.env
    assert env["HOST_PORT"] == "0"
    result = _healthcheck(env=env)
    print(result.stdout.strip())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"healthy: http://127.0.0.1:{run.port}/v1/system/healthz"
    run.ctl("stop", "web")
    result = _healthcheck("--timeout", "2", env=env)
    assert result.returncode == 1
