"""A newcomer's first steps, as the README shows them, against the REAL rendered bundle: the
README's key, curl and ragflow-sdk snippets are extracted and run unchanged (only the port
differs: 9380 is never used in tests), and `make run` without a key says how to create one."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StartBundle
from support.rendered_bundle import bundle_environment
from support.script_run import ScriptRun
from support.supervised import APP_DIR, PYTHON

README = APP_DIR / "README.md"
README_PORT = "9380"


def snippet(name: str) -> str:
    """The fenced block right after `<!-- first-steps: NAME -->` in the README."""
    match = re.search(
        rf"<!-- first-steps: {re.escape(name)} -->\n```\w+\n(.*?)\n```", README.read_text(), re.S
    )
    assert match, f"README has no first-steps snippet {name!r}"
    return match.group(1)


def test_readme_first_steps_run_against_a_real_bundle(start_bundle: StartBundle) -> None:
    run = start_bundle(WS="1", GUNICORN_WORKERS="2")
    env = {key: value for key, value in run.env.items() if key != "RAGFLOW_API_KEY"}
    port = str(run.port)
    key_and_curl = f"{snippet('key')}\n{snippet('curl')}\n".replace(README_PORT, port)
    shell = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", key_and_curl + 'printf "\\n%s\\n" "$RAGFLOW_API_KEY"'],
        cwd=APP_DIR, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    answer, key = shell.stdout.rstrip("\n").rsplit("\n", 1)
    created = json.loads(answer)
    print(f"README curl: code {created['code']}, dataset {created['data']['name']!r}")
    assert created["code"] == 0 and created["data"]["name"] == "first-steps-curl"
    assert run.env.get("RAGFLOW_API_KEY") != key  # the created key, not the bundle's own
    sdk = subprocess.run(
        [PYTHON, "-c", snippet("sdk").replace(README_PORT, port)],
        cwd=APP_DIR, env={**env, "RAGFLOW_API_KEY": key}, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    print(f"README ragflow-sdk snippet printed: {sdk.stdout.strip()}")
    assert sdk.returncode == 0, sdk.stderr
    assert "The okapi lives in the Ituri rainforest." in sdk.stdout


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[list[ScriptRun]]:
    runs: list[ScriptRun] = []
    yield runs
    for run in runs:
        run.kill()


def test_make_run_without_a_key_prints_how_to_create_one(
    make_run: list[ScriptRun], tmp_path: Path
) -> None:
    env = bundle_environment(tmp_path, 0, {"WS": "0"})
    del env["RAGFLOW_API_KEY"]
    run = ScriptRun(["make", "--no-print-directory", "run"], env, tmp_path).start()
    make_run.append(run)
    run.wait_running(60)
    hint = [line for line in run.stderr().splitlines() if "create-key" in line]
    print(f"make run without a key: {hint}")
    assert len(hint) == 1, run.stderr()
    assert hint[0].startswith("No API key yet: create one with `")
    assert "-m api.admin create-key`" in hint[0]
