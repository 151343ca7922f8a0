"""Size and time caps for parsing, read from the environment when called.

The settings (PARSE_*) are defined once, in shared/settings.py; ``load`` types them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from api import config
from shared.settings import BY_NAME


def _default(name: str) -> int:
    """The table's default (Limits() is the limits of an empty environment)."""
    value = BY_NAME[name].default
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an integer default, got {value!r}")
    return value


@dataclass(frozen=True)
class Limits:
    max_bytes: int = _default("PARSE_MAX_BYTES")
    max_uncompressed_bytes: int = _default("PARSE_MAX_UNCOMPRESSED_BYTES")
    max_pages: int = _default("PARSE_MAX_PAGES")
    max_chunks: int = _default("PARSE_MAX_CHUNKS")
    timeout: float = _default("PARSE_TIMEOUT")  # seconds


def load(environ: Mapping[str, str] | None = None) -> Limits:
    """The parsing limits; config.ConfigError naming every invalid one."""
    env = os.environ if environ is None else environ
    found = config.values(env)

    def number(name: str) -> int:
        value = found[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name}: expected an integer, got {value!r}")
        return value

    return Limits(
        max_bytes=number("PARSE_MAX_BYTES"),
        max_uncompressed_bytes=number("PARSE_MAX_UNCOMPRESSED_BYTES"),
        max_pages=number("PARSE_MAX_PAGES"),
        max_chunks=number("PARSE_MAX_CHUNKS"),
        timeout=float(number("PARSE_TIMEOUT")),
    )
