"""Rendered nginx.conf judged by nginx itself (`nginx -t` as an unprivileged user): the reference
inputs, the settings that reach it, and arbitrary values in every setting (hypothesis)."""

from __future__ import annotations

import io
import re
import socket
from pathlib import Path
from subprocess import CompletedProcess

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support.nginx import give_away, nginx_test, unprivileged_dir
from support.ports import listening_socket
from support.rendered import pinned_environ

from renderer.cli import REFERENCE_DIR, main
from renderer.render import NGINX_LISTEN_CONF
from shared.settings import SETTINGS, ConfigError, Host, format_value, resolve
from supervise.serve_proxy import listen_directive

CREATED_DIRS = ("SUPERVISOR_RUN_DIR", "LOG_DIR")


def render_in(base: Path, environ: dict[str, str], *flags: str) -> tuple[int, str, Path]:
    out, err = io.StringIO(), io.StringIO()
    output_dir = base / "out"
    code = main([*flags, "--output-dir", str(output_dir)], environ, out, err)
    return code, err.getvalue(), output_dir


def nginx_t(base: Path, output_dir: Path, listener: socket.socket) -> CompletedProcess[str]:
    """nginx -t on the render, inheriting ``listener`` as nginx does in the bundle; with
    HOST_PORT=0 after writing the listen directive serve_proxy would write for it."""
    if NGINX_LISTEN_CONF in (output_dir / "nginx.conf").read_text():
        (base / "run").mkdir(exist_ok=True)
        (base / "run" / NGINX_LISTEN_CONF).write_text(listen_directive(listener.fileno()))
    give_away(base)
    return nginx_test(output_dir / "nginx.conf", base / "run", listener)


def judged_by_nginx(base: Path, output_dir: Path, listener: socket.socket) -> str:
    result = nginx_t(base, output_dir, listener)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr
    return result.stderr


PROXIED = sorted(p for p in REFERENCE_DIR.glob("*.env") if "PROXY=none" not in p.read_text())


@pytest.mark.parametrize("env_file", PROXIED, ids=lambda p: p.name)
def test_reference_inputs_render_configs_nginx_accepts(env_file: Path) -> None:
    with unprivileged_dir() as base, listening_socket() as listener:
        environ = {k: v for k, v in pinned_environ(base).items() if k != "GUNICORN_WORKERS"}
        # nginx -t inherits the socket bound to the listen address, as nginx does in the bundle
        environ.update(HOST_IP="127.0.0.1", HOST_PORT=str(listener.getsockname()[1]))
        code, err, output_dir = render_in(base, environ, "--env-file", str(env_file))
        assert code == 0, err
        if not (REFERENCE_DIR / f"{env_file.stem}.nginx.conf").exists():  # dev, ROLE=executor
            assert not (output_dir / "nginx.conf").exists()
            return
        print(judged_by_nginx(base, output_dir, listener).strip())


def test_host_port_0_listens_on_the_port_the_holders_bound() -> None:
    """HOST_PORT=0: nginx.conf names no port; it includes the listen directive serve_proxy writes
    from the inherited socket, which nginx -t accepts with that socket inherited."""
    with unprivileged_dir() as base, listening_socket() as listener:
        environ = pinned_environ(base, HOST_IP="127.0.0.1", HOST_PORT="0")
        code, err, output_dir = render_in(base, environ)
        assert code == 0, err
        lines = {line.strip() for line in (output_dir / "nginx.conf").read_text().splitlines()}
        assert f'include "{base}/run/{NGINX_LISTEN_CONF}";' in lines
        assert not [line for line in lines if line.startswith("listen ")]
        judged_by_nginx(base, output_dir, listener)
        port = listener.getsockname()[1]
        assert (base / "run" / NGINX_LISTEN_CONF).read_text() == f"listen 127.0.0.1:{port};\n"


def test_settings_reach_nginx(tmp_path: Path) -> None:
    with unprivileged_dir() as base, listening_socket("::1") as listener:
        port = listener.getsockname()[1]
        environ = pinned_environ(
            base, HOST_IP="::1", HOST_PORT=str(port), MAX_CONTENT_LENGTH="10MB",
            GUNICORN_TIMEOUT="60", GUNICORN_GRACEFUL_TIMEOUT="12", PROXY_WORKERS="3",
            PROXY_WORKER_CONNECTIONS="512", PROXY_CLIENT_HEADER_TIMEOUT="7",
            PROXY_CLIENT_TIMEOUT="9", PROXY_KEEPALIVE_TIMEOUT="0", LOG_FORMAT="json",
        )  # fmt: skip
        code, err, output_dir = render_in(base, environ)
        assert code == 0, err
        text = (output_dir / "nginx.conf").read_text()
        judged_by_nginx(base, output_dir, listener)
    lines = {line.strip() for line in text.splitlines()}
    run = base / "run"
    for line in (
        f'listen "[::1]:{port}";',
        f'server "unix:{run}/web.sock";',
        f'pid "{run}/nginx.pid";',
        f'client_body_temp_path "{run}/proxy-body";',
        "client_max_body_size 10485760;",
        "proxy_read_timeout 65s;",
        "proxy_send_timeout 65s;",
        "worker_shutdown_timeout 12s;",
        "worker_processes 3;",
        "worker_connections 512;",
        "client_header_timeout 7s;",
        "client_body_timeout 9s;",
        "send_timeout 9s;",
        "keepalive_timeout 0s;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_request_buffering on;",
        "proxy_buffering on;",
        "error_log stderr notice;",
        "access_log /dev/stdout access;",
    ):
        assert line in lines, line
    assert "log_format access escape=json" in text


def test_without_the_proxy_there_is_no_nginx_conf(tmp_path: Path) -> None:
    code, err, output_dir = render_in(tmp_path, pinned_environ(tmp_path, PROXY="none"))
    assert code == 0, err
    assert sorted(p.name for p in output_dir.iterdir()) == ["gunicorn.conf.py", "supervisord.conf"]
    conf = (output_dir / "supervisord.conf").read_text()
    assert "[program:proxy]" not in conf and "--listener tcp" in conf


def test_nginx_not_found_is_a_configuration_error_naming_the_way_out() -> None:
    host = Host(cpu_count=lambda: 2, python="/py", app_dir="/a", user="u", nginx=None)
    with pytest.raises(ConfigError) as caught:
        resolve({}, {}, {}, host, lambda path: "")
    assert caught.value.problems == (
        "NGINX_BIN: no value: depends on the machine (nginx was not found on PATH; install "
        "nginx or set PROXY=none); set it explicitly",
    )
    assert resolve({"PROXY": "none"}, {}, {}, host, lambda path: "").values["NGINX_BIN"] is None


# --- arbitrary values: every exit-0 render is accepted by nginx -t ------------------------

TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("%$;#'\"[]{}\n\r\t\x00 =,:/\\`(){}*?~!&|<>") + list("0123456789")),
        st.characters(codec="utf-8"),
    ),
    max_size=30,
)
SEEDS = {
    s.name: [format_value(s.default)]
    if not callable(s.default) and s.default is not None
    else ["/srv/x", "1", "127.0.0.1", "ops", "5678", "::1"]
    for s in SETTINGS
}


def value_for(setting: str) -> st.SearchStrategy[str]:
    seed = st.sampled_from(SEEDS[setting])
    return st.one_of(TEXT, seed, st.tuples(seed, TEXT).map("".join),
                     st.tuples(TEXT, seed).map("".join))  # fmt: skip


NGINX_SETTINGS = [s.name for s in SETTINGS if "production" in s.modes]
CREDENTIALS = {"SUPERVISOR_USER": "ops", "SUPERVISOR_PASSWORD": "secret"}
PARTNERS = {"SUPERVISOR_USER": CREDENTIALS, "SUPERVISOR_PASSWORD": CREDENTIALS,
            "SUPERVISOR_INET_HTTP_SERVER": CREDENTIALS, "GUNICORN_THREADS":
            {"GUNICORN_WORKER_CLASS": "gthread"}}  # fmt: skip


@pytest.mark.parametrize("setting", NGINX_SETTINGS, ids=str)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_exit_0_render_passes_nginx_t(setting: str, data: st.DataObject) -> None:
    value = data.draw(value_for(setting), label="value")
    with unprivileged_dir() as base, listening_socket() as listener:
        if setting in CREATED_DIRS:
            value = f"{base}/{value}"
        # nginx -t inherits a socket on the listen address unless HOST_IP/HOST_PORT is drawn
        bound = {"HOST_IP": "127.0.0.1", "HOST_PORT": str(listener.getsockname()[1])}
        overrides = {**bound, **PARTNERS.get(setting, {}), setting: value}
        environ = pinned_environ(base, **overrides)
        code, err, output_dir = render_in(base, environ)
        assert "Traceback" not in err
        event(f"exit {code}")
        if code == 2:
            assert re.search(rf"^  - .*\b{setting}\b", err, re.MULTILINE), err
            return
        assert code == 0, err
        if not (output_dir / "nginx.conf").exists():
            return
        result = nginx_t(base, output_dir, listener)
        if setting in ("HOST_IP", "HOST_PORT") and result.returncode != 0:
            # nginx -t also binds the listen address: an address or host name this machine does
            # not have, or a port in use, is a fact of the machine at start time (the socket
            # holder reports it), not a file nginx cannot parse.
            emerg = [line for line in result.stderr.splitlines() if "[emerg]" in line]
            assert emerg, result.stderr
            assert all(
                re.search(r'bind\(\) to .* failed|host not found in ".*" of the "listen"', line)
                for line in emerg
            ), emerg
            event("listen address not usable here")
            return
        assert result.returncode == 0, result.stderr
