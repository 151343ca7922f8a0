"""The renderer's side of the metrics: the `metrics` program, its directory, its stop, its port."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.rendered import pinned_environ

from renderer.cli import machine_host
from renderer.render import app_environment, stop_budget, stop_plan
from shared.settings import ConfigError, Resolved, resolve
from supervise.launcher import JsonLogLine, reset_metrics_dir


def resolved(tmp: Path, **settings: str) -> Resolved:
    environ = pinned_environ(tmp, **settings)
    return resolve(environ, {}, {}, machine_host(), lambda p: Path(p).read_text())


def test_metrics_off_by_default_and_on_with_a_port(tmp_path: Path) -> None:
    off = resolved(tmp_path)
    assert "PROMETHEUS_MULTIPROC_DIR" not in app_environment(off)
    assert "metrics" not in {step.program for step in stop_plan(off.values)}
    on = resolved(tmp_path, METRICS_PORT="9381")
    assert app_environment(on)["PROMETHEUS_MULTIPROC_DIR"] == f"{tmp_path}/run/metrics"
    step = next(s for s in stop_plan(on.values) if s.program == "metrics")
    assert step.at_once  # stopped with the holders when the shutdown starts: no extra budget
    assert stop_budget(on.values) == stop_budget(off.values)


def test_metrics_port_on_the_http_port_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        resolved(tmp_path, HOST_PORT="9400", METRICS_PORT="9400")
    assert "METRICS_PORT=9400" in str(error.value) and "HOST_PORT" in str(error.value)


def test_both_ports_0_are_two_free_ports_not_a_conflict(tmp_path: Path) -> None:
    both = resolved(tmp_path, HOST_PORT="0", METRICS_PORT="0")
    assert (both.values["HOST_PORT"], both.values["METRICS_PORT"]) == (0, 0)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("GUNICORN_WORKER_MAX_MEMORY", "1MB"),
        ("EXECUTOR_MAX_MEMORY", "12"),
        ("METRICS_PORT", "65536"),
    ],
)
def test_out_of_range_values_are_refused_naming_what_is_accepted(
    tmp_path: Path, name: str, raw: str
) -> None:
    with pytest.raises(ConfigError) as error:
        resolved(tmp_path, **{name: raw})
    assert f"{name}={raw!r}: invalid; accepted:" in str(error.value)


def test_memory_limits_reach_the_programs_as_byte_counts(tmp_path: Path) -> None:
    env = app_environment(
        resolved(tmp_path, GUNICORN_WORKER_MAX_MEMORY="512MB", EXECUTOR_MAX_MEMORY="1GB")
    )
    assert env["GUNICORN_WORKER_MAX_MEMORY"] == str(512 * 1024**2)
    assert env["EXECUTOR_MAX_MEMORY"] == str(1024**3)


def test_the_launcher_empties_the_metrics_directory(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"old")
    reset_metrics_dir(str(directory), None, None)
    assert list(directory.iterdir()) == []
    reset_metrics_dir(str(tmp_path / "new"), None, None)
    assert (tmp_path / "new").is_dir()


def test_supervisord_json_line_has_the_shared_keys() -> None:
    import json

    line = JsonLogLine("json") % {"levelname": "WARN", "message": "exited: web", "asctime": "x"}
    record = json.loads(line)
    assert record["level"] == "WARNING" and record["program"] == "supervisord"
    assert record["message"] == "exited: web" and line.endswith("\n")
