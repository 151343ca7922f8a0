"""The application's own settings, read from the environment when called (never at import)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_CONTENT_LENGTH = 1024 * 1024 * 1024  # RAGFlow's default: 1 GiB
MODES = ("production", "development", "dev")  # "dev": what render_config.py --dev-mode sets
LOG_FORMATS = ("text", "json")


class ConfigError(ValueError):
    """A setting has a value the application cannot use; the message names the fix."""


@dataclass(frozen=True)
class Config:
    data_dir: Path
    max_content_length: int
    api_key: str | None
    log_format: str
    host_ip: str
    host_port: int
    mode: str

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ragflow.db"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"


def _int(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer; set it to a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range; use a value from {low} to {high}")
    return value


def _choice(environ: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = environ.get(name, "").strip().lower() or default
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value


# The same rule as renderer/settings.py (API_KEY), which refuses such keys at render time;
# tests/test_api_key_rule.py holds both sides to it. Clients send the key in an HTTP header.
API_KEY_RULE = "16 to 1024 printable ASCII characters without whitespace"
_API_KEY = re.compile(r"[\x21-\x7e]{16,1024}")


def _checked_key(key: str, source: str) -> str | None:
    """The key, None when empty; ConfigError naming ``source`` (never the key) otherwise."""
    if key == "":
        return None
    if not _API_KEY.fullmatch(key):
        raise ConfigError(
            f"{source}: the key is refused (value hidden): an API key must be {API_KEY_RULE}; "
            "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return key


def read_api_key(environ: Mapping[str, str]) -> str | None:
    """The bootstrap key: RAGFLOW_API_KEY, else RAGFLOW_API_KEY_FILE's contents (without the
    final line break). Either must follow API_KEY_RULE."""
    key = environ.get("RAGFLOW_API_KEY", "")
    if key:
        return _checked_key(key, "RAGFLOW_API_KEY")
    path = environ.get("RAGFLOW_API_KEY_FILE", "").strip()
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"RAGFLOW_API_KEY_FILE={path!r} cannot be read ({reason}); "
            "point it at a readable file holding the key"
        ) from None
    return _checked_key(text.rstrip("\r\n"), f"RAGFLOW_API_KEY_FILE={path!r} (the file's contents)")


def load(environ: Mapping[str, str] | None = None) -> Config:
    env = os.environ if environ is None else environ
    return Config(
        data_dir=Path(env.get("DATA_DIR", "").strip() or "./data").absolute(),
        max_content_length=_int(
            env, "MAX_CONTENT_LENGTH", DEFAULT_MAX_CONTENT_LENGTH, 1024, 1 << 40
        ),
        api_key=read_api_key(env),
        log_format=_choice(env, "LOG_FORMAT", "text", LOG_FORMATS),
        host_ip=env.get("HOST_IP", "").strip() or "127.0.0.1",
        host_port=_int(env, "HOST_PORT", 9380, 1, 65535),
        mode=_choice(env, "RAGFLOW_MODE", "production", MODES),
    )


@dataclass(frozen=True)
class TaskSettings:
    """The task executors' settings (api.task_executor, api.queue)."""

    lease_seconds: int  # TASK_LEASE_SECONDS: a claim's visibility timeout, renewed while working
    max_attempts: int  # TASK_MAX_ATTEMPTS: claims of one task before its document ends FAIL
    stop_timeout: int  # TASK_STOP_TIMEOUT: seconds to finish the current task on SIGTERM
    poll_ms: int  # TASK_POLL_INTERVAL_MS: how often an idle executor looks for work
    heartbeat_seconds: int  # TASK_HEARTBEAT_SECONDS: executor heartbeat period
    host_id: str  # EXECUTOR_HOST_ID: first part of consumer names (default: the host name)
    max_memory: int | None = None  # EXECUTOR_MAX_MEMORY: resident bytes; over it: hand back, exit

    @property
    def stale_after(self) -> float:
        """An executor silent this long is reported stale."""
        return 3.0 * self.heartbeat_seconds


def load_task_settings(environ: Mapping[str, str] | None = None) -> TaskSettings:
    import socket

    env = os.environ if environ is None else environ
    return TaskSettings(
        # defaults and upper bounds as in renderer/settings.py; the app also accepts
        # leases down to 2 s (tests use short leases)
        lease_seconds=_int(env, "TASK_LEASE_SECONDS", 60, 2, 86400),
        max_attempts=_int(env, "TASK_MAX_ATTEMPTS", 3, 1, 100),
        stop_timeout=_int(env, "TASK_STOP_TIMEOUT", 5, 1, 3600),
        poll_ms=_int(env, "TASK_POLL_INTERVAL_MS", 500, 10, 5000),
        heartbeat_seconds=_int(env, "TASK_HEARTBEAT_SECONDS", 5, 1, 300),
        host_id=env.get("EXECUTOR_HOST_ID", "").strip() or socket.gethostname(),
        max_memory=_int(env, "EXECUTOR_MAX_MEMORY", 0, 16 * 1024**2, 1 << 40) or None,
    )
