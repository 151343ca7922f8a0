"""Dev mode: the real Werkzeug dev server (``python -m api.ragflow_server --debug``,
reloader + debugger) runs the executor loop in a thread of its serving process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support.executors import ROOT, chunk_rows, doc_rows, executor_env, sqlite_conn
from support.ports import port_from_file
from support.waiting import wait_for

from api import storage

KEY = "dev-mode-test-key-0001"


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    data_dir = tmp_path / "data"
    env = executor_env(
        data_dir,
        HOST_IP="127.0.0.1",
        HOST_PORT="0",
        RAGFLOW_API_KEY=KEY,
        RAGFLOW_MODE="development",
        RAGFLOW_TEST_SECTION_DELAY="0.2",
        TASK_STOP_TIMEOUT="1",
    )
    port_file = tmp_path / "http.port"
    with (tmp_path / "dev.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.ragflow_server", "--debug", "--port-file", str(port_file)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port_from_file(port_file, 30, lambda: proc.poll() is None)}"
        wait_for(lambda: _ping(base), 30, "the dev server")
        yield proc, base, data_dir
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _ping(base: str) -> bool:
    try:
        return requests.get(f"{base}/v1/system/ping", timeout=2).text == "pong"
    except requests.RequestException:
        return False


def _api(method: str, url: str, **kwargs: Any) -> Any:
    response = requests.request(
        method, url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10, **kwargs
    )
    body = response.json()
    assert body["code"] == 0, body
    return body.get("data")


def test_dev_server_parses_in_process_and_stops_cleanly_mid_task(
    dev_server: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    proc, base, data_dir = dev_server
    dataset = _api("POST", f"{base}/api/v1/datasets", json={"name": "dev"})
    assert isinstance(dataset, dict)
    api = f"{base}/api/v1/datasets/{dataset['id']}"
    quick = b"one line\nanother line"
    slow = "\n".join(f"slow line {i}" for i in range(200)).encode()
    docs = _api("POST", f"{api}/documents", files=[("file", ("quick.txt", quick))])
    assert isinstance(docs, list)
    quick_id = docs[0]["id"]
    _api("POST", f"{api}/chunks", json={"document_ids": [quick_id]})
    wait_for(
        lambda: doc_rows(data_dir, [quick_id])[quick_id]["run"] == "3", 30, "the quick document"
    )
    assert [c["content"] for c in chunk_rows(data_dir, quick_id)] == ["one line\nanother line"]

    docs = _api("POST", f"{api}/documents", files=[("file", ("slow.txt", slow))])
    assert isinstance(docs, list)
    slow_id = docs[0]["id"]
    _api("POST", f"{api}/chunks", json={"document_ids": [slow_id]})
    heartbeats = storage.open_backend(data_dir).heartbeats
    wait_for(
        lambda: doc_rows(data_dir, [slow_id])[slow_id]["progress"] > 0.1,
        30,
        "the slow document mid-flight",
    )
    executor = heartbeats.executors()[0]
    assert executor["state"] == "busy" and executor["consumer"] == "test_0"
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)  # what supervisord's stopasgroup does
    assert proc.wait(10) == 0
    assert time.monotonic() - sent < 4
    conn = sqlite_conn(data_dir)
    task = conn.execute("SELECT * FROM tasks WHERE doc_id = ?", (slow_id,)).fetchone()
    assert (task["state"], task["lease_owner"]) == ("queued", None)  # handed back
    assert heartbeats.executors()[0]["state"] == "stopped"


def test_a_term_to_the_reloader_parent_alone_reaches_the_serving_child(
    dev_server: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    proc, _, data_dir = dev_server
    heartbeats = storage.open_backend(data_dir).heartbeats
    child = wait_for(lambda: heartbeats.executors(), 30, "the in-process executor")[0]
    assert child["pid"] != proc.pid  # the executor lives in the serving child
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert heartbeats.executors()[0]["state"] == "stopped"
    assert not psutil_exists(int(child["pid"]))


def psutil_exists(pid: int) -> bool:
    import psutil

    return bool(psutil.pid_exists(pid)) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


def test_a_reload_stops_the_in_process_executor_cleanly(tmp_path: Path) -> None:
    """A source change makes the reloader replace the serving child; the old child's
    executor stops (state ``stopped``) before the new one starts. Runs on a copy of
    api/ so that touching a file disturbs no other test."""
    import shutil

    root = tmp_path / "app"
    for part in ("api", "shared"):  # the application and the helpers it imports
        shutil.copytree(ROOT / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    data_dir = tmp_path / "data"
    env = executor_env(data_dir, HOST_PORT="0", RAGFLOW_API_KEY=KEY, PYTHONPATH=str(root))
    port_file = tmp_path / "http.port"
    with (tmp_path / "dev.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.ragflow_server", "--debug", "--port-file", str(port_file)],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        heartbeats = storage.open_backend(data_dir).heartbeats
        first = wait_for(lambda: heartbeats.executors(), 30, "the first child's executor")
        # answering means the reloader has taken its first look at the files
        port = port_from_file(port_file, 30, lambda: proc.poll() is None)
        wait_for(lambda: _ping(f"http://127.0.0.1:{port}"), 30, "the dev server")
        source = root / "api" / "text.py"
        source.write_text(source.read_text() + "\n# changed\n")
        second = wait_for(
            lambda: [e for e in heartbeats.executors() if e["pid"] != first[0]["pid"]],
            30,
            "the reloaded child's executor",
        )
        log_text = (tmp_path / "dev.log").read_text()
        stopped = log_text.index("executor test_0 stopped")
        assert log_text.index(f"(pid {second[0]['pid']},") > stopped
        assert proc.poll() is None
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0
        assert heartbeats.executors()[0]["state"] == "stopped"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
