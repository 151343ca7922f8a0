"""api.metrics_exporter's pure parts: restarts from start times, process trees, dead processes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from api.metrics_exporter import (
    ProcessStat,
    ProgramTracker,
    forget_dead_processes,
    memory_limits,
    process_tree,
    read_stat,
)


class _Supervisor:
    def __init__(self) -> None:
        self.infos: list[dict[str, Any]] = []

    def getAllProcessInfo(self) -> list[dict[str, Any]]:
        return self.infos


class _Rpc:
    def __init__(self) -> None:
        self.supervisor = _Supervisor()


def test_restarts_count_new_start_times_after_the_first() -> None:
    rpc = _Rpc()
    tracker = ProgramTracker(rpc)
    for starts in ([100, 0], [100, 0], [130, 0], [160, 200], [160, 200]):
        rpc.supervisor.infos = [
            {"name": "web", "start": starts[0]},
            {"name": "metrics", "start": starts[1]},
        ]
        tracker.poll()
    assert tracker.restarts == {"web": 2, "metrics": 0}  # metrics' first start is no restart


def test_process_tree_is_the_root_and_every_descendant() -> None:
    stats = {
        pid: ProcessStat(pid, ppid, 0, 0.0)
        for pid, ppid in ((1, 0), (6, 1), (8, 6), (9, 6), (12, 8), (7, 1))
    }
    assert sorted(p.pid for p in process_tree(6, stats)) == [6, 8, 9, 12]
    assert process_tree(99, stats) == []


def test_read_stat_reads_this_process() -> None:
    stat = read_stat(os.getpid())
    assert stat is not None and stat.ppid == os.getppid()
    assert stat.rss_bytes > 1024 * 1024 and stat.cpu_seconds >= 0


def test_live_gauges_of_dead_processes_are_forgotten(tmp_path: Path) -> None:
    dead = 2**22 + 12345  # above the kernel's pid_max: never a live process
    (tmp_path / f"gauge_livesum_{dead}.db").write_bytes(b"")
    (tmp_path / f"gauge_livesum_{os.getpid()}.db").write_bytes(b"")
    (tmp_path / f"counter_{dead}.db").write_bytes(b"")
    forget_dead_processes(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"gauge_livesum_{os.getpid()}.db", f"counter_{dead}.db"]  # counters are kept
    )


def test_memory_limits_per_program_group() -> None:
    environ = {"GUNICORN_WORKER_MAX_MEMORY": "67108864", "EXECUTOR_MAX_MEMORY": ""}
    assert memory_limits(environ) == {"web": 67108864}
