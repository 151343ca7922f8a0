"""Container-aware CPU count against fake cgroup v1/v2 trees in temporary directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from renderer.resources import (
    cgroup_quota,
    cgroup_v1_quota,
    cgroup_v2_quota,
    container_cpu_count,
    detect_cpu_count,
    read_text_or_none,
)
from shared.settings import default_workers


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "200000 100000\n"}, 2.0),
        ({"cpu.max": "50000 100000\n"}, 0.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "250000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.5),
        (
            {
                "cpu,cpuacct/cpu.cfs_quota_us": "100000\n",
                "cpu,cpuacct/cpu.cfs_period_us": "50000\n",
            },
            2.0,
        ),
        ({}, None),
        ({"cpu.max": "garbage"}, None),
    ],
)
def test_cgroup_quota_from_fake_trees(tmp_path: Path, files: dict[str, str], quota: float) -> None:
    assert cgroup_quota(read_text_or_none, tree(tmp_path, files)) == quota


@pytest.mark.parametrize(
    ("affinity", "files", "cpus"),
    [
        (8, {"cpu.max": "150000 100000"}, 2),  # ceil(1.5)
        (8, {"cpu.max": "max 100000"}, 8),  # no quota: affinity
        (2, {"cpu.max": "400000 100000"}, 2),  # quota above affinity: affinity
        (4, {"cpu.max": "10000 100000"}, 1),  # a tenth of a CPU still gets one
        (16, {"cpu/cpu.cfs_quota_us": "300000", "cpu/cpu.cfs_period_us": "100000"}, 3),
        (3, {}, 3),  # no cgroup files at all
    ],
)
def test_container_cpu_count(tmp_path: Path, affinity: int, files: dict[str, str],
                             cpus: int) -> None:  # fmt: skip
    quota = cgroup_quota(read_text_or_none, tree(tmp_path, files))
    assert container_cpu_count(affinity, quota) == cpus


def test_v2_wins_over_v1_when_both_exist(tmp_path: Path) -> None:
    root = tree(tmp_path, {"cpu.max": "100000 100000", "cpu/cpu.cfs_quota_us": "500000",
                           "cpu/cpu.cfs_period_us": "100000"})  # fmt: skip
    assert cgroup_quota(read_text_or_none, root) == 1.0


def test_parsers_of_the_raw_files() -> None:
    assert cgroup_v2_quota("max 100000") is None
    assert cgroup_v2_quota("0 100000") is None
    assert cgroup_v1_quota("-1", "100000") is None
    assert cgroup_v1_quota("x", "100000") is None
    assert cgroup_v1_quota("50000", "0") is None


def test_default_workers() -> None:
    assert [default_workers(n) for n in (1, 2, 4)] == [3, 5, 9]


def test_detect_on_this_machine_respects_affinity(tmp_path: Path) -> None:
    import os

    assert detect_cpu_count(read_text_or_none, tmp_path) == len(os.sched_getaffinity(0))
    assert 1 <= detect_cpu_count() <= len(os.sched_getaffinity(0))
