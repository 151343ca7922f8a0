"""Shared by the queue and executor tests: real storage on a temporary DATA_DIR,
real executor processes, and polling with deadlines."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from api import storage
from api.storage import Upload
from api.storage.sqlite import connections as sqlite_connections
from support import slowdown
from support.backends import Inspector, inspector

ROOT = Path(__file__).resolve().parent.parent.parent
T = TypeVar("T")
# DATA_DIR -> the DATABASE_URL its executors and helpers use (absent: SQLite under DATA_DIR);
# a test parametrized over backends registers its database here (see use_database).
DATABASES: dict[Path, str] = {}


def use_database(data_dir: Path, url: str) -> None:
    DATABASES[data_dir] = url


def backend(data_dir: Path) -> storage.Backend:
    return storage.open_backend(data_dir, DATABASES.get(data_dir, ""))


def inspect(data_dir: Path) -> Inspector:
    return inspector(data_dir, DATABASES.get(data_dir, ""))


def add_docs(
    data_dir: Path,
    files: list[tuple[str, bytes]],
    parser_config: Mapping[str, Any] | None = None,
) -> tuple[storage.Storage, storage.DatasetRow, list[storage.DocumentRow]]:
    store = backend(data_dir).store
    dataset = store.create_dataset(
        "tenant", {"name": "ds", "parser_config": dict(parser_config or {"chunk_token_num": 64})}
    )
    uploads = [
        Upload(name, name.rsplit(".", 1)[-1], "doc", io.BytesIO(data)) for name, data in files
    ]
    return store, dataset, store.add_documents(dataset, uploads, "tenant")


def sqlite_conn(data_dir: Path) -> sqlite3.Connection:
    """This thread's connection of the SQLite backend under DATA_DIR, to inspect its rows."""
    return sqlite_connections.connection(data_dir / "ragflow.db")


def doc_rows(data_dir: Path, doc_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The documents among ``doc_ids`` that exist, by id."""
    return inspect(data_dir).documents(doc_ids)


def finished(data_dir: Path, doc_ids: list[str]) -> dict[str, dict[str, Any]] | None:
    rows = doc_rows(data_dir, doc_ids)
    return rows if all(r["run"] in ("2", "3", "4") for r in rows.values()) else None


def executor_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASK_", "PARSE_"))}
    if data_dir in DATABASES:
        env["DATABASE_URL"] = DATABASES[data_dir]
    env.update(
        DATA_DIR=str(data_dir),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        EXECUTOR_HOST_ID="test",
        TASK_POLL_INTERVAL_MS="100",
        TASK_HEARTBEAT_SECONDS="1",
    )
    env.update(extra)
    return slowdown.apply(env)


@contextmanager
def executors(
    data_dir: Path, numbers: list[int], log_dir: Path, **extra: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Real ``python -m api.task_executor`` processes; killed (group) at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for n in numbers:
            log = (log_dir / f"executor_{n}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "api.task_executor", "--consumer-num", str(n)],
                    cwd=ROOT,
                    env=executor_env(data_dir, **extra),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            log.close()
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def chunk_rows(data_dir: Path, doc_id: str) -> list[dict[str, Any]]:
    return inspect(data_dir).chunks(doc_id)
