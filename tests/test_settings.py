"""The settings table: every default is valid, each parser accepts/refuses what it says,
precedence and sources, all problems at once, unknown-variable warnings."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from shared.settings import (
    BY_NAME,
    SETTINGS,
    ConfigError,
    Host,
    Resolved,
    Setting,
    format_value,
    parse_env_file,
    resolve,
    unknown_variable_warnings,
)

HOST = Host(cpu_count=lambda: 3, python="/usr/bin/python3", app_dir="/srv/app", user="app",
            nginx="/usr/sbin/nginx")  # fmt: skip


def no_secret(path: str) -> str:
    raise OSError(2, "No such file or directory")


def run(
    environ: Mapping[str, str] | None = None,
    env_file: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
    host: Host = HOST,
) -> Resolved:
    return resolve(environ or {}, env_file or {}, flags or {}, host, no_secret)


def problems(**environ: str) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        run(environ)
    return caught.value.problems


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_default_passes_its_own_validator(setting: Setting) -> None:
    for mode in ("production", "dev"):
        resolved = run({"RAGFLOW_MODE": mode})
        value = resolved.values[setting.name]
        if setting.name != "RAGFLOW_MODE":
            assert resolved.sources[setting.name] == "default"
        if value is not None:
            parsed = setting.parser.parse(format_value(value))
            assert parsed == value


def test_table_names_are_unique_and_help_is_one_line() -> None:
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    for setting in SETTINGS:
        assert setting.help and "\n" not in setting.help
        assert setting.parser.accepts


def test_issue_settings_are_all_in_the_table() -> None:
    required = {
        "RAGFLOW_MODE", "HOST_IP", "HOST_PORT", "GUNICORN_WORKERS", "WEB_CONCURRENCY",
        "GUNICORN_WORKER_CLASS", "GUNICORN_THREADS", "GUNICORN_TIMEOUT",
        "GUNICORN_GRACEFUL_TIMEOUT", "GUNICORN_KEEPALIVE", "GUNICORN_MAX_REQUESTS",
        "GUNICORN_MAX_REQUESTS_JITTER", "GUNICORN_PRELOAD", "GUNICORN_LOG_LEVEL", "WS",
        "TASK_STOP_TIMEOUT", "RAGFLOW_DEBUGPY_LISTEN", "LOG_TARGET", "LOG_DIR", "LOG_MAX_BYTES",
        "LOG_BACKUPS", "LOG_FORMAT", "DATA_DIR", "SUPERVISOR_RUN_DIR", "SUPERVISOR_USER",
        "SUPERVISOR_PASSWORD", "STOP_GRACE_SECONDS", "MAX_CONTENT_LENGTH", "TASK_LEASE_SECONDS",
        "TASK_MAX_ATTEMPTS", "FORWARDED_ALLOW_IPS", "APP_DIR", "PYTHON_BIN", "RAGFLOW_API_KEY",
    }  # fmt: skip
    assert required <= set(BY_NAME)


def test_documented_defaults() -> None:
    values = run().values
    assert values["RAGFLOW_MODE"] == "production"
    assert values["HOST_IP"] == "0.0.0.0"
    assert values["HOST_PORT"] == 9380
    assert values["GUNICORN_WORKERS"] == 7  # 2 x 3 CPUs + 1
    assert values["GUNICORN_TIMEOUT"] == 300
    assert values["GUNICORN_GRACEFUL_TIMEOUT"] == 20
    assert values["GUNICORN_MAX_REQUESTS"] == 1000
    assert values["GUNICORN_MAX_REQUESTS_JITTER"] == 50
    assert values["GUNICORN_PRELOAD"] is True
    assert values["MAX_CONTENT_LENGTH"] == 1024**3
    assert values["TASK_MAX_ATTEMPTS"] == 3
    assert values["STOP_GRACE_SECONDS"] == 30
    assert values["DATA_DIR"] == "/srv/app/data"
    assert values["PYTHON_BIN"] == "/usr/bin/python3"
    assert values["SUPERVISOR_RUN_USER"] == "app"


def test_dev_mode_binds_loopback_by_default() -> None:
    assert run({"RAGFLOW_MODE": "dev"}).values["HOST_IP"] == "127.0.0.1"
    assert run(flags={"RAGFLOW_MODE": "dev"}).values["HOST_IP"] == "127.0.0.1"
    assert run({"RAGFLOW_MODE": "dev", "HOST_IP": "0.0.0.0"}).values["HOST_IP"] == "0.0.0.0"


def test_web_concurrency_is_honoured_only_when_gunicorn_workers_is_unset() -> None:
    assert run({"WEB_CONCURRENCY": "4"}).values["GUNICORN_WORKERS"] == 4
    assert run({"WEB_CONCURRENCY": "4", "GUNICORN_WORKERS": "9"}).values["GUNICORN_WORKERS"] == 9


def test_precedence_flag_over_env_over_env_file_over_default() -> None:
    resolved = run(
        environ={"RAGFLOW_MODE": "production", "HOST_PORT": "9000"},
        env_file={"HOST_PORT": "8000", "WS": "3", "RAGFLOW_MODE": "production"},
        flags={"RAGFLOW_MODE": "dev"},
    )
    assert (resolved.values["RAGFLOW_MODE"], resolved.sources["RAGFLOW_MODE"]) == ("dev", "flag")
    assert (resolved.values["HOST_PORT"], resolved.sources["HOST_PORT"]) == (9000, "env")
    assert (resolved.values["WS"], resolved.sources["WS"]) == (3, "env-file")
    assert resolved.sources["GUNICORN_TIMEOUT"] == "default"


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("HOST_PORT", "1", 1),
        ("HOST_PORT", "65535", 65535),
        ("HOST_PORT", "0", 0),  # the kernel picks a free port (shared/ports.py)
        ("METRICS_PORT", "0", 0),
        ("RAGFLOW_DEBUGPY_LISTEN", "127.0.0.1:0", "127.0.0.1:0"),
        ("HOST_IP", "::", "::"),
        ("HOST_IP", "10.0.0.1", "10.0.0.1"),
        ("HOST_IP", "api.example.com", "api.example.com"),
        ("GUNICORN_PRELOAD", "no", False),
        ("GUNICORN_PRELOAD", "ON", True),
        ("GUNICORN_WORKER_CLASS", "gthread", "gthread"),
        ("MAX_CONTENT_LENGTH", "512MB", 512 * 1024**2),
        ("MAX_CONTENT_LENGTH", "2048", 2048),
        ("LOG_MAX_BYTES", "1GB", 1024**3),
        ("WS", "0", 0),
        ("RAGFLOW_DEBUGPY_LISTEN", "5678", "5678"),
        ("RAGFLOW_DEBUGPY_LISTEN", "0.0.0.0:5678", "0.0.0.0:5678"),
        ("RAGFLOW_DEBUGPY_LISTEN", "0", None),
        ("RAGFLOW_DEBUGPY_LISTEN", "", None),
        ("FORWARDED_ALLOW_IPS", "*", "*"),
        ("FORWARDED_ALLOW_IPS", "10.0.0.0/8, 127.0.0.1", "10.0.0.0/8,127.0.0.1"),
        ("SUPERVISOR_INET_HTTP_SERVER", "127.0.0.1:9001", "127.0.0.1:9001"),
        ("RAGFLOW_DEBUGPY_LISTEN", "[::1]:5678", "[::1]:5678"),
        ("DATA_DIR", "/var/lib/ragflow/", "/var/lib/ragflow"),
        ("SUPERVISOR_RUN_USER", "1000", "1000"),
        ("HOST_IP", "fe80::1%eth0", "fe80::1%eth0"),
        ("HOST_IP", "fe80::1%2", "fe80::1%2"),
        ("HOST_IP", "fe80::1%br-lan.100", "fe80::1%br-lan.100"),
        ("FORWARDED_ALLOW_IPS", "fe80::1%eth0,10.0.0.0/8", "fe80::1%eth0,10.0.0.0/8"),
        ("RAGFLOW_DEBUGPY_LISTEN", "[fe80::1%eth0]:5678", "[fe80::1%eth0]:5678"),
    ],
)
def test_parsers_accept(name: str, raw: str, value: object) -> None:
    assert BY_NAME[name].parser.parse(raw) == value


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("HOST_PORT", "65536"),
        ("SUPERVISOR_INET_HTTP_SERVER", "127.0.0.1:0"),  # supervisord reports no bound port
        ("HOST_PORT", "80 80"),
        ("HOST_PORT", "-1"),
        ("HOST_IP", "0.0.0.0\n[program:x]"),
        ("HOST_IP", "a b"),
        ("GUNICORN_WORKERS", "0"),
        ("GUNICORN_WORKERS", "two"),
        ("GUNICORN_WORKER_CLASS", "eventlet"),
        ("GUNICORN_PRELOAD", "maybe"),
        ("MAX_CONTENT_LENGTH", "1TB"),
        ("MAX_CONTENT_LENGTH", "0"),
        ("WS", "65"),
        ("LOG_TARGET", "syslog"),
        ("DATA_DIR", "relative/path"),
        ("DATA_DIR", "/with space"),
        ("DATA_DIR", "/with'quote"),
        ("DATA_DIR", "/new\nline"),
        ("PYTHON_BIN", "/usr/bin/python3 -c 'import os'"),
        ("RAGFLOW_DEBUGPY_LISTEN", "host:"),
        ("FORWARDED_ALLOW_IPS", "10.0.0.1,,"),
        ("SUPERVISOR_USER", "root;rm"),
        ("SUPERVISOR_INET_HTTP_SERVER", "[::1]:9001"),
        ("SUPERVISOR_INET_HTTP_SERVER", "9001"),
        ("SUPERVISOR_PASSWORD", "two words"),
        ("SUPERVISOR_PASSWORD", "tab\there"),
        ("RAGFLOW_API_KEY", "key\x00nul"),
        ("SUPERVISOR_RUN_USER", "bad user"),
        # IPv6 scope ids: an interface name or number, nothing an ini or shell line would cut
        ("HOST_IP", "fe80::1%a ;b"),
        ("HOST_IP", "fe80::1%a#b"),
        ("HOST_IP", "fe80::1%eth0;reboot"),
        ("HOST_IP", "fe80::1%$(id)"),
        ("HOST_IP", "fe80::1%'x'"),
        ("HOST_IP", "fe80::1%0123456789abcdef"),
        ("HOST_IP", "fe80::1%"),
        ("FORWARDED_ALLOW_IPS", "fe80::1%a b"),
        ("FORWARDED_ALLOW_IPS", "fe80::%eth0/64"),
        ("RAGFLOW_DEBUGPY_LISTEN", "[fe80::1%a ;b]:5678"),
        ("SUPERVISOR_INET_HTTP_SERVER", "fe80::1%x:9001"),
    ],
)
def test_parsers_refuse(name: str, raw: str) -> None:
    with pytest.raises(ValueError):
        BY_NAME[name].parser.parse(raw)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_refuses_control_characters(setting: Setting) -> None:
    name = setting.name
    for bad in ("a\nb", "1\r", "x\x00", "\x1b[0m", "5\t"):
        with pytest.raises(ConfigError) as caught:
            run({name: bad})
        assert caught.value.problems[0].startswith(f"{name}=")
        assert "control characters" in caught.value.problems[0]


def test_every_problem_is_reported_at_once_naming_value_and_accepted() -> None:
    found = problems(HOST_PORT="99999", WS="many", LOG_TARGET="syslog", DATA_DIR="data")
    assert len(found) == 4
    by_name = {p.split("=", 1)[0]: p for p in found}
    assert "'99999'" in by_name["HOST_PORT"] and "1 to 65535" in by_name["HOST_PORT"]
    assert "'many'" in by_name["WS"] and "0 to 64" in by_name["WS"]
    assert "'syslog'" in by_name["LOG_TARGET"] and "stdout | file" in by_name["LOG_TARGET"]
    assert "absolute path" in by_name["DATA_DIR"]


def test_secret_values_never_appear_in_problems() -> None:
    found = problems(SUPERVISOR_USER="admin", SUPERVISOR_PASSWORD="hunter2 with space")
    assert len(found) == 1
    assert "SUPERVISOR_PASSWORD" in found[0] and "hunter2" not in found[0]


def test_file_variants(tmp_path: object) -> None:
    secrets = {"/s/pw": "s3cret\n", "/s/key": "k-123-from-a-file-0001\n"}

    def read(path: str) -> str:
        if path not in secrets:
            raise OSError(2, "No such file or directory")
        return secrets[path]

    environ = {"SUPERVISOR_USER": "admin", "SUPERVISOR_PASSWORD_FILE": "/s/pw",
               "RAGFLOW_API_KEY_FILE": "/s/key"}  # fmt: skip
    resolved = resolve(environ, {}, {}, HOST, read)
    assert resolved.values["SUPERVISOR_PASSWORD"] == "s3cret"
    assert resolved.values["RAGFLOW_API_KEY"] == "k-123-from-a-file-0001"
    with pytest.raises(ConfigError) as caught:
        resolve({"RAGFLOW_API_KEY_FILE": "/s/missing"}, {}, {}, HOST, read)
    assert caught.value.problems[0].startswith("RAGFLOW_API_KEY_FILE='/s/missing': cannot read")
    with pytest.raises(ConfigError) as caught:
        resolve({"RAGFLOW_API_KEY": "a", "RAGFLOW_API_KEY_FILE": "/s/key"}, {}, {}, HOST, read)
    assert "set only one" in caught.value.problems[0]


def test_cross_setting_problems() -> None:
    assert "set both" in problems(SUPERVISOR_USER="admin")[0]
    found = problems(SUPERVISOR_INET_HTTP_SERVER="127.0.0.1:9001")
    assert found[0].startswith("SUPERVISOR_INET_HTTP_SERVER='127.0.0.1:9001'")
    assert "needs SUPERVISOR_USER" in found[0]
    assert "GUNICORN_WORKER_CLASS=gthread" in problems(GUNICORN_THREADS="4")[0]
    assert (
        run({"GUNICORN_THREADS": "4", "GUNICORN_WORKER_CLASS": "gthread"}).values[
            "GUNICORN_THREADS"
        ]
        == 4
    )


def test_machine_dependent_defaults_must_be_pinned_without_host_facts() -> None:
    unknown = Host(cpu_count=None, python=None, app_dir=None, user=None)
    with pytest.raises(ConfigError) as caught:
        run(host=unknown)
    named = {p.split(":", 1)[0] for p in caught.value.problems}
    assert {"APP_DIR", "PYTHON_BIN", "GUNICORN_WORKERS", "SUPERVISOR_RUN_USER",
            "NGINX_BIN"} <= named  # fmt: skip
    pinned = {"APP_DIR": "/a", "PYTHON_BIN": "/a/py", "GUNICORN_WORKERS": "2",
              "SUPERVISOR_RUN_USER": "app", "NGINX_BIN": "/usr/sbin/nginx"}  # fmt: skip
    assert run(pinned, host=unknown).values["DATA_DIR"] == "/a/data"
    # without the proxy nginx is not needed
    no_proxy = {k: v for k, v in pinned.items() if k != "NGINX_BIN"} | {"PROXY": "none"}
    assert run(no_proxy, host=unknown).values["NGINX_BIN"] is None
    # dev mode never needs the worker count
    dev = {k: v for k, v in pinned.items() if k not in ("GUNICORN_WORKERS", "NGINX_BIN")} | {
        "RAGFLOW_MODE": "dev"
    }
    assert run(dev, host=unknown).values["GUNICORN_WORKERS"] is None


def test_settings_of_the_other_mode_warn_when_set() -> None:
    resolved = run({"RAGFLOW_MODE": "dev", "GUNICORN_WORKERS": "4"})
    assert resolved.warnings == (
        "GUNICORN_WORKERS is set but applies only in production mode; ignored in dev mode",
    )
    assert run({"RAGFLOW_DEBUGPY_LISTEN": "5678"}).warnings[0].startswith("RAGFLOW_DEBUGPY_LISTEN")


def test_unknown_variables_get_a_did_you_mean() -> None:
    warnings = unknown_variable_warnings(
        ["GUNICORN_WORKER", "LOG_TARGT", "PATH", "HOME", "SUPERVISOR_ENABLED",
         "SUPERVISOR_PROCESS_NAME", "GUNICORN_CMD_ARGS", "SUPERVISOR_QWXZ", "SUPERVISOR_USER_FILE"]
    )  # fmt: skip
    assert warnings == [
        "unknown setting GUNICORN_WORKER is ignored; did you mean GUNICORN_WORKERS?",
        "unknown setting LOG_TARGT is ignored; did you mean LOG_TARGET?",
        "unknown setting SUPERVISOR_QWXZ is ignored",
    ]
    assert unknown_variable_warnings(["HOST_PROT"], all_prefixes=True) == [
        "unknown setting HOST_PROT is ignored; did you mean HOST_PORT?"
    ]


def test_env_file_syntax() -> None:
    text = "# comment\n\nHOST_PORT=9000\nexport WS=2\nDATA_DIR=/a=b\nEMPTY=\n"
    assert parse_env_file(text, "x.env") == {
        "HOST_PORT": "9000", "WS": "2", "DATA_DIR": "/a=b", "EMPTY": "",
    }  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        parse_env_file("GOOD=1\nnot a line\n1BAD=2\n", "x.env")
    assert caught.value.problems == (
        "x.env:2: expected KEY=VALUE, got 'not a line'",
        "x.env:3: expected KEY=VALUE, got '1BAD=2'",
    )
