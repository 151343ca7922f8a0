"""The nginx proxy in front of the REAL rendered bundle (launcher as PID 1 of a fresh PID
namespace, Gunicorn on its unix socket): slow and abusive clients hold no sync worker, the real
client address is logged and a forged one is not, `signal HUP proxy` and a SIGKILLed socket
holder lose no request. Each test prints its figures."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import StartBundle
from support.http_load import LoadGenerator
from support.ports import listening_port
from support.rendered_bundle import bundle_environment, render_bundle
from support.slow_clients import (
    SLOW_BODY,
    SLOW_HEADER,
    held_connections,
    huge_declared_body,
    read_answer,
)
from support.supervised import APP_DIR, PYTHON, SupervisedRun
from support.waiting import wait_for


def _progress(load: LoadGenerator, requests: int = 200) -> None:
    target = load.ok_count() + requests
    wait_for(lambda: load.ok_count() >= target, 30, f"{requests} more successful requests")


def _get(port: int, path: str, headers: dict[str, str] | None = None,
         timeout: float = 10) -> tuple[int, bytes]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _timed_pings(port: int, count: int) -> list[float]:
    durations = []
    for _ in range(count):
        started = time.monotonic()
        status, body = _get(port, "/v1/system/ping", timeout=5)
        assert (status, body) == (200, b"pong")
        durations.append(time.monotonic() - started)
    return durations


def test_400_slow_clients_hold_no_worker_while_requests_succeed(
    start_bundle: StartBundle,
) -> None:
    # Timeouts longer than the test: the slow clients stay connected throughout.
    run = start_bundle(WS="0", PROXY_CLIENT_HEADER_TIMEOUT="120", PROXY_CLIENT_TIMEOUT="120")
    baseline = _timed_pings(run.port, 50)
    with (
        held_connections(run.port, SLOW_HEADER, 200),
        held_connections(run.port, SLOW_BODY, 200),
    ):
        wait_for(lambda: run.connections_in_service() >= 400, 20, "400 slow clients connected")
        under_slow = _timed_pings(run.port, 50)
        with LoadGenerator(run.port, clients=4, max_requests=400) as load:
            wait_for(lambda: load.ok_count() >= 400, 60, "400 requests under 400 slow clients")
            outcome = load.stop()
        still_connected = run.connections_in_service()
    slowest = max(under_slow)
    print(
        f"400 slow clients held: {outcome.ok} ok / {outcome.failed} failed; ping max "
        f"{max(baseline) * 1000:.1f} ms without, {slowest * 1000:.1f} ms with them; "
        f"{still_connected} client connections still open"
    )
    assert outcome.failed == 0, outcome.errors
    assert still_connected >= 400  # they were held the whole time, not dropped
    assert slowest < 2.0


def test_without_the_proxy_two_slow_clients_block_two_sync_workers(
    start_bundle: StartBundle,
) -> None:
    """The failure the proxy removes, with real processes: GUNICORN_WORKERS=2, PROXY=none."""
    run = start_bundle(WS="0", PROXY="none")
    assert _get(run.port, "/v1/system/ping")[0] == 200
    with held_connections(run.port, SLOW_HEADER, 2):
        wait_for(lambda: run.connections_in_service() >= 2, 10, "both taken by a sync worker")
        started = time.monotonic()
        try:
            _get(run.port, "/v1/system/ping", timeout=3)
            blocked = False
        except TimeoutError:
            blocked = True
        print(f"PROXY=none, 2 slow clients: ping blocked={blocked} after "
              f"{time.monotonic() - started:.2f} s")  # fmt: skip
    assert blocked


def test_declared_1_gib_body_holds_no_worker_and_is_dropped_after_the_client_timeout(
    start_bundle: StartBundle,
) -> None:
    run = start_bundle(WS="0", PROXY_CLIENT_TIMEOUT="4")
    workers = 2  # GUNICORN_WORKERS in the test bundle
    with held_connections(run.port, huge_declared_body(1024**3), workers + 3) as held:
        sent_at = time.monotonic()
        wait_for(lambda: run.connections_in_service() >= workers + 3, 10, "the uploads connected")
        pings = _timed_pings(run.port, 20)  # every sync worker is free
        answers = [read_answer(sock, 15) for sock in held]
        closed_after = time.monotonic() - sent_at
    print(
        f"{workers + 3} uploads declaring 1 GiB, 100 bytes sent: 20 pings served (max "
        f"{max(pings) * 1000:.1f} ms); the proxy closed them after {closed_after:.1f} s "
        f"(PROXY_CLIENT_TIMEOUT=4) with {sum(map(len, answers))} bytes"
    )
    assert 3.5 < closed_after < 12
    # Nothing of them reached Gunicorn.
    assert "/documents" not in "".join(
        line for line in run.stdout().splitlines() if "gunicorn.access" in line
    )


def test_body_over_max_content_length_gets_a_json_413_from_the_proxy(
    start_bundle: StartBundle,
) -> None:
    run = start_bundle(WS="0", MAX_CONTENT_LENGTH="4KB")
    with held_connections(run.port, huge_declared_body(4097), 1) as (sock,):
        answer = read_answer(sock, 10)
    head, _, body = answer.partition(b"\r\n\r\n")
    print(f"Content-Length over MAX_CONTENT_LENGTH: {head.splitlines()[0]!r} {body!r}")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"Content-Type: application/json" in head
    document = json.loads(body)
    assert document["code"] == 101 and "MAX_CONTENT_LENGTH is 4096 bytes" in document["message"]


def _access_lines(run: SupervisedRun, logger: str, marker: str) -> list[str]:
    return [line for line in run.stdout().splitlines() if logger in line and marker in line]


@pytest.mark.parametrize("proxy", ["nginx", "none"])
def test_logs_show_the_real_client_and_never_a_forged_x_forwarded_for(
    start_bundle: StartBundle, proxy: str
) -> None:
    forged = {"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "203.0.113.8"}
    run = start_bundle(WS="0", PROXY=proxy)
    marker = f"forged-{proxy}"
    assert _get(run.port, f"/v1/system/ping?{marker}", forged)[0] == 200
    web = wait_for(lambda: _access_lines(run, "gunicorn.access", marker), 10, "web's line")
    print(f"PROXY={proxy}: {web[0]}")
    assert re.search(r"gunicorn\.access: 127\.0\.0\.1 \[", web[0]), web[0]
    assert "203.0.113" not in run.stdout()
    if proxy == "nginx":
        line = wait_for(lambda: _access_lines(run, "nginx.access", marker), 10, "proxy's line")
        # every field of Gunicorn's line: client, time, request, status, size, agent, duration
        assert re.search(
            r'nginx\.access: 127\.0\.0\.1 \[[^\]]+\] "GET /v1/system/ping\?forged-nginx '
            r'HTTP/1\.1" 200 4 "[^"]*" [0-9.]+s$',
            line[0],
        ), line[0]


# LOG_FORMAT=json: the proxy program is the error-log relay (supervise.nginx_errors), nginx's
# master its child; every signal and the exit status pass through it.
LOG_FORMATS = pytest.mark.parametrize("log_format", ["text", "json"])


def _nginx_master(run: SupervisedRun, log_format: str) -> psutil.Process:
    proxy = psutil.Process(run.host_pid("proxy"))
    if log_format == "text":
        return proxy  # serve_proxy exec'd nginx
    (master,) = wait_for(proxy.children, 10, "nginx under the relay")
    return master


@LOG_FORMATS
def test_hup_proxy_reloads_nginx_under_load_without_a_failed_request(
    start_bundle: StartBundle, log_format: str
) -> None:
    run = start_bundle(WS="0", LOG_FORMAT=log_format)
    proxy = run.host_pid("proxy")
    master = _nginx_master(run, log_format)
    old_workers = {child.pid for child in master.children()}
    with LoadGenerator(run.port, clients=4, max_seconds=60) as load:
        _progress(load)
        result = run.ctl("signal", "HUP", "proxy")
        wait_for(
            lambda: (new := {c.pid for c in master.children()}) and not new & old_workers,
            30, "nginx to replace its workers",
        )  # fmt: skip
        _progress(load)
        outcome = load.stop()
    print(f"signal HUP proxy: {outcome.failed} failed of {outcome.total} requests")
    assert result.returncode == 0, result.stdout + result.stderr
    assert run.host_pid("proxy") == proxy and master.is_running()  # same master, new workers
    assert outcome.failed == 0, outcome.errors
    assert "reconfiguring" in run.stderr()


def test_sigkill_socket_holder_then_restart_web_under_load_fails_no_request(
    start_bundle: StartBundle,
) -> None:
    run = start_bundle(WS="0")
    holder = "socket_holder:socket_holder_0"
    killed = run.host_pid(holder)
    killed_in_namespace = int(run.info(holder)["pid"])

    def restarted() -> bool:  # one read of the state: it may change between two calls
        info = run.info(holder)
        return info["statename"] == "RUNNING" and int(info["pid"]) != killed_in_namespace

    with LoadGenerator(run.port, clients=4, max_seconds=90) as load:
        _progress(load)
        os.kill(killed, signal.SIGKILL)
        wait_for(restarted, 30, "supervisord to restart the killed holder")
        _progress(load)
        after_kill = load.stop()
    took_over = run.stdout().count("(taken from a running holder)")
    with LoadGenerator(run.port, clients=4, max_seconds=90) as load:
        _progress(load)
        restart = run.ctl("restart", "web")
        _progress(load)
        after_restart = load.stop()
    print(
        f"SIGKILL socket_holder_0: {after_kill.failed} failed of {after_kill.total}; the new "
        f"holder took the sockets from its sibling ({took_over} take-overs logged); then "
        f"restart web: {after_restart.failed} failed of {after_restart.total}"
    )
    assert after_kill.failed == 0, after_kill.errors
    assert took_over >= 2  # holder 1 at the start, the restarted holder 0 now
    assert restart.returncode == 0 and "web: started" in restart.stdout, restart.stdout
    assert after_restart.failed == 0, after_restart.errors


@LOG_FORMATS
def test_proxy_that_cannot_start_stops_the_bundle_with_exit_1_naming_it(
    start_bundle: StartBundle, log_format: str
) -> None:
    started = time.monotonic()
    run = start_bundle(wait=False, WS="0", NGINX_BIN="/nonexistent/nginx", LOG_FORMAT=log_format)
    code = run.wait_exit(60)
    elapsed = time.monotonic() - started
    fatal = [line for line in run.stdout().splitlines() if "is FATAL" in line]
    print(f"NGINX_BIN missing: exit {code} after {elapsed:.2f} s: {fatal}")
    assert code == 1, run.output()
    assert len(fatal) == 1 and "proxy is FATAL" in fatal[0]
    assert "cannot run /nonexistent/nginx" in fatal[0] and "PROXY=none" in fatal[0]


@LOG_FORMATS
def test_restart_proxy_under_load_fails_no_request(
    start_bundle: StartBundle, log_format: str
) -> None:
    run = start_bundle(WS="0", LOG_FORMAT=log_format)
    old = run.host_pid("proxy")
    with LoadGenerator(run.port, clients=4, max_seconds=60) as load:
        _progress(load)
        started = time.monotonic()
        result = run.ctl("restart", "proxy")
        took = time.monotonic() - started
        _progress(load)
        outcome = load.stop()
    print(f"restart proxy: {outcome.failed} failed of {outcome.total} (restart took {took:.2f} s)")
    assert result.returncode == 0 and "proxy: started" in result.stdout, result.stdout
    assert run.host_pid("proxy") != old
    assert outcome.failed == 0, outcome.errors


def test_rendered_gunicorn_conf_alone_still_binds_host_ip_and_port(tmp_path: Path) -> None:
    """`gunicorn -c gunicorn.conf.py api.wsgi:application` without supervisord (and without the
    proxy or the holders) serves HOST_IP:HOST_PORT itself; a forged X-Forwarded-For from its TCP
    peer is not believed. HOST_PORT=0: Gunicorn binds a free port, read back from the kernel."""
    env = bundle_environment(tmp_path, 0, {})
    conf = render_bundle(env)
    log = tmp_path / "gunicorn.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "-c", str(conf.parent / "gunicorn.conf.py"),
             "api.wsgi:application"],
            cwd=APP_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        port = listening_port(proc.pid)

        def pong() -> bool:
            try:
                return (
                    _get(port, "/v1/system/ping", {"X-Forwarded-For": "203.0.113.9"})[1] == b"pong"
                )
            except OSError:
                return False

        wait_for(pong, 30, "Gunicorn alone on HOST_IP:HOST_PORT")
        line = wait_for(
            lambda: [x for x in log.read_text().splitlines() if "gunicorn.access" in x], 10,
            "an access line",
        )  # fmt: skip
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    print(line[0])
    assert f"Listening at: http://127.0.0.1:{port}" in log.read_text()
    assert "gunicorn.access: 127.0.0.1 [" in line[0] and "203.0.113.9" not in log.read_text()
