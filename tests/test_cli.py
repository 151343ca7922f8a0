"""render_config.py's shell: exit codes, messages, --print-config, --explain, --check, docs,
atomic writes, --exec."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.rendered import APP_DIR, pinned_environ

from renderer.cli import (
    DOCS_FILE,
    REFERENCE_DIR,
    ROOT,
    drift,
    launcher_argv,
    main,
    reference_outputs,
    run_user_problem,
    write_atomically,
)
from renderer.explain import settings_markdown
from shared.settings import SETTINGS


def call(argv: list[str], environ: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, environ, out, err)
    return code, out.getvalue(), err.getvalue()


def test_invalid_settings_exit_2_list_every_problem_and_write_nothing(tmp_path: Path) -> None:
    environ = pinned_environ(tmp_path, HOST_PORT="99999", WS="-1", LOG_FORMAT="xml",
                             GUNICORN_PRELOAD="perhaps")  # fmt: skip
    code, out, err = call(["--output-dir", str(tmp_path / "out")], environ)
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    assert "4 problems); nothing was written" in err
    assert "  - HOST_PORT='99999': invalid; accepted: a port from 1 to 65535" in err
    assert "  - WS='-1': invalid; accepted: an integer from 0 to 64" in err
    assert "  - LOG_FORMAT='xml': invalid; accepted: text | json" in err
    assert "  - GUNICORN_PRELOAD='perhaps'" in err
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "run").exists()


def test_invalid_value_does_not_replace_existing_files(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    assert call(["--output-dir", str(out_dir)], pinned_environ(tmp_path))[0] == 0
    before = {p.name: p.read_text() for p in out_dir.iterdir()}
    code, _, _ = call(["--output-dir", str(out_dir)], pinned_environ(tmp_path, WS="x"))
    assert code == 2
    assert {p.name: p.read_text() for p in out_dir.iterdir()} == before


def test_shutdown_budget_is_refused_when_over_the_grace_period(tmp_path: Path) -> None:
    environ = pinned_environ(tmp_path, GUNICORN_GRACEFUL_TIMEOUT="30")
    code, _, err = call(["--output-dir", str(tmp_path / "out")], environ)
    assert code == 2
    assert ("STOP_GRACE_SECONDS=30: the worst-case shutdown takes 35 s (proxy 32 + web 3; "
            "alongside: task_executor 6, socket_holder 2)") in err  # fmt: skip
    environ["STOP_GRACE_SECONDS"] = "35"
    assert call(["--output-dir", str(tmp_path / "out")], environ)[0] == 0
    # Without the proxy web drains the requests itself.
    environ.update(PROXY="none", STOP_GRACE_SECONDS="30")
    code, _, err = call(["--output-dir", str(tmp_path / "out2")], environ)
    assert code == 2
    assert ("the worst-case shutdown takes 32 s (web 32; alongside: task_executor 6, "
            "socket_holder 2)") in err  # fmt: skip


def test_print_config_shows_values_sources_and_budget(tmp_path: Path) -> None:
    env_file = tmp_path / "site.env"
    env_file.write_text("WS=3\nHOST_PORT=8000\n")
    environ = pinned_environ(tmp_path, HOST_PORT="9001", SUPERVISOR_USER="ops",
                             SUPERVISOR_PASSWORD="hunter2")  # fmt: skip
    code, out, err = call(["--print-config", "--production-mode", "--env-file", str(env_file),
                           "--output-dir", str(tmp_path / "out")], environ)  # fmt: skip
    assert code == 0, err
    document = json.loads(out)
    settings = document["settings"]
    assert settings["RAGFLOW_MODE"] == {"value": "production", "source": "flag"}
    assert settings["HOST_PORT"] == {"value": 9001, "source": "env"}
    assert settings["WS"] == {"value": 3, "source": "env-file"}
    assert settings["GUNICORN_TIMEOUT"] == {"value": 300, "source": "default"}
    assert settings["SUPERVISOR_PASSWORD"] == {"value": "(set, hidden)", "source": "env"}
    assert "hunter2" not in out
    assert set(settings) == {s.name for s in SETTINGS}
    assert document["stop_budget"] == {
        "total_seconds": 25,  # proxy 22 + web 3; the others alongside
        "limit_seconds": 30,
        "order": [
            {"program": "proxy", "priority": 20, "stopwaitsecs": 22, "at_once": False},
            {"program": "web", "priority": 10, "stopwaitsecs": 3, "at_once": False},
            {"program": "task_executor", "priority": 5, "stopwaitsecs": 6, "at_once": True},
            {"program": "socket_holder", "priority": 1, "stopwaitsecs": 2, "at_once": True},
        ],
    }
    assert document["files"] == ["supervisord.conf", "gunicorn.conf.py", "nginx.conf"]
    assert not (tmp_path / "out").exists()  # --print-config writes nothing


def test_unknown_variables_warn_with_did_you_mean(tmp_path: Path) -> None:
    environ = pinned_environ(tmp_path, GUNICORN_WORKER="4", SUPERVISOR_ENABLED="1",
                             GUNICORN_CMD_ARGS="--workers 2")  # fmt: skip
    code, _, err = call(["--print-config"], environ)
    assert code == 0
    assert err == (
        "render_config.py: warning: unknown setting GUNICORN_WORKER is ignored; "
        "did you mean GUNICORN_WORKERS?\n"
    )


def test_env_file_problems_and_unreadable_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text("WS=2\nthis is not a setting\n")
    code, _, err = call(["--env-file", str(env_file), "--print-config"], pinned_environ(tmp_path))
    assert code == 2
    assert f"  - {env_file}:2: expected KEY=VALUE, got 'this is not a setting'" in err
    code, _, err = call(["--env-file", str(tmp_path / "missing.env")], pinned_environ(tmp_path))
    assert code == 2 and "--env-file" in err and "Traceback" not in err


def test_unusable_run_user_is_refused(tmp_path: Path) -> None:
    environ = pinned_environ(tmp_path, SUPERVISOR_RUN_USER="no-such-user-xyz")
    code, _, err = call(["--print-config"], environ)
    assert code == 2 and "SUPERVISOR_RUN_USER='no-such-user-xyz': no such user" in err
    assert run_user_problem("root", 0) is None
    assert run_user_problem("0", 1000) is not None  # a non-root supervisord cannot become root


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    code, _, _ = call(["--dev-mode", "--production-mode"], {})
    assert code == 2
    assert call(["--help"], {})[0] == 0


def test_explain_lists_every_setting_with_default_and_help() -> None:
    code, out, _ = call(["--explain"], {})
    assert code == 0
    for setting in SETTINGS:
        assert f"\n{setting.name}" in f"\n{out}"
        assert setting.help in out
    assert "default: 2 x CPUs" not in out  # computed defaults are described, not evaluated
    assert "default: WEB_CONCURRENCY, else 2 x CPUs + 1" in out


def test_docs_settings_md_is_generated_from_the_table() -> None:
    assert DOCS_FILE.read_text() == settings_markdown(), (
        "docs/settings.md is stale: run `python render_config.py --update-reference`"
    )
    assert call(["--explain", "markdown"], {})[1] == settings_markdown()
    for setting in SETTINGS:
        assert f"| `{setting.name}`" in settings_markdown()


def test_check_passes_on_the_committed_tree() -> None:
    code, out, _ = call(["--check"], {})
    assert code == 0, out
    result = subprocess.run([sys.executable, "render_config.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_reference_renders_do_not_depend_on_the_machine() -> None:
    env_texts = {p.name: p.read_text() for p in REFERENCE_DIR.glob("*.env")}
    outputs = reference_outputs(env_texts)
    assert {"deploy/supervisor/production.supervisord.conf",
            "deploy/supervisor/production.gunicorn.conf.py",
            "deploy/supervisor/dev.supervisord.conf",
            "docs/settings.md"} <= set(outputs)  # fmt: skip
    for name, content in outputs.items():
        assert str(ROOT) not in content, name
        assert sys.executable not in content, name
    # an unpinned machine fact is an error, not a silent machine-dependent render
    unpinned = {"x.env": "APP_DIR=/app\nPYTHON_BIN=/app/py\nSUPERVISOR_RUN_USER=app\n"}
    with pytest.raises(Exception) as caught:
        reference_outputs(unpinned)
    assert "deploy/supervisor/x.env: GUNICORN_WORKERS: no value" in str(caught.value)


def test_drift_is_a_unified_diff() -> None:
    env_texts = {p.name: p.read_text() for p in REFERENCE_DIR.glob("*.env")}
    expected = reference_outputs(env_texts)
    committed: dict[str, str | None] = {name: (ROOT / name).read_text() for name in expected}
    assert drift(expected, committed) == ""
    name = "deploy/supervisor/production.supervisord.conf"
    committed[name] = str(committed[name]).replace("stopwaitsecs=22", "stopwaitsecs=99")
    diff = drift(expected, committed)
    assert f"--- a/{name}\n+++ b/{name}\n" in diff
    assert "-stopwaitsecs=99\n+stopwaitsecs=22\n" in diff
    committed[name] = None
    assert "--- /dev/null" in drift(expected, committed)


def test_update_reference_then_check_in_a_copy(tmp_path: Path) -> None:
    """--update-reference and --check on a copy of the tree (the real tree stays untouched)."""
    copy = tmp_path / "tree"
    copy.mkdir()
    shutil.copy2(ROOT / "render_config.py", copy)
    for part in ("renderer", "shared", "deploy", "docs"):
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    stale = copy / "deploy/supervisor/production.supervisord.conf"
    stale.write_text(stale.read_text().replace("stopwaitsecs=22", "stopwaitsecs=99"))
    check = [sys.executable, "render_config.py", "--check"]
    result = subprocess.run(check, cwd=copy, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "-stopwaitsecs=99\n+stopwaitsecs=22" in result.stdout
    assert "--update-reference" in result.stdout
    update = [sys.executable, "render_config.py", "--update-reference"]
    assert subprocess.run(update, cwd=copy, capture_output=True, timeout=60).returncode == 0
    assert subprocess.run(check, cwd=copy, capture_output=True, timeout=60).returncode == 0


def test_write_atomically_leaves_no_temporaries_and_sets_modes(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("old")
    write_atomically(tmp_path, [("a.conf", "new", 0o600), ("b.py", "x = 1\n", 0o644)])
    assert (tmp_path / "a.conf").read_text() == "new"
    assert (tmp_path / "a.conf").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.conf", "b.py"]


def test_unwritable_output_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = call(["--output-dir", str(blocker / "sub")], pinned_environ(tmp_path))
    assert code == 2 and "cannot write the configuration" in err and "Traceback" not in err


def test_exec_argv() -> None:
    assert launcher_argv("/app/.venv/bin/python", "/run/ragflow/supervisord.conf") == [
        "/app/.venv/bin/python", "-m", "supervise.launcher", "-c", "/run/ragflow/supervisord.conf",
    ]  # fmt: skip


def test_render_config_shim_runs_without_traceback(tmp_path: Path) -> None:
    environ = {**pinned_environ(tmp_path, HOST_PORT="65536"), "PATH": os.environ["PATH"]}
    result = subprocess.run([sys.executable, "render_config.py", "--print-config"], cwd=APP_DIR,
                            env=environ, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("render_config.py: error:")
    assert "Traceback" not in result.stderr


def test_run_dir_too_long_for_its_unix_sockets_is_refused(tmp_path: Path) -> None:
    run_dir = "/srv/" + "r" * 95  # + "/supervisor.sock" = 116 bytes
    environ = pinned_environ(tmp_path, SUPERVISOR_RUN_DIR=run_dir)
    code, _, err = call(["--output-dir", str(tmp_path / "out")], environ)
    assert code == 2
    assert (f"  - SUPERVISOR_RUN_DIR={run_dir!r}: too long for the unix sockets in it "
            f"({run_dir}/supervisor.sock is 116 bytes; at most 107)") in err  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_gunicorn_cmd_args_is_a_setting_and_its_graceful_timeout_counts_in_the_budget(
    tmp_path: Path,
) -> None:
    environ = pinned_environ(tmp_path, GUNICORN_CMD_ARGS="--graceful-timeout=12 --workers 3")
    code, out, err = call(["--print-config"], environ)
    assert code == 0, err
    document = json.loads(out)
    settings = document["settings"]
    assert settings["GUNICORN_CMD_ARGS"] == {
        "value": "--graceful-timeout=12 --workers 3",
        "source": "env",
    }
    assert settings["GUNICORN_GRACEFUL_TIMEOUT"]["value"] == 12
    web_or_proxy = document["stop_budget"]["order"][0]
    assert web_or_proxy["stopwaitsecs"] == 12 + 2  # the drain Gunicorn gets, + 2 s

    too_long = pinned_environ(
        tmp_path, GUNICORN_CMD_ARGS="--graceful-timeout 60", STOP_GRACE_SECONDS="30"
    )
    code, out, err = call(["--print-config"], too_long)
    assert code == 2 and out == ""
    assert "the worst-case shutdown takes" in err
    assert "lower the --graceful-timeout in GUNICORN_CMD_ARGS" in err


@pytest.mark.parametrize(
    ("args", "extra", "expected"),
    [
        ("--graceful-timeout 25", {"GUNICORN_GRACEFUL_TIMEOUT": "10"},
         "GUNICORN_GRACEFUL_TIMEOUT=10 and GUNICORN_CMD_ARGS' --graceful-timeout 25 disagree "
         "(Gunicorn would use 25); set only one of them"),
        ("--graceful-timeout 'x", {}, "GUNICORN_CMD_ARGS=\"--graceful-timeout 'x\": invalid; "
         "accepted: Gunicorn command-line options as shell words"),
        ("--graceful-timeout 0", {}, "GUNICORN_CMD_ARGS='--graceful-timeout 0': invalid"),
        ("--graceful-timeout", {}, "GUNICORN_CMD_ARGS='--graceful-timeout': invalid"),
    ],
)  # fmt: skip
def test_gunicorn_cmd_args_errors(
    tmp_path: Path, args: str, extra: dict[str, str], expected: str
) -> None:
    code, out, err = call(
        ["--print-config"], pinned_environ(tmp_path, GUNICORN_CMD_ARGS=args, **extra)
    )
    assert code == 2 and out == ""
    assert expected in err, err
