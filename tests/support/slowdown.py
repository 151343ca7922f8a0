"""Tests only: slow parsing down in real processes (a task stays mid-flight long enough to be
stopped, killed or handed back). See slow_sections/sitecustomize.py."""

from __future__ import annotations

import os
from pathlib import Path

HOOK_DIR = Path(__file__).resolve().parent / "slow_sections"
DELAY = "RAGFLOW_TEST_SECTION_DELAY"  # seconds every parser sleeps after each section


def apply(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the hook first on PYTHONPATH when it sets a delay (unchanged otherwise)."""
    if float(env.get(DELAY, "0") or 0) <= 0:
        return env
    rest = env.get("PYTHONPATH", "")
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(HOOK_DIR), rest]))}
