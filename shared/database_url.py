"""DATABASE_URL: which storage backend the application uses, and where.

One rule for both ends: the renderer validates the setting with ``parse`` and the application
opens its backend from ``parse``'s result. Stdlib only.

Accepted today: ``sqlite:///`` followed by an absolute path (``sqlite:////srv/data/ragflow.db``,
as SQLAlchemy writes it); unset means SQLite at DATA_DIR/ragflow.db. PostgreSQL is refused with a
message until its backend exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

SQLITE_PREFIX = "sqlite:///"
ACCEPTS = (
    "empty (SQLite at DATA_DIR/ragflow.db) or sqlite:/// followed by an absolute path, "
    "e.g. sqlite:////srv/data/ragflow.db (PostgreSQL is not supported yet)"
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}")
_NOT_YET = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2")


@dataclass(frozen=True)
class DatabaseUrl:
    scheme: str  # "sqlite"
    path: PurePosixPath | None  # None: the default file under DATA_DIR


DEFAULT = DatabaseUrl("sqlite", None)


def parse(raw: str) -> DatabaseUrl:
    """The backend and location ``raw`` names; ValueError naming the problem otherwise (the
    caller adds ACCEPTS). The message never repeats ``raw``: a URL may carry a password."""
    text = raw.strip()
    if not text:
        return DEFAULT
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise ValueError("it is not a URL")
    if scheme.lower() in _NOT_YET:
        raise ValueError(f"the {scheme.lower()} backend is not supported yet")
    if scheme.lower() != "sqlite":
        shown = repr(scheme) if _SCHEME.fullmatch(scheme) else "in it"
        raise ValueError(f"unknown database scheme {shown}")
    if not rest.startswith("/"):
        raise ValueError("a SQLite URL has no host part (sqlite:/// then the path)")
    path = rest[1:]
    if "?" in path or "#" in path or any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise ValueError("the path has query parameters or control characters")
    if not path.startswith("/") or path.endswith("/") or PurePosixPath(path) == PurePosixPath("/"):
        raise ValueError("the path must be an absolute file path")
    return DatabaseUrl("sqlite", PurePosixPath(path))
