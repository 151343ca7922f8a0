"""nginx's error log as JSON lines (LOG_FORMAT=json): run nginx with its stderr on a pipe, rewrite.

nginx writes its error log as plain text (``2026/11/30 12:05:04 [error] 71#71: *5 message``, or
``nginx: [emerg] message`` before it has read its configuration). With LOG_FORMAT=json,
supervise.serve_proxy runs nginx through ``relay``: nginx is a child whose stderr is a pipe; this
process reads the pipe and writes each line to its own stderr as one shared.logformat object
(time ISO 8601, level, program, pid of the nginx process, logger ``nginx.error``, message).

The relay stays the parent, so that a line nginx writes just before it exits still reaches
supervisord: supervisord closes a program's pipes once the program's pid exits, and it is the
relay's pid it watches, which exits only after the pipe reached end of file. It is transparent:
every signal supervisord or an operator sends (QUIT, TERM, INT, HUP, USR1, USR2, WINCH) is passed
to the nginx master, and it exits as nginx did: the same code, or killed by the same signal.
nginx keeps its parent-death signal (SIGTERM, fast stop) with the relay as the parent.
"""

from __future__ import annotations

import os
import re
import select
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime

from shared import parent_death
from shared.logformat import iso_time, json_line

LOGGER = "nginx.error"
MAX_LINE_BYTES = 16384  # nginx's own lines stop at 2,048 bytes; longer input is split
READ_BYTES = 65536
DRAIN_SECONDS = 2.0  # after the master exits: how long its workers may still write
POLL_SECONDS = 0.5
FORWARDED = (
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
LEVELS = {
    "debug": "DEBUG",
    "info": "INFO",
    "notice": "INFO",
    "warn": "WARNING",
    "error": "ERROR",
    "crit": "CRITICAL",
    "alert": "CRITICAL",
    "emerg": "CRITICAL",
}
LOG_LINE = re.compile(
    r"(?P<time>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[(?P<level>[a-z]+)\] (?P<pid>\d+)#\d+: "
    r"(?P<message>.*)",
    re.DOTALL,
)
EARLY_LINE = re.compile(r"nginx: \[(?P<level>[a-z]+)\] (?P<message>.*)", re.DOTALL)


def rewrite(raw: bytes, program: str, default_pid: int, now: float) -> str:
    """One line of nginx's stderr (without its newline) as one JSON object. nginx's time is
    local time (this process shares nginx's TZ); a line in neither of nginx's formats keeps
    the relay's time and level INFO."""
    text = raw.decode("utf-8", errors="replace").rstrip("\r")
    created, level, pid, message = now, "INFO", default_pid, text
    if match := LOG_LINE.fullmatch(text):
        created = datetime.strptime(match["time"], "%Y/%m/%d %H:%M:%S").astimezone().timestamp()
        level = LEVELS.get(match["level"], "INFO")
        pid, message = int(match["pid"]), match["message"]
    elif match := EARLY_LINE.fullmatch(text):
        level, message = LEVELS.get(match["level"], "INFO"), match["message"]
    return json_line(iso_time(created), level, program, pid, LOGGER, message)


class LineSplitter:
    """Bytes in, complete lines out; a line longer than MAX_LINE_BYTES comes out in pieces."""

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes) -> list[bytes]:
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        while len(self.pending) > MAX_LINE_BYTES:
            lines.append(self.pending[:MAX_LINE_BYTES])
            self.pending = self.pending[MAX_LINE_BYTES:]
        return [piece for line in lines for piece in _pieces(line)]

    def flush(self) -> list[bytes]:
        rest, self.pending = self.pending, b""
        return _pieces(rest) if rest else []


def _pieces(line: bytes) -> list[bytes]:
    return [line[i : i + MAX_LINE_BYTES] for i in range(0, max(len(line), 1), MAX_LINE_BYTES)]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _exit_like(status: int) -> int:
    """Leave as nginx left: its exit code, or killed by the signal that killed it."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return code
    sig = -code
    signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
    os.kill(os.getpid(), sig)
    return 128 + sig  # a signal whose default action is not to terminate


def _start(argv: Sequence[str], environ: Mapping[str, str], write_fd: int, read_fd: int) -> int:
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    try:  # the child: nginx with its stderr on the pipe
        original_stderr = os.dup(2)  # not inheritable: gone once nginx runs
        os.dup2(write_fd, 2)
        os.close(write_fd)
        os.close(read_fd)
        parent_death.die_with_parent(signal.SIGTERM, parent)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        try:
            os.execve(argv[0], list(argv), environ)
        except OSError as exc:
            message = (
                f"serve_proxy: cannot run {argv[0]} ({exc.strerror}); install nginx and set "
                "NGINX_BIN to its path, or set PROXY=none"
            )
            line = json_line(iso_time(time.time()), "ERROR", _program(environ), os.getpid(),
                             "supervise.serve_proxy", message)  # fmt: skip
            _write_all(original_stderr, (line + "\n").encode())
    finally:
        os._exit(1)


def _program(environ: Mapping[str, str]) -> str:
    return environ.get("SUPERVISOR_PROCESS_NAME") or "proxy"


def relay(argv: Sequence[str], environ: Mapping[str, str], out: int | None = None) -> int:
    """Run ``argv`` with stderr rewritten to JSON lines on ``out`` (this process's stderr);
    return nginx's exit code (or die of its signal)."""
    out = sys.stderr.fileno() if out is None else out
    program = _program(environ)
    parent_death.prepare()
    signal.pthread_sigmask(signal.SIG_BLOCK, set(FORWARDED))
    read_fd, write_fd = os.pipe()
    child = _start(argv, environ, write_fd, read_fd)
    os.close(write_fd)

    reaped = False

    def forward(signum: int, _frame: object) -> None:
        if not reaped:  # once reaped, the pid may belong to another process
            os.kill(child, signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, set(FORWARDED))

    splitter = LineSplitter()
    status: int | None = None
    drain_until = float("inf")
    while time.monotonic() < drain_until:
        ready, _, _ = select.select([read_fd], [], [], POLL_SECONDS)
        if ready:
            data = os.read(read_fd, READ_BYTES)
            if not data:
                break  # every nginx process has closed its stderr
            lines = splitter.feed(data)
        else:
            lines = []
        now = time.time()
        if lines:
            text = "".join(rewrite(line, program, child, now) + "\n" for line in lines)
            _write_all(out, text.encode())
        if status is None:
            done, status_now = os.waitpid(child, os.WNOHANG)
            if done:
                reaped = True
                status, drain_until = status_now, time.monotonic() + DRAIN_SECONDS
    rest = splitter.flush()
    if rest:
        now = time.time()
        _write_all(out, "".join(rewrite(x, program, child, now) + "\n" for x in rest).encode())
    os.close(read_fd)
    if status is None:
        _, status = os.waitpid(child, 0)
        reaped = True
    return _exit_like(status)
