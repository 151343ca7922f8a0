"""One logging setup for the application's processes: program name and pid on each line, text
or JSON (shared.logformat.JsonFormatter, the format of every Python process of the bundle)."""

from __future__ import annotations

import logging
import sys

from shared.logformat import JsonFormatter, program_name

TEXT_FORMAT = "%(asctime)s %(program)s[%(process)d] %(levelname)s %(name)s: %(message)s"


class _ProgramFilter(logging.Filter):
    def __init__(self, program: str) -> None:
        super().__init__()
        self.program = program

    def filter(self, record: logging.LogRecord) -> bool:
        record.program = self.program
        return True


def setup(log_format: str = "text", level: int = logging.INFO) -> None:
    """Send every record of this process to stderr, one line (or JSON object) each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ProgramFilter(program_name()))
    handler.setFormatter(
        JsonFormatter(program_name()) if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
