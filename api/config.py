"""The application's end of the settings contract, read from the environment when called.

Every setting is defined once, in shared/settings.py (the renderer parses the same table):
this module only asks ``shared.settings.resolve_app`` for the values and gives them types. A
value the renderer accepted is accepted here with the same meaning; a value edited in after
rendering is refused with the renderer's own message.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from api import storage
from shared import settings
from shared.settings import ConfigError as ConfigError  # the one configuration error type

ROOT = Path(__file__).resolve().parent.parent
# What the app knows of the machine: only where the bundle lives (DATA_DIR defaults under it).
APP_HOST = settings.Host(cpu_count=None, python=None, app_dir=str(ROOT), user=None)
Values = Mapping[str, settings.Value]


def _read_secret(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def values(
    environ: Mapping[str, str] | None = None, fallback: Mapping[str, str] | None = None
) -> Values:
    """Every setting the application reads, parsed; ConfigError listing every problem."""
    env = os.environ if environ is None else environ
    return settings.resolve_app(env, APP_HOST, _read_secret, fallback)


def _int(found: Values, name: str) -> int:
    value = found[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    return value


def _optional_int(found: Values, name: str) -> int | None:
    """An optional integer setting; None when unset or not read in this mode."""
    value = found.get(name)
    return None if value is None else _int(found, name)


def _str(found: Values, name: str) -> str | None:
    value = found[name]
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name}: expected text, got {value!r}")
    return value


def _text(found: Values, name: str) -> str:
    value = _str(found, name)
    if value is None:
        raise TypeError(f"{name}: no value")
    return value


@dataclass(frozen=True)
class Config:
    data_dir: Path
    max_content_length: int
    api_key: str | None
    log_format: str
    host_ip: str
    host_port: int  # 0: the port the kernel picked is in run_dir/http.port (shared/ports.py)
    run_dir: Path
    mode: str
    min_free_disk: int  # healthz fails below this many free bytes
    debugpy_listen: tuple[str, int] | None = None  # dev mode only
    # DATABASE_URL[_FILE] as given ("": the default), checked by shared.database_url; only
    # api.storage.open_backend interprets it. Never logged: a URL may carry a password.
    database_url: str = field(default="", repr=False)
    pool: storage.PoolSettings = field(default_factory=storage.PoolSettings)


def load(
    environ: Mapping[str, str] | None = None, fallback: Mapping[str, str] | None = None
) -> Config:
    found = values(environ, fallback)
    debugpy = _str(found, "RAGFLOW_DEBUGPY_LISTEN")
    return Config(
        data_dir=Path(_text(found, "DATA_DIR")),
        max_content_length=_int(found, "MAX_CONTENT_LENGTH"),
        api_key=_str(found, "RAGFLOW_API_KEY"),
        log_format=_text(found, "LOG_FORMAT"),
        host_ip=_text(found, "HOST_IP"),
        host_port=_int(found, "HOST_PORT"),
        run_dir=Path(_text(found, "SUPERVISOR_RUN_DIR")),
        mode=_text(found, "RAGFLOW_MODE"),
        min_free_disk=_int(found, "MIN_FREE_DISK"),
        debugpy_listen=None if debugpy is None else settings.split_host_port(debugpy),
        database_url=_str(found, "DATABASE_URL") or "",
        pool=storage.PoolSettings(
            size=_int(found, "DB_POOL_SIZE"),
            connect_timeout=_int(found, "DB_CONNECT_TIMEOUT"),
            statement_timeout_ms=_int(found, "DB_STATEMENT_TIMEOUT_MS"),
            lock_timeout_ms=_int(found, "DB_LOCK_TIMEOUT_MS"),
            idle_in_transaction_timeout_ms=_int(found, "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS"),
        ),
    )


@dataclass(frozen=True)
class TaskSettings:
    """The task executors' settings (api.task_executor and the storage's task queue)."""

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
    found = values(environ)
    return TaskSettings(
        lease_seconds=_int(found, "TASK_LEASE_SECONDS"),
        max_attempts=_int(found, "TASK_MAX_ATTEMPTS"),
        stop_timeout=_int(found, "TASK_STOP_TIMEOUT"),
        poll_ms=_int(found, "TASK_POLL_INTERVAL_MS"),
        heartbeat_seconds=_int(found, "TASK_HEARTBEAT_SECONDS"),
        host_id=_str(found, "EXECUTOR_HOST_ID") or socket.gethostname(),
        max_memory=_optional_int(found, "EXECUTOR_MAX_MEMORY"),
    )
