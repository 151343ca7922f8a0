"""Importing api.wsgi (what Gunicorn's preload does before forking) starts no thread, opens
no database file and creates nothing; the first request then opens the database lazily."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = r"""
import json, os, sys, threading

def open_files():
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return found

threads_before = threading.active_count()
import api.wsgi
after_import = {
    "threads": threading.active_count() - threads_before,
    "thread_names": [t.name for t in threading.enumerate()],
    "db_fds": [f for f in open_files() if "ragflow.db" in f],
    "data_dir_exists": os.path.exists(os.environ["DATA_DIR"]),
}
from werkzeug.test import Client
status = Client(api.wsgi.application).get("/v1/system/healthz").status_code
after_request = {"status": status, "db_fds": [f for f in open_files() if "ragflow.db" in f]}
print(json.dumps({"after_import": after_import, "after_request": after_request}))
"""


def _probe(data_dir: Path) -> dict[str, dict[str, object]]:
    env = {**os.environ, "DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    env.pop("RAGFLOW_DEBUGPY_LISTEN", None)
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_import_starts_nothing_and_opens_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    report = _probe(data_dir)
    after_import = report["after_import"]
    assert after_import["threads"] == 0, after_import["thread_names"]
    assert after_import["db_fds"] == []
    assert after_import["data_dir_exists"] is False
    # the probe can see a database fd: after the first request there is one
    assert report["after_request"]["status"] == 200
    assert report["after_request"]["db_fds"]


def test_import_with_an_existing_database_opens_no_fd(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _probe(data_dir)  # creates the database
    assert (data_dir / "ragflow.db").exists()
    report = _probe(data_dir)
    assert report["after_import"]["db_fds"] == []
    assert report["after_import"]["threads"] == 0
