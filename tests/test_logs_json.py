"""LOG_FORMAT=json: one JSON line (shared.logformat) for every process of the bundle.

A real bundle in both log targets: every line on stdout and stderr (LOG_TARGET=stdout) and in
every log file (LOG_TARGET=file) is one JSON object with ISO 8601 time, program, pid, level and
message: supervisord's own lines, the socket holders, the web program (Gunicorn master and
workers, error and access logs, the app), the task executor, the metrics exporter, and nginx's
access and error logs. Access lines carry their fields as separate keys, the envelope code
included."""

from __future__ import annotations

import io
import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from support import ragflow_client as client
from support.waiting import wait_for

from shared.logformat import JsonFormatter, emit_line

PROGRAMS = (
    "supervisord",
    "socket_holder_0",
    "socket_holder_1",
    "web",
    "task_executor_00",
    "metrics",
)
ACCESS_KEYS = {"client", "method", "path", "query", "status", "size", "user_agent", "duration_ms"}


def _records(path: Path, text: str | None = None) -> list[dict[str, Any]]:
    records = []
    lines = (path.read_text() if text is None else text).splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"{path.name}:{number} is not JSON: {line[:200]!r}") from None
        assert isinstance(record, dict), f"{path.name}:{number}: {line[:200]!r}"
        for key in ("time", "level", "program", "pid", "message"):
            assert key in record, f"{path.name}:{number} has no {key!r}: {line[:200]!r}"
        assert datetime.fromisoformat(record["time"]).tzinfo is not None, record["time"]
        records.append(record)
    return records


def _traffic(port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    assert requests.get(f"{base}/v1/system/ping", timeout=10).text == "pong"
    assert requests.get(f"{base}/no/such/path?x=1", timeout=10).json()["code"] == 100
    dataset = client.create_dataset(port)
    documents = client.upload(port, dataset, {"log.txt": b"json log line test\n" * 50})
    client.start_parsing(port, dataset, documents)


def test_every_line_of_every_log_file_is_one_json_object(start_bundle: Any) -> None:
    run = start_bundle(LOG_FORMAT="json", LOG_TARGET="file", METRICS_PORT="0")
    _traffic(run.port)
    logs = Path(run.env["LOG_DIR"])

    def access_lines() -> list[dict[str, Any]]:
        return [r for r in _records(logs / "web.log") if r.get("logger") == "gunicorn.access"]

    wait_for(lambda: len(access_lines()) >= 5, 20, "the access lines in web.log")
    wait_for(
        lambda: any("done" in r["message"] for r in _records(logs / "task_executor_00.err.log")),
        60,
        "the executor's line for the parsed document",
    )
    for program in PROGRAMS:
        for stream in ("log", "err.log"):
            path = logs / f"{program}.{stream}"
            if path.exists():
                for record in _records(path):
                    assert record["program"] == program, record
    assert any("supervisord started" in r["message"] for r in _records(logs / "supervisord.log"))
    assert any("handing copies out" in r["message"] for r in _records(logs / "socket_holder_0.log"))
    nginx = _records(logs / "proxy.err.log")  # nginx's error log, rewritten by the relay
    assert nginx and all(r["logger"] == "nginx.error" for r in nginx), nginx[:3]
    unknown = next(r for r in access_lines() if r["path"] == "/no/such/path")
    assert set(unknown) >= ACCESS_KEYS, unknown
    assert (unknown["method"], unknown["status"], unknown["code"]) == ("GET", 200, 100)
    assert unknown["query"] == "x=1" and unknown["client"] == "127.0.0.1"
    assert isinstance(unknown["duration_ms"], float) and unknown["size"] > 0
    ping = next(r for r in access_lines() if r["path"] == "/v1/system/ping")
    assert ping["code"] is None  # no envelope
    upload = next(r for r in access_lines() if r["method"] == "POST" and "documents" in r["path"])
    assert upload["code"] == 0
    proxy = _records(logs / "proxy.log")
    assert proxy and all({"client", "method", "path", "status", "size"} <= set(r) for r in proxy)


def test_every_line_on_stdout_and_stderr_is_one_json_object(start_bundle: Any) -> None:
    run = start_bundle(LOG_FORMAT="json", METRICS_PORT="0")
    _traffic(run.port)

    def executor_done() -> bool:
        return any(
            r["program"] == "task_executor_00" and "done" in r["message"]
            for r in _records(run.stderr_path)
        )

    wait_for(executor_done, 60, "the executor's line for the parsed document")
    out, err = _records(run.stdout_path), _records(run.stderr_path)
    programs = {r["program"] for r in out + err}
    assert {*PROGRAMS, "proxy"} <= programs, programs
    assert any(r["program"] == "proxy" and r["logger"] == "nginx.error" for r in err)
    access = [r for r in out if r.get("logger") == "gunicorn.access"]
    assert access and all(set(r) >= ACCESS_KEYS for r in access)
    assert all(r.get("logger") != "gunicorn.access" for r in err)  # access lines: stdout only


def test_json_formatter_writes_the_traceback_and_iso_time() -> None:
    formatter = JsonFormatter("web")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("api.app", logging.ERROR, __file__, 1, "failed %s", ("x",),
                                   sys.exc_info())  # fmt: skip
    entry = json.loads(formatter.format(record))
    assert entry["message"] == "failed x" and entry["program"] == "web"
    assert entry["traceback"].startswith("Traceback") and "ValueError: boom" in entry["traceback"]
    assert datetime.fromisoformat(entry["time"]).utcoffset() is not None


class _Writes(io.RawIOBase):
    """A raw stream that keeps each write it is given."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.writes.append(bytes(data))
        return len(data)


def test_a_printed_line_reaches_the_stream_in_one_write(monkeypatch: Any) -> None:
    """The programs run unbuffered (PYTHONUNBUFFERED: stdout a write-through text layer over
    the raw stream), where print writes a line and its newline apart: supervisord, copying
    every program's pipe to one stream, could put another program's output between them.
    emit_line writes both at once, on stdout, and errors on stderr."""
    for name, level in (("stdout", "INFO"), ("stderr", "ERROR")):
        raw = _Writes()
        stream = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)  # type: ignore[type-var]
        monkeypatch.setattr(sys, name, stream)
        monkeypatch.setenv("LOG_FORMAT", "json")
        print("printed", file=stream, flush=True)
        assert raw.writes == [b"printed", b"\n"]  # the hazard emit_line avoids
        raw.writes.clear()
        emit_line("listening on 127.0.0.1:9380", level, "socket_holder")
        [line] = raw.writes
        entry = json.loads(line)
        assert line.endswith(b"}\n") and entry["level"] == level, line
        assert entry["message"] == "listening on 127.0.0.1:9380"
