"""Render the real bundle with render_config.py into a tmp dir, for tests of the whole thing."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from support import slowdown
from support.supervised import APP_DIR, PYTHON


def bundle_environment(tmp: Path, port: int, overrides: Mapping[str, str]) -> dict[str, str]:
    """The environment of a test bundle: loopback, free port, every path under tmp."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key in {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}
    }
    env.update(
        {
            "HOST_IP": "127.0.0.1",
            "HOST_PORT": str(port),
            "SUPERVISOR_RUN_DIR": str(tmp / "run"),
            "DATA_DIR": str(tmp / "data"),
            "LOG_DIR": str(tmp / "logs"),
            "GUNICORN_WORKERS": "2",
            "WS": "1",
            "RAGFLOW_API_KEY": "lifecycle-test-key",
        }
    )
    env.update(overrides)
    return slowdown.apply(env)


def render_bundle(env: Mapping[str, str], mode: str = "production") -> Path:
    """Run the real renderer; return the rendered supervisord.conf."""
    run_dir = Path(env["SUPERVISOR_RUN_DIR"])
    for key in ("SUPERVISOR_RUN_DIR", "DATA_DIR", "LOG_DIR"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [PYTHON, "render_config.py", f"--{mode}-mode", "--output-dir", str(run_dir)],
        cwd=APP_DIR, env=dict(env), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(f"render_config.py failed:\n{result.stdout}\n{result.stderr}")
    return run_dir / "supervisord.conf"
