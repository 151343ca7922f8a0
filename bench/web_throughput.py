"""Benchmark 1: web throughput and latency, production vs dev mode vs a bare hello-world ceiling.

Three bundles run side by side in one run: production (rendered defaults), dev mode (Werkzeug
dev server with reloader and debugger), and the production bundle serving a hello-world WSGI app
instead of ours (identical supervisord, socket holder and Gunicorn settings: the ceiling). A
fourth and fifth, informational, are production and bare with GUNICORN_MAX_REQUESTS=0 (no
worker recycling). Cells
are measured one after another, the three targets interleaved: GET /v1/system/ping and
POST /api/v1/retrieval over 10k chunks, at 32 and 64 connections, DURATION seconds each.

    .venv/bin/python -m bench.web_throughput [--duration 3] [--rounds 5]
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.bundle import APP, READY_PATH, Bundle
from bench.client import PING, Client, seed_corpus
from bench.corpus import Corpus
from bench.load import LoadResult, RequestSpec, run_load, summarise
from bench.report import Panel, Run, table, verdict

NAME = "web_throughput"
CHUNKS = 10_000
CONCURRENCY = (32, 64)
NO_RECYCLING = "prod max_requests=0"
BARE_NO_RECYCLING = "bare max_requests=0"
PING_AND_RETRIEVAL = ("production", "dev")
TARGETS: tuple[tuple[str, str, str, str, float | None], ...] = (
    # (ratio name, numerator, denominator, endpoint, minimum; None: informational)
    ("prod/dev ping", "production", "dev", "ping", 3.5),
    ("prod/dev retrieval", "production", "dev", "retrieval", 1.8),
    ("prod/bare ping", "production", "bare", "ping", 0.8),
    ("bare/dev ping (ceiling of prod/dev)", "bare", "dev", "ping", None),
    ("prod/bare ping, both max_requests=0", NO_RECYCLING, BARE_NO_RECYCLING, "ping", None),
)


def measure(
    bundles: dict[str, Bundle],
    specs: dict[str, RequestSpec],
    duration: float,
    rounds: int,
) -> list[dict[str, Any]]:
    """Every (endpoint, concurrency, bundle) cell, the bundles interleaved within each round."""
    cells: dict[tuple[str, int, str], list[LoadResult]] = {}
    for _ in range(rounds):
        for endpoint, spec in specs.items():
            for conns in CONCURRENCY:
                for name, bundle in bundles.items():
                    if name not in PING_AND_RETRIEVAL and endpoint != "ping":
                        continue  # the hello-world app only answers like ping
                    result = run_load(bundle.base_url, [spec], conns, duration)
                    cells.setdefault((endpoint, conns, name), []).append(result)
                    print(
                        f"  {endpoint:9} c={conns:<3} {name:10} {result.rps:8.0f} req/s "
                        f"p99 {result.p99_ms:7.1f} ms  failed {result.failed}"
                    )
    rows = []
    for (endpoint, conns, name), results in cells.items():
        rows.append(
            {
                "endpoint": endpoint,
                "connections": conns,
                "bundle": name,
                **summarise(results),
            }
        )
    return rows


def ratios(rps: dict[tuple[str, int, str], float]) -> list[dict[str, Any]]:
    out = []
    for label, num, den, endpoint, minimum in TARGETS:
        for conns in CONCURRENCY:
            ratio = rps[(endpoint, conns, num)] / max(rps[(endpoint, conns, den)], 1e-9)
            out.append(
                {
                    "ratio": label,
                    "connections": conns,
                    "measured": round(ratio, 2),
                    "target": minimum,
                    "verdict": "-" if minimum is None else verdict(ratio, minimum),
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per cell")
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds per cell (median)"
    )
    args = parser.parse_args(argv)
    run = Run(NAME)
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        data_dir = root / "data"
        prod = stack.enter_context(Bundle(root / "prod", data_dir=data_dir))
        start_s = {"production": prod.start()}
        client = Client(prod.base_url, prod.api_key)
        corpus = Corpus()
        dataset_id, _ = seed_corpus(client, data_dir, corpus.chunks(CHUNKS))
        question = corpus.question()
        matched = client.matches(question, [dataset_id])
        print(f"seeded {CHUNKS} chunks; question {question!r} matches {matched}")
        dev = stack.enter_context(
            Bundle(root / "dev", mode="dev", data_dir=data_dir, api_key=prod.api_key)
        )
        start_s["dev"] = dev.start()
        bare = stack.enter_context(
            Bundle(root / "bare", app="bench.hello_app:application", ready_path="/")
        )
        start_s["bare"] = bare.start()
        bundles = {"production": prod, "dev": dev, "bare": bare}
        # Not targets: production and bare without worker recycling, to separate what
        # max_requests costs at these rates from what the app costs (docs/BENCHMARKS.md).
        for name, app, ready in (
            (NO_RECYCLING, APP, READY_PATH),
            (BARE_NO_RECYCLING, "bench.hello_app:application", "/"),
        ):
            bundle = Bundle(
                root / name.replace(" ", "_").replace("=", ""),
                data_dir=data_dir,
                api_key=prod.api_key,
                app=app,
                ready_path=ready,
                settings={"GUNICORN_MAX_REQUESTS": "0"},
            )
            start_s[name] = stack.enter_context(bundle).start()
            bundles[name] = bundle
        specs = {"ping": PING, "retrieval": client.retrieval_spec(question, [dataset_id])}
        for bundle in bundles.values():  # warm-up: imports, connections, page cache
            run_load(bundle.base_url, [PING], 8, 1.0)
        run_load(prod.base_url, [specs["retrieval"]], 8, 1.0)
        run_load(dev.base_url, [specs["retrieval"]], 8, 1.0)
        rows = measure(bundles, specs, args.duration, args.rounds)
        workers = len(prod.web_workers())
    rps = {(r["endpoint"], r["connections"], r["bundle"]): r["rps"] for r in rows}
    ratio_rows = ratios(rps)
    print()
    print(
        table(
            ["endpoint", "conns", "bundle", "req/s", "p50 ms", "p99 ms", "failed"],
            [
                [
                    r["endpoint"],
                    r["connections"],
                    r["bundle"],
                    r["rps"],
                    r["p50_ms"],
                    r["p99_ms"],
                    r["failed"],
                ]
                for r in rows
            ],
        )
    )
    print()
    print(
        table(
            ["ratio", "conns", "measured", "target", "verdict"],
            [
                [
                    r["ratio"],
                    r["connections"],
                    r["measured"],
                    f">= {r['target']}" if r["target"] else "-",
                    r["verdict"],
                ]
                for r in ratio_rows
            ],
        )
    )
    failed = sum(r["failed"] for r in rows)
    print(f"\nfailed requests in all cells: {failed} (required: 0)")
    panels = [
        Panel(
            f"{endpoint}: requests/s",
            "req/s",
            [f"c={c}" for c in CONCURRENCY],
            {name: [rps[(endpoint, c, name)] for c in CONCURRENCY] for name in names},
        )
        for endpoint, names in (("ping", bundles), ("retrieval", PING_AND_RETRIEVAL))
    ]
    run.save(
        {
            "parameters": {
                "duration_s": args.duration,
                "rounds": args.rounds,
                "chunks": CHUNKS,
                "question": question,
                "question_matches": matched,
                "gunicorn_workers": workers,
                "load_driver": rows[0]["runs"][0]["driver"],
            },
            "start_seconds": start_s,
            "cells": rows,
            "ratios": ratio_rows,
            "failed_total": failed,
        },
        panels,
    )
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
