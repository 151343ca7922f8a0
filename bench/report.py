"""Benchmark output: a printed table, raw results as JSON and a PNG chart under bench/results/."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # the backend must be chosen first

from bench import REPO_ROOT, RESULTS_DIR


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as fh:
        mem_kb = int(fh.readline().split()[1])
    with open("/proc/loadavg", encoding="utf-8") as fh:
        load = fh.read().split()[:3]
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024**2, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": [float(x) for x in load],
    }


def _git_revision() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else "uncommitted"


SOURCES = ("render_config.py", "renderer", "deploy/templates", "supervise", "api", "bench")


def source_fingerprint() -> str:
    """A short hash of the code measured (the tree may hold uncommitted changes)."""
    digest = hashlib.sha256()
    for top in SOURCES:
        root = REPO_ROOT / top
        files = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in files:
            if path.is_file() and path.suffix in (".py", ".j2"):
                digest.update(str(path.relative_to(REPO_ROOT)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, columns sized to their content."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        return str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells)
    return "\n".join(lines)


@dataclass(frozen=True)
class Panel:
    """One bar chart: a group of bars per category, one bar per series."""

    title: str
    ylabel: str
    categories: list[str]
    series: dict[str, list[float]]
    log_y: bool = False  # values spanning orders of magnitude (latency against data size)


def _bar_label(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def chart(path: Path, title: str, panels: Sequence[Panel], columns: int = 0) -> None:
    """One bar chart per panel, ``columns`` per row (0: all in one row)."""
    columns = columns or len(panels)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4.5 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        count = max(1, len(panel.series))
        width = 0.8 / count
        for i, (name, values) in enumerate(panel.series.items()):
            xs = [c + (i - (count - 1) / 2) * width for c in range(len(panel.categories))]
            bars = ax.bar(xs, values, width, label=name)
            ax.bar_label(bars, fmt=_bar_label, fontsize=7)
        crowded = len(panel.categories) > 3
        ax.set_xticks(
            range(len(panel.categories)),
            panel.categories,
            fontsize=8,
            rotation=20 if crowded else 0,
            ha="right" if crowded else "center",
        )
        ax.set_title(panel.title, fontsize=10)
        ax.set_ylabel(panel.ylabel)
        top = max((v for values in panel.series.values() for v in values), default=1.0)
        if panel.log_y:
            ax.set_yscale("log")
            ax.set_ylim(top=top * 4 if top > 0 else 1.0)  # room for the labels and the legend
        else:
            ax.set_ylim(0, top * 1.3 if top > 0 else 1.0)  # room for the labels and the legend
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class Run:
    """One benchmark run: remembers when it started and on what machine, then saves its results."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = time.time()
        self.machine = machine()

    def save(self, results: dict[str, Any], panels: Sequence[Panel], columns: int = 0) -> Path:
        """Write bench/results/NAME.json (with the machine and run time) and NAME.png."""
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        measured_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started))
        document = {
            "benchmark": self.name,
            "command": f".venv/bin/python -m bench.{self.name}",
            "measured_at": measured_at,
            "wall_seconds": round(time.time() - self.started, 1),
            "git_revision": _git_revision(),
            "source_fingerprint": source_fingerprint(),
            "machine": self.machine,
            "loadavg_at_end": machine()["loadavg_at_start"],
            **results,
        }
        path = RESULTS_DIR / f"{self.name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(document, indent=2) + "\n")
        tmp.replace(path)
        if panels:
            title = f"{self.name} ({measured_at})"
            chart(RESULTS_DIR / f"{self.name}.png", title, panels, columns)
        print(f"\nresults: {path.relative_to(REPO_ROOT)} (+ .png), {document['wall_seconds']} s")
        return path


def verdict(measured: float, target: float, higher_is_better: bool = True) -> str:
    met = measured >= target if higher_is_better else measured <= target
    return "met" if met else "MISSED"
