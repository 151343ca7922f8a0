"""The one JSON log line of every Python process of the bundle (LOG_FORMAT=json).

api.logs (the app, the executors, the metrics exporter) and the rendered gunicorn.conf.py (the
Gunicorn master and workers, error and access logs) format with JsonFormatter. Each line is one
JSON object with:

- ``time``: ISO 8601 with milliseconds and the UTC offset (``2026-11-30T09:48:51.123+00:00``);
- ``level``, ``program`` (supervisord's process name), ``pid``, ``logger``, ``message``;
- ``traceback`` when the record carries an exception (or a stack);
- for an access line (a record with an ``access`` mapping, see supervise.gunicorn_logging), its
  fields as separate keys: client, method, path, query, status, size, user_agent,
  duration_ms (with decimals) and code (the envelope code, null without an envelope).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

ACCESS_ATTRIBUTE = "access"


def program_name(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("SUPERVISOR_PROCESS_NAME") or Path(sys.argv[0] or "python").name


def iso_time(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per record (keys in the module doc)."""

    def __init__(self, program: str | None = None) -> None:
        super().__init__()
        self.program = program or program_name()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "program": getattr(record, "program", None) or self.program,
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        access = getattr(record, ACCESS_ATTRIBUTE, None)
        if isinstance(access, Mapping):
            entry.update(access)
        traceback = ""
        if record.exc_info:
            traceback = self.formatException(record.exc_info)
        elif record.exc_text:
            traceback = record.exc_text
        if record.stack_info:
            traceback = "\n".join(part for part in (traceback, record.stack_info) if part)
        if traceback:
            entry["traceback"] = traceback
        return json.dumps(entry, ensure_ascii=False, default=str)


def json_enabled(environ: Mapping[str, str]) -> bool:
    """Whether LOG_FORMAT (as the rendered programs receive it) asks for JSON lines."""
    return environ.get("LOG_FORMAT", "").strip().lower() == "json"


def json_line(time: str, level: str, program: str, pid: int, logger: str, message: str) -> str:
    """The JSON object of one line without extra keys, for a program that is not a Python logger
    (plain_line; nginx's error log, supervise.nginx_errors)."""
    entry = {
        "time": time,
        "level": level,
        "program": program,
        "pid": pid,
        "logger": logger,
        "message": message,
    }
    return json.dumps(entry, ensure_ascii=False)


def plain_line(
    message: str,
    level: str = "INFO",
    logger: str = "",
    environ: Mapping[str, str] | None = None,
) -> str:
    """A line for a program that writes instead of logging (the socket holders, serve_web,
    serve_proxy, through emit_line): ``message`` itself, or with LOG_FORMAT=json the same JSON
    object as JsonFormatter's."""
    env = os.environ if environ is None else environ
    if not json_enabled(env):
        return message
    program = program_name(env)
    return json_line(iso_time(time.time()), level, program, os.getpid(), logger or program, message)


def emit_line(message: str, level: str = "INFO", logger: str = "") -> None:
    """Write ``plain_line(message, level, logger)`` with its newline in one write, flushed: to
    stderr for ERROR, else stdout. One write, because the programs run unbuffered
    (PYTHONUNBUFFERED), where print writes the newline apart, and supervisord, copying every
    program's output to the container's one stream, could put another program's output between
    a line and its newline."""
    stream = sys.stderr if level == "ERROR" else sys.stdout
    stream.write(plain_line(message, level, logger) + "\n")
    stream.flush()
