"""DATABASE_URL: which storage backend the application uses, and where.

One rule for both ends: the renderer validates the setting with ``parse`` and the application
opens its backend from ``parse``'s result. Stdlib only.

Accepted today: ``sqlite:///`` followed by an absolute path (``sqlite:////srv/data/ragflow.db``,
as SQLAlchemy writes it); unset means SQLite at DATA_DIR/ragflow.db. PostgreSQL is refused with a
message until its backend exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

SQLITE_PREFIX = "sqlite:///"
ACCEPTS = (
    "empty (SQLite at DATA_DIR/ragflow.db) or sqlite:/// followed by an absolute path, "
    "e.g. sqlite:////srv/data/ragflow.db (PostgreSQL is not supported yet)"
)
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
    scheme, sep, _ = text.partition("://")
    if not sep:
        raise ValueError("it is not a URL")
    if scheme.lower() in _NOT_YET:
        raise ValueError(f"the {scheme} backend is not supported yet")
    if scheme.lower() != "sqlite":
        raise ValueError(f"unknown database scheme {scheme!r}")
    if not text.startswith(SQLITE_PREFIX):
        raise ValueError("a SQLite URL has no host part")
    path = text[len(SQLITE_PREFIX) :]
    if "?" in path or "#" in path or any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise ValueError("the path has query parameters or control characters")
    if not path.startswith("/") or path.endswith("/") or PurePosixPath(path) == PurePosixPath("/"):
        raise ValueError("the path must be an absolute file path")
    return DatabaseUrl("sqlite", PurePosixPath(path))
