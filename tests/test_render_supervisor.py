"""Rendered supervisord.conf judged by supervisor's own parser: exact programs, commands,
environment and stop settings; no key supervisor does not know; no injection (hypothesis)."""

from __future__ import annotations

import io
import os
import re
import stat
import string
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from supervisor.datatypes import RestartUnconditionally
from support.rendered import expected_argv, parse_supervisord, pinned_environ

from renderer.cli import REFERENCE_DIR, machine_host, main
from renderer.render import app_environment
from shared.settings import (
    SETTINGS,
    ConfigError,
    Resolved,
    format_value,
    parse_env_file,
    resolve,
)

CREATED_DIRS = ("SUPERVISOR_RUN_DIR", "LOG_DIR")  # main creates these: keep them under tmp


def render_to(tmp: Path, environ: dict[str, str], *flags: str) -> tuple[int, str, Path]:
    out, err = io.StringIO(), io.StringIO()
    output_dir = tmp / "out"
    code = main([*flags, "--output-dir", str(output_dir)], environ, out, err)
    return code, err.getvalue(), output_dir


def resolved_for(environ: dict[str, str], *flags: str) -> Resolved:
    modes = [{"--dev-mode": "dev", "--production-mode": "production"}[f] for f in flags]
    flag_values = {"RAGFLOW_MODE": modes[-1]} if modes else {}
    return resolve(environ, {}, flag_values, machine_host(), lambda p: Path(p).read_text())


def assert_judged_by_supervisor(environ: dict[str, str], output_dir: Path, *flags: str) -> None:
    resolved = resolved_for(environ, *flags)
    processes, unknown = parse_supervisord(output_dir / "supervisord.conf")
    assert unknown == []
    expected = expected_argv(resolved.values, output_dir)
    assert {name: p.argv for name, p in processes.items()} == expected
    for process in processes.values():
        assert process.environment == app_environment(resolved)
        assert process.config.directory == resolved.values["APP_DIR"]


VARIANTS = {
    "production-defaults": ({}, ()),
    "dev": ({}, ("--dev-mode",)),
    "dev-from-env": ({"RAGFLOW_MODE": "dev", "RAGFLOW_DEBUGPY_LISTEN": "0.0.0.0:5678"}, ()),
    "file-logs-ws2": ({"LOG_TARGET": "file", "WS": "2", "LOG_FORMAT": "json"}, ()),
    "web-only": ({"WS": "0"}, ()),
    "ipv6-auth": ({"HOST_IP": "::1", "SUPERVISOR_USER": "ops", "SUPERVISOR_PASSWORD": "p%w;#x"},
                  ()),
    "inet-server": ({"SUPERVISOR_INET_HTTP_SERVER": "127.0.0.1:9001", "SUPERVISOR_USER": "ops",
                     "SUPERVISOR_PASSWORD": "secret"}, ()),
    "role-web": ({"ROLE": "web", "DATABASE_URL": "postgresql://u:pw@db:5432/rf"}, ()),
    "role-web-metrics-no-proxy": ({"ROLE": "web", "DATABASE_URL": "postgresql://u:pw@db/rf",
                                   "METRICS_PORT": "9381", "PROXY": "none"}, ()),
    "role-executor": ({"ROLE": "executor", "WS": "3", "DATABASE_URL": "postgres://u:pw@db/rf"},
                      ()),
    "role-executor-metrics": ({"ROLE": "executor", "DATABASE_URL": "postgresql://u:pw@db/rf",
                               "METRICS_PORT": "9381"}, ()),
}  # fmt: skip


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_is_accepted_by_supervisor(tmp_path: Path, variant: str) -> None:
    overrides, flags = VARIANTS[variant]
    environ = pinned_environ(tmp_path, **overrides)
    code, err, output_dir = render_to(tmp_path, environ, *flags)
    assert code == 0, err
    assert_judged_by_supervisor(environ, output_dir, *flags)


def test_production_process_settings(tmp_path: Path) -> None:
    environ = pinned_environ(tmp_path, WS="2")
    code, err, output_dir = render_to(tmp_path, environ)
    assert code == 0, err
    processes, _ = parse_supervisord(output_dir / "supervisord.conf")
    conf = {name: p.config for name, p in processes.items()}
    assert (conf["socket_holder_0"].priority < conf["task_executor_00"].priority
            < conf["web"].priority < conf["proxy"].priority)  # fmt: skip
    assert conf["socket_holder_0"].priority == conf["socket_holder_1"].priority
    assert conf["web"].stopwaitsecs == 22  # GUNICORN_GRACEFUL_TIMEOUT 20 + 2 (restart web)
    assert conf["proxy"].stopwaitsecs == 22  # nginx's worker_shutdown_timeout 20 + 2
    assert conf["task_executor_01"].stopwaitsecs == 6  # TASK_STOP_TIMEOUT 5 + 1
    assert conf["socket_holder_1"].stopwaitsecs == 2
    for name in ("web", "task_executor_00", "task_executor_01"):
        assert conf[name].stopasgroup and conf[name].killasgroup
        assert conf[name].stopsignal == 15
    assert conf["proxy"].stopsignal == 3  # nginx's graceful stop: SIGQUIT
    assert conf["proxy"].killasgroup
    assert all(c.autorestart is RestartUnconditionally for c in conf.values())
    assert conf["web"].stdout_logfile == "/dev/stdout"
    assert conf["web"].stdout_logfile_maxbytes == 0


def test_file_target_logs_per_process(tmp_path: Path) -> None:
    environ = pinned_environ(tmp_path, WS="2", LOG_TARGET="file", LOG_MAX_BYTES="1MB",
                             LOG_BACKUPS="2")  # fmt: skip
    code, err, output_dir = render_to(tmp_path, environ)
    assert code == 0, err
    processes, _ = parse_supervisord(output_dir / "supervisord.conf")
    logs = tmp_path / "logs"
    for name, process in processes.items():
        assert process.config.stdout_logfile == str(logs / f"{name}.log")
        assert process.config.stderr_logfile == str(logs / f"{name}.err.log")
        assert process.config.stdout_logfile_maxbytes == 1024**2
        assert process.config.stdout_logfile_backups == 2


def test_supervisor_sections_socket_and_credentials(tmp_path: Path) -> None:
    environ = pinned_environ(tmp_path, SUPERVISOR_USER="ops", SUPERVISOR_PASSWORD="p%w;#x")
    code, err, output_dir = render_to(tmp_path, environ)
    assert code == 0, err
    conf_path = output_dir / "supervisord.conf"
    assert stat.S_IMODE(conf_path.stat().st_mode) == 0o600  # it holds the password
    from supervisor.options import ClientOptions, ServerOptions

    server = ServerOptions()
    server.realize(args=["-c", str(conf_path)])
    (unix,) = server.server_configs
    assert unix["file"] == str(tmp_path / "run" / "supervisor.sock")
    assert unix["chmod"] == 0o700
    assert (unix["username"], unix["password"]) == ("ops", "p%w;#x")
    assert server.nodaemon is True
    assert server.pidfile == str(tmp_path / "run" / "supervisord.pid")
    client = ClientOptions()
    client.realize(args=["-c", str(conf_path)])
    assert client.serverurl == f"unix://{tmp_path / 'run' / 'supervisor.sock'}"
    assert (client.username, client.password) == ("ops", "p%w;#x")


def test_no_password_means_a_group_readable_conf_without_credentials(tmp_path: Path) -> None:
    code, err, output_dir = render_to(tmp_path, pinned_environ(tmp_path))
    assert code == 0, err
    text = (output_dir / "supervisord.conf").read_text()
    assert "\npassword=" not in text and "\nusername=" not in text
    assert "[inet_http_server]" not in text
    assert stat.S_IMODE((output_dir / "supervisord.conf").stat().st_mode) == 0o640
    assert stat.S_IMODE((output_dir / "gunicorn.conf.py").stat().st_mode) == 0o640


def test_misspelt_key_is_detected_by_the_key_check(tmp_path: Path) -> None:
    code, err, output_dir = render_to(tmp_path, pinned_environ(tmp_path))
    assert code == 0, err
    conf = output_dir / "supervisord.conf"
    conf.write_text(conf.read_text().replace("stopwaitsecs=22", "stopwiatsecs=22", 1))
    _, unknown = parse_supervisord(conf)
    assert unknown == ["[program:web] stopwiatsecs"]


@pytest.mark.parametrize("env_file", sorted(REFERENCE_DIR.glob("*.env")), ids=lambda p: p.name)
def test_reference_inputs_render_configs_supervisor_accepts(tmp_path: Path, env_file: Path) -> None:
    # The environment overrides the env file: move the paths into tmp and use this machine's user.
    environ = {k: v for k, v in pinned_environ(tmp_path).items() if k != "GUNICORN_WORKERS"}
    code, err, output_dir = render_to(tmp_path, environ, "--env-file", str(env_file))
    assert code == 0, err
    processes, unknown = parse_supervisord(output_dir / "supervisord.conf")
    assert unknown == []
    role = parse_env_file(env_file.read_text(), env_file.name).get("ROLE", "all")
    assert ("web" in processes) is (role != "executor")


# --- no injection: arbitrary strings into every setting --------------------------------------

TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("%$;#'\"[]\n\r\t\x00 =,:/\\`(){}*?~!&|<>") + list(string.digits)),
        st.characters(codec="utf-8"),
    ),
    max_size=40,
)


# Settings that only render together with a partner.
CREDENTIALS = {"SUPERVISOR_USER": "ops", "SUPERVISOR_PASSWORD": "secret"}
PARTNERS = {"SUPERVISOR_USER": CREDENTIALS, "SUPERVISOR_PASSWORD": CREDENTIALS,
            "SUPERVISOR_INET_HTTP_SERVER": CREDENTIALS, "GUNICORN_THREADS":
            {"GUNICORN_WORKER_CLASS": "gthread"}}  # fmt: skip


def _check_render(setting: str, value: str, flags: tuple[str, ...]) -> int:
    """Render one value; exit 2 must name the setting, exit 0 must parse back exactly."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        if setting in CREATED_DIRS:
            value = f"{tmp_path}/{value}"
        environ = pinned_environ(tmp_path, **{**PARTNERS.get(setting, {}), setting: value})
        code, err, output_dir = render_to(tmp_path, environ, *flags)
        assert "Traceback" not in err
        if code == 2:
            assert re.search(rf"^  - .*\b{setting}\b", err, re.MULTILINE), err
            assert not output_dir.exists() or not any(output_dir.iterdir())
            return code
        assert code == 0, err
        if setting == "RAGFLOW_API_KEY":  # a pass-through secret leaves no trace in the files
            with_key = {p.name: p.read_text() for p in output_dir.iterdir()}
            without = {k: v for k, v in environ.items() if k != setting}
            assert render_to(tmp_path, without, *flags)[0] == 0
            assert {p.name: p.read_text() for p in output_dir.iterdir()} == with_key
        try:
            assert_judged_by_supervisor(environ, output_dir, *flags)
        except ConfigError as error:  # resolved_for disagrees with main: a bug
            raise AssertionError(error.problems) from error
        return code


# Valid-looking starting points per setting, so that mutations reach the rendering branch;
# IPv6 addresses so that a scope id ('%' and whatever follows) reaches every address setting.
IPV6_SEEDS = ["fe80::1", "[fe80::1", "fe80::1%eth0"]
SEEDS = {
    s.name: (
        [format_value(s.default)]
        if not callable(s.default) and s.default is not None
        else ["/srv/x", "1", "127.0.0.1", "ops", "secret-key-0123456789", "5678", "127.0.0.1:9001"]
    )
    + IPV6_SEEDS
    for s in SETTINGS
}
# What each consumer of a rendered value treats specially: ini inline comments (' ;', ' #'),
# supervisor's %-expansion, line breaks, quotes, shell metacharacters, scope ids.
HOSTILE = [" ;", " #", ";", "#", "%", "%%", "%(ENV_HOME)s", "%(here)s", "\n", "\r\n", "'", '"',
           "$(id)", "`id`", "$HOME", "&&", "|", ">", "\\", " ", "\t", "=", ",", "%eth0",
           "%a ;b", "%a#b", "\x00", "\u202e"]  # fmt: skip
HOSTILE_TAIL = st.tuples(
    st.lists(st.sampled_from(HOSTILE), min_size=1, max_size=3).map("".join),
    st.sampled_from(["", "x", "eth0", "]:5678"]),
).map("".join)


def value_for(setting: str) -> st.SearchStrategy[str]:
    seed = st.sampled_from(SEEDS[setting])
    return st.one_of(TEXT, seed, st.tuples(seed, TEXT).map("".join),
                     st.tuples(TEXT, seed).map("".join),
                     st.tuples(seed, HOSTILE_TAIL).map("".join))  # fmt: skip


@pytest.mark.parametrize("setting", [s.name for s in SETTINGS], ids=str)
def test_every_value_with_every_hostile_character_renders_exactly_or_is_refused(
    setting: str,
) -> None:
    """Each setting's own seed and an IPv6 seed, followed by each hostile fragment: exit 2
    naming the setting, or a file that supervisor's own parser reads back exactly."""
    codes = [
        _check_render(setting, value, ())
        for seed in (SEEDS[setting][0], "fe80::1")
        for fragment in HOSTILE
        for value in (seed + fragment, seed + fragment + "x")
    ]
    assert set(codes) <= {0, 2}


@pytest.mark.parametrize("setting", [s.name for s in SETTINGS], ids=str)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), dev=st.booleans())
def test_arbitrary_value_is_rendered_exactly_or_refused(setting: str, data: st.DataObject,
                                                        dev: bool) -> None:  # fmt: skip
    value = data.draw(value_for(setting), label="value")
    event(f"exit {_check_render(setting, value, ('--dev-mode',) if dev else ())}")


@settings(max_examples=40, deadline=None)
@given(assignments=st.dictionaries(st.sampled_from([s.name for s in SETTINGS]), TEXT, max_size=6))
def test_many_arbitrary_values_all_problems_named(assignments: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        values: dict[str, Any] = {
            k: (f"{tmp_path}/{v}" if k in CREATED_DIRS else v) for k, v in assignments.items()
        }
        environ = pinned_environ(tmp_path, **values)
        code, err, output_dir = render_to(tmp_path, environ)
        assert "Traceback" not in err
        assert code in (0, 2), err
        if code == 2:
            problem_lines = [line for line in err.splitlines() if line.startswith("  - ")]
            assert problem_lines
            known = {s.name for s in SETTINGS}
            for line in problem_lines:
                named = line[4:].split("=", 1)[0].split(":", 1)[0].split(" ", 1)[0]
                assert named.removesuffix("_FILE") in known | {"--output-dir"}, line
            assert not output_dir.exists() or not any(output_dir.iterdir())
        else:
            assert_judged_by_supervisor(environ, output_dir)


def test_hypothesis_found_cases_stay_fixed(tmp_path: Path) -> None:
    """Named regressions: values that must be refused (and name their variable)."""
    for setting, value in [
        ("HOST_IP", "0.0.0.0\n[program:evil]\ncommand=/bin/sh"),
        ("DATA_DIR", "/x\ncommand=/bin/sh"),
        ("PYTHON_BIN", "/bin/sh -c reboot"),
        ("SUPERVISOR_PASSWORD", "a ;comment"),
        ("LOG_DIR", f"{tmp_path}/%(ENV_HOME)s x"),
        ("HOST_IP", "fe80::1%a ;b"),  # rendered with exit 0 once; supervisord then failed
        ("FORWARDED_ALLOW_IPS", "fe80::1%a #b"),
    ]:
        environ = pinned_environ(tmp_path, **{setting: value}, SUPERVISOR_USER="ops")
        code, err, output_dir = render_to(tmp_path, environ)
        assert code == 2 and f"  - {setting}=" in err, (setting, err)
        assert not output_dir.exists()
    # '%' in a path is escaped, not refused: supervisor reads it back literally
    environ = pinned_environ(tmp_path, DATA_DIR="/srv/100%(ENV_HOME)s")
    code, err, output_dir = render_to(tmp_path, environ)
    assert code == 0, err
    processes, _ = parse_supervisord(output_dir / "supervisord.conf")
    assert processes["web"].environment["DATA_DIR"] == "/srv/100%(ENV_HOME)s"
    assert os.path.exists(output_dir / "gunicorn.conf.py")
