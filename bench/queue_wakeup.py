"""Enqueue-to-claim latency of an idle task executor, SQLite (polling every
TASK_POLL_INTERVAL_MS) side by side with PostgreSQL (woken by LISTEN/NOTIFY), interleaved in
one run; the figures go to bench/results/queue_wakeup.json (+ .png) and docs/BENCHMARKS.md.

One real ``python -m api.task_executor`` per backend waits idle; the benchmark queues one small
document at a random moment and waits until the document shows the claim (polled every
millisecond). PostgreSQL: ``--database-url``, or a throwaway cluster (initdb as a
non-root user on 127.0.0.1, removed at the end; tests/support/postgres.py).

    .venv/bin/python -m bench.queue_wakeup [--samples 20] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from api import storage
from bench import REPO_ROOT, TARGET_COLUMNS, postgres_url
from bench.report import Panel, Run, table, verdict

NAME = "queue_wakeup"
POLL_MS = 500  # the default TASK_POLL_INTERVAL_MS
TARGET_MS = 50  # the target for PostgreSQL's enqueue-to-claim


def _executor(data_dir: Path, url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "PYTHONPATH": str(REPO_ROOT),
        "EXECUTOR_HOST_ID": "bench",
        "TASK_POLL_INTERVAL_MS": str(POLL_MS),
    }
    if url:
        env["DATABASE_URL"] = url
    return subprocess.Popen(
        [sys.executable, "-m", "api.task_executor", "--consumer-num", "1"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _sample(backend: storage.Backend, dataset: Any, n: int) -> float:
    """Seconds from the enqueue until the document shows its claim ("Task started by ...",
    written by the claiming transaction), polled every millisecond: an upper bound."""
    upload = storage.Upload(f"d{n}.txt", "txt", "doc", io.BytesIO(b"a few words"))
    (doc,) = backend.store.add_documents(dataset, [upload], "t")
    enqueued = time.monotonic()
    backend.tasks.enqueue_parse(dataset["id"], [doc["id"]])
    while (waited := time.monotonic() - enqueued) < 30:
        row = backend.store.get_document(dataset["id"], doc["id"])
        if row is not None and "Task started" in row["progress_msg"]:
            return waited
        time.sleep(0.001)
    raise RuntimeError(f"document {doc['id']} was not claimed within 30 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args(argv)
    run = Run(NAME)
    procs = []
    with postgres_url(args.database_url) as url:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                backends = {
                    "sqlite": storage.open_backend(Path(tmp) / "sqlite"),
                    "postgresql": storage.open_backend(Path(tmp) / "postgresql", url),
                }
                datasets = {
                    name: b.store.create_dataset("t", {"name": "bench", "parser_config": {}})
                    for name, b in backends.items()
                }
                procs = [
                    _executor(Path(tmp) / "sqlite", ""),
                    _executor(Path(tmp) / "postgresql", url),
                ]
                deadline = time.monotonic() + 60
                while not all(  # both executors started and idle
                    any(e["state"] == "idle" for e in b.heartbeats.executors())
                    for b in backends.values()
                ):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the executors did not start within 60 s")
                    time.sleep(0.05)
                latencies: dict[str, list[float]] = {name: [] for name in backends}
                rng = random.Random(1)
                for n in range(args.samples):
                    for name in rng.sample(sorted(backends), 2):  # interleaved, order shuffled
                        time.sleep(rng.uniform(0.1, 0.6))  # a random phase of the poll
                        latencies[name].append(_sample(backends[name], datasets[name], n))
        finally:
            for proc in procs:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    rows = {name: _summary(values) for name, values in latencies.items()}
    ratio = rows["sqlite"]["p50_ms"] / max(rows["postgresql"]["p50_ms"], 1e-9)
    measured = rows["postgresql"]["p50_ms"]
    targets = [
        {
            "target": "postgresql enqueue-to-claim p50 (LISTEN/NOTIFY)",
            "measured": measured,
            "goal": f"< {TARGET_MS} ms",
            "verdict": verdict(measured, TARGET_MS, higher_is_better=False),
        },
        {
            "target": "sqlite p50 / postgresql p50",
            "measured": round(ratio, 1),
            "goal": "-",
            "verdict": "-",
        },
    ]
    print(
        table(
            ["backend", "samples", "p50 ms", "p95 ms", "max ms"],
            [[n, r["samples"], r["p50_ms"], r["p95_ms"], r["max_ms"]] for n, r in rows.items()],
        )
    )
    print()
    print(
        table(
            TARGET_COLUMNS,
            [[t["target"], t["measured"], t["goal"], t["verdict"]] for t in targets],
        )
    )
    run.save(
        {
            "parameters": {"samples": args.samples, "poll_interval_ms": POLL_MS},
            "backends": [{"backend": n, **r} for n, r in rows.items()],
            "targets": targets,
        },
        [
            Panel(
                "enqueue-to-claim",
                "ms",
                ["p50", "p95", "max"],
                {n: [r["p50_ms"], r["p95_ms"], r["max_ms"]] for n, r in rows.items()},
            )
        ],
    )
    return 0


def _summary(values: list[float]) -> dict[str, Any]:
    ms = sorted(v * 1000 for v in values)
    return {
        "samples": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1),
        "max_ms": round(ms[-1], 1),
    }


if __name__ == "__main__":
    raise SystemExit(main())
