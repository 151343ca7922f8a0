"""The settings contract: every value the renderer accepts for a setting the application reads,
the application accepts with the same meaning.

The renderer's side is a real render (``resolve`` + ``render``, so the shutdown budget and the
filters count); what the programs get is the rendered ``environment=`` line as supervisor's own
functions expand and split it (secrets reach them through the environment, never rendered);
the application's side is api.config, the parse limits and the task settings, each as the
programs load them.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from supervisor.datatypes import dict_of_key_value_pairs
from supervisor.options import expand

from api import config
from api.parsing import limits as parse_limits
from renderer.render import SUPERVISORD_CONF, render
from shared.settings import (
    MODES,
    SETTINGS,
    ConfigError,
    Host,
    Setting,
    Value,
    format_value,
    resolve,
)

ROOT = Path(__file__).resolve().parent.parent
HOST = Host(cpu_count=lambda: 2, python="/usr/bin/python3", app_dir="/srv/app", user="app",
            nginx="/usr/sbin/nginx")  # fmt: skip
APP_SETTINGS = [s for s in SETTINGS if s.app_env]
# every setting the application reads, in every mode it applies to
CASES = [(s, mode) for s in APP_SETTINGS for mode in MODES if mode in s.modes]


def no_secret_files(path: str) -> str:
    raise OSError(2, "No such file or directory")


def program_environment(name: str, raw: str, mode: str) -> tuple[dict[str, str], Value] | None:
    """What a program's environment holds after a render with ``name=raw`` and the renderer's
    value for ``name``; None when the renderer refuses the value."""
    environ = {"RAGFLOW_MODE": mode, name: raw}
    try:
        resolved = resolve(environ, {}, {}, HOST, no_secret_files)
        files = render(resolved, "/srv/app/run")
    except ConfigError:
        return None
    conf = next(f.content for f in files if f.name == SUPERVISORD_CONF)
    line = next(line for line in conf.splitlines() if line.startswith("environment="))
    env = dict_of_key_value_pairs(expand(line.removeprefix("environment="), {}, "environment"))
    if BY_SECRET.get(name):
        env[name] = raw  # passed through the environment (render_config.py --exec), not rendered
    return env, resolved.values[name]


BY_SECRET = {s.name: s.secret for s in SETTINGS}


def assert_app_agrees(setting: Setting, raw: str, mode: str) -> bool:
    """True when the renderer accepted ``raw`` (and then the application agreed)."""
    rendered = program_environment(setting.name, raw, mode)
    if rendered is None:
        return False
    env, value = rendered
    assert config.values(env)[setting.name] == value, (setting.name, raw, env)
    config.load(env)  # every loader the programs run accepts the environment
    config.load_task_settings(env)
    parse_limits.load(env)
    return True


# Candidate texts: arbitrary text, and the shapes the table's parsers accept, with whitespace.
_WORDS = ["production", "dev", "development", "DEV", "text", "json", "JSON", "true", "0", ""]
_SHAPES = st.one_of(
    st.text(max_size=24),
    st.integers(-5, 1 << 41).map(str),
    st.tuples(st.integers(0, 1 << 21), st.sampled_from(["", "KB", "MB", "GB", " kb", "gb"])).map(
        lambda t: f"{t[0]}{t[1]}"
    ),
    st.ip_addresses().map(str),
    st.from_regex(r"/[a-z0-9_./-]{0,20}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,70}", fullmatch=True),
    st.tuples(
        st.one_of(st.ip_addresses(v=4).map(str), st.just("localhost"), st.just("[::1]")),
        st.integers(0, 70000),
    ).map(lambda t: f"{t[0]}:{t[1]}"),
    st.sampled_from(_WORDS),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=14, max_size=40),
)
RAW = st.tuples(_SHAPES, st.sampled_from(["", " ", "\t"])).map(lambda t: t[1] + t[0] + t[1])


def case_id(case: tuple[Setting, str]) -> str:
    return f"{case[0].name}-{case[1]}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=RAW)
def test_every_value_the_renderer_accepts_the_app_accepts_with_the_same_meaning(
    case: tuple[Setting, str], raw: str
) -> None:
    setting, mode = case
    assert_app_agrees(setting, raw, mode)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_the_default_and_its_written_form_reach_the_app_unchanged(
    case: tuple[Setting, str],
) -> None:
    setting, mode = case
    default = setting.default
    if callable(default) or default is None:
        rendered = program_environment("RAGFLOW_MODE", mode, mode)
        assert rendered is not None
        env, _ = rendered
        expected = resolve({"RAGFLOW_MODE": mode}, {}, {}, HOST, no_secret_files)
        assert config.values(env)[setting.name] == expected.values[setting.name]
        return
    assert assert_app_agrees(setting, format_value(default), mode), setting.name


@pytest.mark.parametrize(
    ("raw", "app_value"),
    [("1024", 1024), ("1KB", 1024), ("2 GB", 2 * 1024**3), ("1024GB", 1 << 40)],
)
def test_max_content_length_renders_only_what_the_app_accepts(raw: str, app_value: int) -> None:
    rendered = program_environment("MAX_CONTENT_LENGTH", raw, "production")
    assert rendered is not None
    env, _ = rendered
    assert config.load(env).max_content_length == app_value


@pytest.mark.parametrize("raw", ["512", "1000", "1023", "1025GB", "0"])
def test_max_content_length_the_app_would_refuse_does_not_render(raw: str) -> None:
    assert program_environment("MAX_CONTENT_LENGTH", raw, "production") is None
    with pytest.raises(ConfigError, match=f"MAX_CONTENT_LENGTH={raw!r}: invalid; accepted: "):
        config.load({"MAX_CONTENT_LENGTH": raw})


# A program reading a variable outside the table would be a second, undocumented parser.
_READ = re.compile(r"""(?:(?:environ|env)(?:\.get\(|\[)|getenv\()\s*["']([A-Z][A-Z0-9_]*)["']""")
NOT_SETTINGS = {
    "SUPERVISOR_PROCESS_NAME",  # set by supervisord
    "SUPERVISOR_GROUP_NAME",  # set by supervisord
    "SUPERVISOR_SERVER_URL",  # set by supervisord
    "SUPERVISOR_USERNAME",  # SUPERVISOR_USER, as the metrics program's environment names it
    "RAGFLOW_RELOADER_PID",  # set by the dev server for its own child
    "WERKZEUG_SERVER_FD",  # set by the Werkzeug reloader for its child: the socket it bound
    "PATH_INFO",  # WSGI
    "REQUEST_METHOD",  # WSGI
    "HTTP_X_FORWARDED_FOR",  # WSGI
}


def test_the_programs_read_no_variable_outside_the_table() -> None:
    sources = [*ROOT.glob("api/**/*.py"), *ROOT.glob("supervise/*.py"), *ROOT.glob("shared/*.py")]
    read = {name for path in sources for name in _READ.findall(path.read_text(encoding="utf-8"))}
    assert read, "the pattern finds the reads"
    assert read - NOT_SETTINGS <= {s.name for s in SETTINGS}, read - NOT_SETTINGS


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_both_ends_import_the_table_and_not_each_other() -> None:
    for path in ROOT.glob("shared/*.py"):
        outside = _imports(path) - set(sys.stdlib_module_names) - {"__future__", "shared"}
        assert not outside, f"{path.name} imports {outside}: shared/ is standard library only"
    for part, never in (("api", "renderer"), ("renderer", "api"), ("supervise", "renderer")):
        for path in ROOT.glob(f"{part}/**/*.py"):
            assert never not in _imports(path), f"{path} imports {never}"
