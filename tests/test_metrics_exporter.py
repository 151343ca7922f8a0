"""api.metrics_exporter's pure parts: restarts from start times, process trees, dead processes."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import multiprocess
from prometheus_client.multiprocess import MultiProcessCollector

from api.metrics_exporter import (
    ProcessStat,
    ProgramTracker,
    memory_limits,
    process_tree,
    read_recorded,
    read_stat,
    retire_dead_processes,
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


def test_read_stat_of_a_process_exiting_while_it_is_read_is_none(monkeypatch: Any) -> None:
    """A worker killed by its timeout can exit between the open and the read of its stat: the
    scrape leaves it out instead of failing."""
    import builtins
    import io

    real_open = builtins.open

    def cut(path: Any, *args: Any, **kwargs: Any) -> Any:
        if str(path) == f"/proc/{os.getpid()}/stat":
            return io.BytesIO(f"{os.getpid()} (python) S 1 2".encode())
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", cut)
    assert read_stat(os.getpid()) is None
    monkeypatch.setattr(builtins, "open", lambda *a, **k: io.BytesIO(b""))
    assert read_stat(os.getpid()) is None


def test_read_stat_reads_this_process() -> None:
    stat = read_stat(os.getpid())
    assert stat is not None and stat.ppid == os.getppid()
    assert stat.rss_bytes > 1024 * 1024 and stat.cpu_seconds >= 0


def test_live_gauges_of_dead_processes_are_forgotten(tmp_path: Path) -> None:
    dead = 2**22 + 12345  # above the kernel's pid_max: never a live process
    (tmp_path / f"gauge_livesum_{dead}.db").write_bytes(b"")
    (tmp_path / f"gauge_livesum_{os.getpid()}.db").write_bytes(b"")
    retire_dead_processes(str(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == [f"gauge_livesum_{os.getpid()}.db"]


RECORD = """
from prometheus_client import Counter, Histogram
requests = Counter("t_requests", "requests", ["route"])
requests.labels("/a").inc({a})
requests.labels("/b").inc({b})
Histogram("t_seconds", "seconds", buckets=(0.1, 1.0)).observe({seconds})
"""


def _samples(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    collector = MultiProcessCollector(None, str(directory))  # type: ignore[no-untyped-call]
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in collector.collect()  # type: ignore[no-untyped-call]
        for sample in family.samples
    }


def test_counters_and_histograms_of_dead_processes_fold_into_one_file(tmp_path: Path) -> None:
    """Every replaced Gunicorn worker leaves its files; the exporter folds them, sums unchanged."""
    environ = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for round_, (a, b, seconds) in enumerate(((1, 2, 0.05), (10, 0, 0.5), (100, 7, 5.0))):
        # real processes that record and exit: their pids are dead when retiring
        code = RECORD.format(a=a, b=b, seconds=seconds)
        subprocess.run([sys.executable, "-c", code], env=environ, check=True, timeout=60)
        before = _samples(tmp_path)
        folded = retire_dead_processes(str(tmp_path))
        assert folded == 2  # this process's counter and histogram files
        assert _samples(tmp_path) == before  # the same sums, from fewer files
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "counter_retired.db",
            "histogram_retired.db",
        ], f"round {round_}"
    totals = _samples(tmp_path)
    assert totals[("t_requests_total", (("route", "/a"),))] == 111
    assert totals[("t_requests_total", (("route", "/b"),))] == 9
    assert totals[("t_seconds_count", ())] == 3
    assert totals[("t_seconds_bucket", (("le", "0.1"),))] == 1
    assert totals[("t_seconds_bucket", (("le", "1.0"),))] == 2
    assert retire_dead_processes(str(tmp_path)) == 0  # nothing left to fold


def test_memory_limits_per_program_group() -> None:
    environ = {"GUNICORN_WORKER_MAX_MEMORY": "67108864", "EXECUTOR_MAX_MEMORY": ""}
    assert memory_limits(environ) == {"web": 67108864}


def test_a_file_read_while_its_process_creates_it_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new worker's metrics file exists empty for a moment before it is sized: a scrape that
    meets it then reads the directory again instead of failing (prometheus_client alone raises
    struct.error on it)."""
    environ = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    code = RECORD.format(a=1, b=2, seconds=0.05)
    subprocess.run([sys.executable, "-c", code], env=environ, check=True, timeout=60)
    being_created = tmp_path / f"counter_{os.getpid()}.db"
    being_created.write_bytes(b"")
    with pytest.raises(struct.error):
        MultiProcessCollector(None, str(tmp_path)).collect()  # type: ignore[no-untyped-call]

    class Creator(MultiProcessCollector):  # the new process sizes its file after the first read
        def collect(self) -> Any:
            try:
                return super().collect()  # type: ignore[no-untyped-call]
            finally:
                being_created.write_bytes(b"\x08" + b"\x00" * 7)

    monkeypatch.setattr(multiprocess, "MultiProcessCollector", Creator)
    families = {family.name: family for family in read_recorded(str(tmp_path))}
    totals = {s.value for s in families["t_requests"].samples if s.name == "t_requests_total"}
    assert totals == {1.0, 2.0}
