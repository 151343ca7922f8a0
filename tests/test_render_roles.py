"""ROLE: which programs a production bundle runs (all, web, executor), judged by supervisor's own
parser; the combinations that make no sense are refused, every problem at once, exit 2, nothing
written; the database password never reaches a rendered file."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from support.rendered import APP_DIR, parse_supervisord, pinned_environ

from renderer.cli import REFERENCE_HOST, machine_host, main
from renderer.render import stop_budget, stop_plan, unix_sockets
from shared.settings import Value, resolve

PG = "postgresql://fleet:pw-never-rendered@db.internal:5432/ragflow"


def _render(tmp: Path, *flags: str, **overrides: str) -> tuple[int, str, Path]:
    out, err = io.StringIO(), io.StringIO()
    output_dir = tmp / "out"
    code = main([*flags, "--output-dir", str(output_dir)], pinned_environ(tmp, **overrides), out,
                err)  # fmt: skip
    return code, err.getvalue(), output_dir


def _programs(output_dir: Path) -> set[str]:
    processes, unknown = parse_supervisord(output_dir / "supervisord.conf")
    assert unknown == []
    return set(processes)


def test_role_all_is_the_default_and_runs_every_program(tmp_path: Path) -> None:
    code, err, out = _render(tmp_path, WS="2", METRICS_PORT="9381")
    assert code == 0, err
    assert _programs(out) == {"socket_holder_0", "socket_holder_1", "web", "proxy", "metrics",
                              "task_executor_00", "task_executor_01"}  # fmt: skip


def test_role_web_runs_holders_proxy_web_and_metrics_but_no_executor(tmp_path: Path) -> None:
    code, err, out = _render(tmp_path, ROLE="web", DATABASE_URL=PG, METRICS_PORT="9381")
    assert code == 0, err
    assert _programs(out) == {"socket_holder_0", "socket_holder_1", "web", "proxy", "metrics"}
    assert {p.name for p in out.iterdir()} == {"supervisord.conf", "gunicorn.conf.py",
                                               "nginx.conf"}  # fmt: skip


def test_role_executor_runs_only_the_executors_and_metrics(tmp_path: Path) -> None:
    code, err, out = _render(tmp_path, ROLE="executor", DATABASE_URL=PG, WS="3",
                             METRICS_PORT="9381")  # fmt: skip
    assert code == 0, err
    assert _programs(out) == {"metrics", "task_executor_00", "task_executor_01",
                              "task_executor_02"}  # fmt: skip
    # no HTTP port: no gunicorn.conf.py, no nginx.conf
    assert {p.name for p in out.iterdir()} == {"supervisord.conf"}


def test_role_executor_needs_no_nginx_and_no_cpu_count() -> None:
    """GUNICORN_WORKERS and NGINX_BIN have machine-dependent defaults only the web programs use:
    an executor bundle resolves without either fact."""
    environ = {"ROLE": "executor", "DATABASE_URL": PG, "APP_DIR": str(APP_DIR),
               "PYTHON_BIN": "/usr/bin/python3", "SUPERVISOR_RUN_USER": "ragflow"}  # fmt: skip
    resolved = resolve(environ, {}, {}, REFERENCE_HOST, lambda path: "")
    assert resolved.values["GUNICORN_WORKERS"] is None
    assert resolved.values["NGINX_BIN"] is None


def test_stop_plan_and_sockets_follow_the_role(tmp_path: Path) -> None:
    def values(**overrides: str) -> Mapping[str, Value]:
        environ = pinned_environ(tmp_path, DATABASE_URL=PG, **overrides)
        return resolve(environ, {}, {}, machine_host(), lambda path: "").values

    executor = values(ROLE="executor", WS="2", TASK_STOP_TIMEOUT="7")
    assert [s.program for s in stop_plan(executor)] == ["task_executor"]
    assert stop_budget(executor) == 8  # TASK_STOP_TIMEOUT + 1, nothing in sequence
    assert unix_sockets(executor) == [f"{tmp_path}/run/supervisor.sock"]
    web = values(ROLE="web")
    assert [s.program for s in stop_plan(web)] == ["proxy", "web", "socket_holder"]
    assert len(unix_sockets(web)) == 4  # supervisor, two holders, Gunicorn's upstream


def test_the_database_password_never_reaches_a_rendered_file(tmp_path: Path) -> None:
    for role in ("web", "executor"):
        code, err, out = _render(tmp_path / role, ROLE=role, DATABASE_URL=PG, METRICS_PORT="9381")
        assert code == 0, err
        for path in out.iterdir():
            text = path.read_text()
            assert "pw-never-rendered" not in text and "DATABASE_URL=" not in text, path.name
        assert "pw-never-rendered" not in err


REFUSED = {
    "executor-without-executors": (
        {"ROLE": "executor", "WS": "0", "DATABASE_URL": PG},
        (),
        ["ROLE=executor with WS=0: an executor bundle runs only the WS task executors"],
    ),
    "web-on-default-sqlite": (
        {"ROLE": "web"},
        (),
        ["ROLE=web with DATABASE_URL unset (SQLite at DATA_DIR/ragflow.db): a split role "
         "shares one database"],
    ),
    "executor-on-sqlite-url": (
        {"ROLE": "executor", "DATABASE_URL": "sqlite:////srv/ragflow.db"},
        (),
        ["ROLE=executor with DATABASE_URL a SQLite URL"],
    ),
    "web-in-dev-mode": (
        {"ROLE": "web", "DATABASE_URL": PG},
        ("--dev-mode",),
        ["ROLE=web with dev mode: the dev server is one process"],
    ),
    "every-problem-at-once": (
        {"ROLE": "executor", "WS": "0", "RAGFLOW_MODE": "dev"},
        (),
        ["ROLE=executor with dev mode", "ROLE=executor with DATABASE_URL unset",
         "ROLE=executor with WS=0"],
    ),
    "unknown-role": (
        {"ROLE": "worker", "DATABASE_URL": PG},
        (),
        ["ROLE='worker': invalid; accepted: all | web | executor"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", REFUSED)
def test_a_role_that_makes_no_sense_is_refused_with_every_problem(
    tmp_path: Path, case: str
) -> None:
    overrides, flags, problems = REFUSED[case]
    code, err, out = _render(tmp_path, *flags, **overrides)
    assert code == 2, err
    listed = [line for line in err.splitlines() if line.startswith("  - ")]
    assert len(listed) == len(problems), err
    for line, expected in zip(listed, problems, strict=True):
        assert expected in line, err
    assert not out.exists()
    assert "pw-never-rendered" not in err


def test_settings_for_programs_a_role_does_not_run_are_named_in_a_warning(tmp_path: Path) -> None:
    code, err, _ = _render(tmp_path, ROLE="executor", DATABASE_URL=PG, GUNICORN_WORKERS="9",
                           PROXY="none")  # fmt: skip
    assert code == 0, err
    assert "GUNICORN_WORKERS is set but applies only with ROLE=all or web; ignored with " \
        "ROLE=executor" in err  # fmt: skip
    assert "PROXY is set but applies only with ROLE=all or web" in err
    code, err, _ = _render(tmp_path / "web", ROLE="web", DATABASE_URL=PG, WS="4")
    assert code == 0, err
    assert "WS is set but applies only with ROLE=all or executor; ignored with ROLE=web" in err
    code, err, _ = _render(tmp_path / "all", WS="4")
    assert code == 0 and "ROLE" not in err, err


def test_print_config_shows_the_role_and_its_files(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    environ = pinned_environ(tmp_path, ROLE="executor", DATABASE_URL=PG)
    assert main(["--print-config"], environ, out, err) == 0, err.getvalue()
    document = json.loads(out.getvalue())
    assert document["settings"]["ROLE"] == {"value": "executor", "source": "env"}
    assert document["settings"]["DATABASE_URL"]["value"] == "(set, hidden)"
    assert document["files"] == ["supervisord.conf"]
    assert [step["program"] for step in document["stop_budget"]["order"]] == ["task_executor"]


def test_an_executor_bundle_may_use_host_port_for_its_metrics(tmp_path: Path) -> None:
    """It listens on no HOST_PORT, so METRICS_PORT may equal it (ROLE=web may not)."""
    code, err, out = _render(tmp_path / "executor", ROLE="executor", DATABASE_URL=PG,
                             HOST_PORT="9380", METRICS_PORT="9380")  # fmt: skip
    assert code == 0, err
    assert _programs(out) == {"metrics", "task_executor_00"}
    code, err, _ = _render(tmp_path / "web", ROLE="web", DATABASE_URL=PG, HOST_PORT="9380",
                           METRICS_PORT="9380")  # fmt: skip
    assert code == 2 and "METRICS_PORT=9380: the HTTP server already listens" in err, err
