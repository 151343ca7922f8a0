"""DATABASE_URL: which storage backend the application uses, and where.

One rule for both ends: the renderer validates the setting with ``parse`` and the application
opens its backend from ``parse``'s result. Stdlib only.

Accepted: ``sqlite:///`` followed by an absolute path (``sqlite:////srv/data/ragflow.db``, as
SQLAlchemy writes it; unset means SQLite at DATA_DIR/ragflow.db), or a PostgreSQL URL
``postgresql://user:password@host:port/database`` (libpq's form; ``postgres://`` too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import parse_qsl, urlsplit

SQLITE_PREFIX = "sqlite:///"
ACCEPTS = (
    "empty (SQLite at DATA_DIR/ragflow.db), sqlite:/// followed by an absolute path, "
    "e.g. sqlite:////srv/data/ragflow.db, or postgresql://user:password@host:port/database"
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}")
_POSTGRES = ("postgresql", "postgres")
_DRIVER_SUFFIXED = ("postgresql+psycopg", "postgresql+psycopg2")


@dataclass(frozen=True)
class DatabaseUrl:
    scheme: str  # "sqlite" or "postgresql"
    path: PurePosixPath | None  # SQLite's file; None: the default file under DATA_DIR
    url: str = ""  # PostgreSQL: the URL as given (it may carry a password: never shown)


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
    if scheme.lower() in _DRIVER_SUFFIXED:
        raise ValueError("write postgresql:// without a driver suffix (+psycopg)")
    if scheme.lower() in _POSTGRES:
        return _postgres(text)
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


def _postgres(text: str) -> DatabaseUrl:
    """A PostgreSQL URL with a host and a database name (never repeated in a message)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c == " " for c in text):
        raise ValueError("the PostgreSQL URL has spaces or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError("the PostgreSQL URL's port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("the PostgreSQL URL names no host (postgresql://user@HOST:port/db)")
    if port == 0:
        raise ValueError("the PostgreSQL URL's port is not a number from 1 to 65535")
    database = parts.path.lstrip("/")
    if not database or "/" in database:
        raise ValueError("the PostgreSQL URL names no database (.../DATABASE after the host)")
    if parts.fragment:
        raise ValueError("the PostgreSQL URL has a #fragment")
    for key, _ in parse_qsl(parts.query, keep_blank_values=True):
        if not re.fullmatch(r"[a-z_]{1,40}", key):
            raise ValueError("the PostgreSQL URL has a query parameter that is not a libpq name")
    return DatabaseUrl("postgresql", None, text)
