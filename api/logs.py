"""One logging setup for every process: program name and pid on each line, text or JSON."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

TEXT_FORMAT = "%(asctime)s %(program)s[%(process)d] %(levelname)s %(name)s: %(message)s"


def program_name(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("SUPERVISOR_PROCESS_NAME") or Path(sys.argv[0] or "python").name


class _ProgramFilter(logging.Filter):
    def __init__(self, program: str) -> None:
        super().__init__()
        self.program = program

    def filter(self, record: logging.LogRecord) -> bool:
        record.program = self.program
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "program": getattr(record, "program", ""),
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(log_format: str = "text", level: int = logging.INFO) -> None:
    """Send every record of this process to stderr, one line (or JSON object) each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ProgramFilter(program_name()))
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
