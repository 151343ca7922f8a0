"""Container-aware CPU count: scheduler affinity capped by the cgroup CPU quota.

Pure functions: the caller passes the affinity and a reader for cgroup files, so
tests can point them at fake cgroup trees in a temporary directory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")

Reader = Callable[[Path], str | None]


def read_text_or_none(path: Path) -> str | None:
    """The file's text, or None when it does not exist or cannot be read."""
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


def cgroup_v2_quota(cpu_max: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line (``"max 100000"`` -> None)."""
    fields = cpu_max.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def cgroup_v1_quota(quota_us: str, period_us: str) -> float | None:
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1 = none)."""
    try:
        quota, period = int(quota_us.strip()), int(period_us.strip())
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def cgroup_quota(read: Reader, root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of the cgroup at ``root`` (v2 first, then the v1 layouts)."""
    cpu_max = read(root / "cpu.max")
    if cpu_max is not None:
        return cgroup_v2_quota(cpu_max)
    for controller in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        quota = read(root / controller / "cpu.cfs_quota_us")
        period = read(root / controller / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            return cgroup_v1_quota(quota, period)
    return None


def container_cpu_count(affinity: int, quota: float | None) -> int:
    """min(affinity, ceil(quota)), never below 1."""
    count = affinity if quota is None else min(affinity, math.ceil(quota))
    return max(1, count)


def detect_cpu_count(read: Reader = read_text_or_none, root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process may really use (called by the CLI, never at import)."""
    return container_cpu_count(len(os.sched_getaffinity(0)), cgroup_quota(read, root))
