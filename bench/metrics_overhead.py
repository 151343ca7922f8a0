"""Benchmark 7: what the Prometheus metrics cost the web workers.

Two production bundles run side by side in one run on the same data: `on` (METRICS_PORT set:
every request is counted and timed in prometheus_client's multiprocess files, and the `metrics`
program is scraped once a second, as Prometheus would) and `off` (no METRICS_PORT). Cells are
interleaved within each round: GET /v1/system/ping and GET /api/v1/datasets (an authenticated
route with a JSON envelope) at CONNECTIONS connections, DURATION seconds each.

Target: on/off ping throughput >= 0.95 (metrics cost under 5 %), the median of the rounds' ratios.

    .venv/bin/python -m bench.metrics_overhead [--duration 3] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

from bench import TARGET_COLUMNS
from bench.bundle import Bundle
from bench.client import PING
from bench.load import LoadResult, RequestSpec, run_load, summarise
from bench.report import Panel, Run, table, verdict

NAME = "metrics_overhead"
CONNECTIONS = 16
PING_TARGET = 0.95  # on / off ping req/s, at least
SCRAPE_INTERVAL = 1.0


@contextmanager
def scraping(port: int) -> Iterator[list[float]]:
    """Scrape http://127.0.0.1:PORT/metrics every SCRAPE_INTERVAL seconds meanwhile; the list
    of scrape durations in seconds."""
    stop = threading.Event()
    scrapes: list[float] = []

    def loop() -> None:
        while not stop.wait(SCRAPE_INTERVAL):
            started = time.perf_counter()
            with suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
                scrapes.append(time.perf_counter() - started)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield scrapes
    finally:
        stop.set()
        thread.join(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per cell")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (median)")
    args = parser.parse_args(argv)
    run = Run(NAME)
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        data_dir = root / "data"
        on = stack.enter_context(
            Bundle(root / "on", data_dir=data_dir, settings={"METRICS_PORT": "0"})
        )
        on.start()
        off = stack.enter_context(Bundle(root / "off", data_dir=data_dir, api_key=on.api_key))
        off.start()
        bundles = {"on": on, "off": off}
        auth = {"Authorization": f"Bearer {on.api_key}"}
        specs: dict[str, RequestSpec] = {
            "ping": PING,
            "list datasets": RequestSpec("GET", "/api/v1/datasets", headers=auth, expect='"code"'),
        }
        for bundle in bundles.values():  # warm-up
            for spec in specs.values():
                run_load(bundle.base_url, [spec], 8, 1.0)
        cells: dict[tuple[str, str], list[LoadResult]] = {}
        with scraping(on.metrics_port) as scrapes:
            for round_ in range(args.rounds):
                order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
                for endpoint, spec in specs.items():
                    for name in order:
                        result = run_load(
                            bundles[name].base_url, [spec], CONNECTIONS, args.duration
                        )
                        cells.setdefault((endpoint, name), []).append(result)
                        print(
                            f"  {endpoint:13} metrics {name:3} {result.rps:8.0f} req/s "
                            f"p99 {result.p99_ms:7.1f} ms  failed {result.failed}"
                        )
        if not scrapes:
            raise SystemExit("the metrics endpoint was never scraped: is METRICS_PORT served?")
        # Gunicorn replaced workers all along (max_requests); the exporter folds their files
        recorded_files = len(list((on.run_dir / "metrics").glob("*.db")))
    scrape_ms = [round(statistics.median(scrapes) * 1000, 1), round(max(scrapes) * 1000, 1)]
    print(
        f"scrapes: {len(scrapes)}, median / max {scrape_ms[0]} / {scrape_ms[1]} ms; "
        f"files in the metrics directory at the end: {recorded_files}"
    )
    rows = {key: summarise(results) for key, results in cells.items()}

    def ratio(endpoint: str) -> float:
        """The median of each round's on / off ratio: the two cells of a round ran one after
        the other, so a change in the machine's background load between rounds cancels out."""
        pairs = zip(cells[(endpoint, "on")], cells[(endpoint, "off")], strict=True)
        return statistics.median(on.rps / max(off.rps, 1e-9) for on, off in pairs)

    targets = [
        {
            "target": f"{endpoint} req/s, metrics on / off",
            "measured": round(ratio(endpoint), 3),
            "goal": f">= {PING_TARGET}" if endpoint == "ping" else "-",
            "verdict": verdict(ratio(endpoint), PING_TARGET) if endpoint == "ping" else "-",
        }
        for endpoint in specs
    ]
    print()
    print(
        table(
            ["endpoint", "metrics", "req/s", "p50 ms", "p99 ms", "failed"],
            [[e, b, r["rps"], r["p50_ms"], r["p99_ms"], r["failed"]] for (e, b), r in rows.items()],
        )
    )
    print()
    print(
        table(
            TARGET_COLUMNS,
            [[t["target"], t["measured"], t["goal"], t["verdict"]] for t in targets],
        )
    )
    failed = sum(r["failed"] for r in rows.values())
    run.save(
        {
            "parameters": {
                "duration_s": args.duration,
                "rounds": args.rounds,
                "connections": CONNECTIONS,
                "scrape_interval_s": SCRAPE_INTERVAL,
                "scrapes": len(scrapes),
                "scrape_ms_median_max": scrape_ms,
                "metrics_files_at_end": recorded_files,
                "load_driver": rows[("ping", "on")]["runs"][0]["driver"],
            },
            "cells": [{"endpoint": e, "metrics": b, **r} for (e, b), r in rows.items()],
            "targets": targets,
            "failed_total": failed,
        },
        [
            Panel(
                f"req/s at {CONNECTIONS} connections",
                "req/s",
                list(specs),
                {name: [rows[(e, name)]["rps"] for e in specs] for name in bundles},
            )
        ],
    )
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
