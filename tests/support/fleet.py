"""How many PostgreSQL connections a bundle may open, from its resolved settings: the formula
docs/fleet.md ("Sizing") gives, checked against the committed compose file and against
pg_stat_activity while real bundles run (tests/test_lifecycle_postgres.py).

- each Gunicorn worker: its pool, at most DB_POOL_SIZE (the master opens none: the app
  connects lazily, after the fork);
- each task executor: its pool, at most DB_POOL_SIZE (two threads use it at once: claims,
  renewals and heartbeats, and the parsing worker), plus one LISTEN connection outside the pool;
- the metrics exporter (METRICS_PORT set): its pool, at most DB_POOL_SIZE;
- the socket holders, nginx and supervisord: none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.settings import EXECUTOR_ROLES, WEB_ROLES

LISTEN_PER_EXECUTOR = 1


def bundle_connections(values: Mapping[str, Any]) -> int:
    """The most connections one production bundle with these resolved settings may open."""
    pool = int(values["DB_POOL_SIZE"])
    role = values["ROLE"]
    workers = int(values["GUNICORN_WORKERS"]) if role in WEB_ROLES else 0
    executors = int(values["WS"]) if role in EXECUTOR_ROLES else 0
    metrics = pool if values["METRICS_PORT"] is not None else 0
    return workers * pool + executors * (pool + LISTEN_PER_EXECUTOR) + metrics
