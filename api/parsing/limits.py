"""Size and time caps for parsing, read from the environment when called.

Each setting is described once in ``SETTINGS``; ``load`` parses them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Setting:
    env: str
    default: float
    low: float
    high: float
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "PARSE_MAX_BYTES",
        64 * 1024 * 1024,
        1,
        1 << 40,
        "Largest file the executors parse; bigger documents end FAIL.",
    ),
    Setting(
        "PARSE_MAX_UNCOMPRESSED_BYTES",
        64 * 1024 * 1024,
        1,
        1 << 40,
        "Largest total uncompressed size of a DOCX, XLSX or PPTX (zip) archive; guards"
        " against zip bombs.",
    ),
    Setting(
        "PARSE_MAX_PAGES",
        5000,
        1,
        1_000_000,
        "Most PDF pages or PPTX slides parsed; longer files end FAIL.",
    ),
    Setting(
        "PARSE_MAX_CHUNKS",
        100_000,
        1,
        10_000_000,
        "Most chunks one document may produce; more ends FAIL.",
    ),
    Setting(
        "PARSE_TIMEOUT",
        600,
        1,
        86_400,
        "Seconds one document may take to parse (checked between sections); then FAIL.",
    ),
    Setting(
        "RAGFLOW_TEST_SECTION_DELAY",
        0,
        0,
        60,
        "TESTS ONLY: seconds the pipeline sleeps after each section, to keep a task mid-flight.",
    ),
)


class LimitsError(ValueError):
    """A parsing limit has a value that cannot be used; the message names the fix."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int = int(SETTINGS[0].default)
    max_uncompressed_bytes: int = int(SETTINGS[1].default)
    max_pages: int = int(SETTINGS[2].default)
    max_chunks: int = int(SETTINGS[3].default)
    timeout: float = SETTINGS[4].default
    test_section_delay: float = SETTINGS[5].default


def load(environ: Mapping[str, str] | None = None) -> Limits:
    env = os.environ if environ is None else environ
    values: list[Any] = []
    for setting, field in zip(SETTINGS, fields(Limits), strict=True):
        raw = env.get(setting.env, "").strip()
        value = setting.default
        if raw:
            try:
                value = float(raw)
            except ValueError:
                raise LimitsError(
                    f"{setting.env}={raw!r} is not a number; {setting.help}"
                ) from None
        if not setting.low <= value <= setting.high:
            raise LimitsError(
                f"{setting.env}={raw} is out of range; use {setting.low:g} to {setting.high:g}"
            )
        values.append(int(value) if field.type in (int, "int") else value)
    return Limits(*values)
