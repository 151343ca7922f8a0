"""supervise.nginx_errors: nginx's error-log lines as JSON objects, and the relay's transparency
(exit code and killing signal of its child passed back, signals passed on) with a real child."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from datetime import datetime
from typing import IO

import pytest
from support.supervised import APP_DIR

from supervise.nginx_errors import MAX_LINE_BYTES, LineSplitter, rewrite

NOW = datetime(2026, 11, 30, 12, 0, 1).astimezone().timestamp()


@pytest.mark.parametrize(
    ("line", "level", "pid", "message"),
    [
        (
            b"2026/11/30 12:05:04 [error] 71#71: *5 client intended to send too large body: 9",
            "ERROR", 71, "*5 client intended to send too large body: 9",
        ),
        (b"2026/11/30 12:05:04 [notice] 6#6: exit", "INFO", 6, "exit"),
        (b"2026/11/30 12:05:04 [warn] 6#6: a warning\r", "WARNING", 6, "a warning"),
        (b"2026/11/30 12:05:04 [emerg] 6#6: bind() failed", "CRITICAL", 6, "bind() failed"),
        (b"nginx: [emerg] unknown directive \"x\"", "CRITICAL", 1, 'unknown directive "x"'),
        (b"something else \xff", "INFO", 1, "something else \ufffd"),
    ],
)  # fmt: skip
def test_rewrite_maps_nginx_lines_to_the_shared_fields(
    line: bytes, level: str, pid: int, message: str
) -> None:
    entry = json.loads(rewrite(line, "proxy", 1, NOW))
    assert entry == {
        "time": entry["time"], "level": level, "program": "proxy", "pid": pid,
        "logger": "nginx.error", "message": message,
    }  # fmt: skip
    parsed = datetime.fromisoformat(entry["time"])
    assert parsed.utcoffset() is not None
    if line[:4] == b"2026":  # nginx's own time (local), not the relay's
        assert parsed.timestamp() == datetime(2026, 11, 30, 12, 5, 4).astimezone().timestamp()
    else:
        assert parsed.timestamp() == pytest.approx(NOW, abs=0.001)


def test_lines_are_bounded_and_none_is_lost() -> None:
    splitter = LineSplitter()
    long = b"a" * (2 * MAX_LINE_BYTES + 10)
    assert splitter.feed(b"one\ntw") == [b"one"]
    assert splitter.feed(b"o\n" + long[: MAX_LINE_BYTES + 5]) == [b"two", long[:MAX_LINE_BYTES]]
    pieces = splitter.feed(long[MAX_LINE_BYTES + 5 :] + b"\n\nlast")
    assert pieces == [long[MAX_LINE_BYTES : 2 * MAX_LINE_BYTES], long[2 * MAX_LINE_BYTES :], b""]
    assert splitter.flush() == [b"last"] and splitter.flush() == []


RELAY = (
    "import os, sys\n"
    "from supervise.nginx_errors import relay\n"
    "sys.exit(relay([sys.executable, '-c', sys.argv[1]], dict(os.environ)))\n"
)


def test_relay_passes_the_exit_code_back_and_keeps_the_last_line() -> None:
    child = "import sys; print('nginx: [emerg] no config', file=sys.stderr); sys.exit(3)"
    done = subprocess.run(
        [sys.executable, "-c", RELAY, child], cwd=APP_DIR, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 3
    (entry,) = [json.loads(line) for line in done.stderr.splitlines()]
    assert (entry["level"], entry["message"]) == ("CRITICAL", "no config")


def _next_entry(stream: IO[str], deadline: float) -> dict[str, object]:
    """The next JSON line the relay writes, waiting until the deadline at most."""
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([stream], [], [], left)
        if ready:
            line = stream.readline()
            assert line, "the relay closed its stderr"
            return dict(json.loads(line))
    raise AssertionError("no line from the relay before the deadline")


def test_relay_passes_signals_on_and_dies_of_the_childs_signal() -> None:
    child = (
        "import signal, sys, time\n"
        "def hup(*_): print('2026/11/30 12:05:04 [notice] 6#6: reconfiguring', file=sys.stderr,"
        " flush=True)\n"
        "signal.signal(signal.SIGHUP, hup)\n"
        "print('nginx: [notice] ready', file=sys.stderr, flush=True)\n"
        "for _ in range(300): time.sleep(0.1)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", RELAY, child], cwd=APP_DIR, stderr=subprocess.PIPE, text=True,
        bufsize=1,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        assert _next_entry(proc.stderr, deadline)["message"] == "ready"
        proc.send_signal(signal.SIGHUP)  # to the relay, as from `supervisorctl signal HUP proxy`
        assert _next_entry(proc.stderr, deadline)["message"] == "reconfiguring"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == -signal.SIGTERM  # the relay died of the child's signal
    finally:
        proc.kill()
        proc.wait(10)
