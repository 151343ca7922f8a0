"""Benchmark 2: Gunicorn worker class and count on the same request mix.

Every configuration runs as its own production bundle (WS=0, so only the web tier uses the
CPU), all started at once on one shared DATA_DIR with 10k chunks; the measurement rounds
interleave the configurations so that background noise hits them alike. The mix alternates
GET /v1/system/ping and POST /api/v1/retrieval, once with keep-alive clients (wrk's default;
only gthread keeps connections open) and once with `Connection: close` on every request. The
renderer's default (no GUNICORN_* set) must be within 5% of the best configuration.

    .venv/bin/python -m bench.worker_classes [--duration 3] [--rounds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.bundle import Bundle
from bench.client import PING, Client, seed_corpus
from bench.corpus import Corpus
from bench.load import LoadResult, RequestSpec, run_load, summarise
from bench.report import Panel, Run, table, verdict

NAME = "worker_classes"
CHUNKS = 10_000
TOLERANCE = 0.05
DEFAULT = "default (renderer)"
CONFIGS: dict[str, dict[str, str]] = {
    DEFAULT: {},
    "sync w=3": {"GUNICORN_WORKERS": "3"},
    "gthread w=2 t=4": {
        "GUNICORN_WORKER_CLASS": "gthread",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": "4",
    },
    "gthread w=3 t=4": {
        "GUNICORN_WORKER_CLASS": "gthread",
        "GUNICORN_WORKERS": "3",
        "GUNICORN_THREADS": "4",
    },
    "gthread w=5 t=2": {
        "GUNICORN_WORKER_CLASS": "gthread",
        "GUNICORN_WORKERS": "5",
        "GUNICORN_THREADS": "2",
    },
    "gthread w=5 t=4": {
        "GUNICORN_WORKER_CLASS": "gthread",
        "GUNICORN_WORKERS": "5",
        "GUNICORN_THREADS": "4",
    },
}


CLIENTS = ("keep-alive", "close")  # wrk's HTTP/1.1 keep-alive, or Connection: close per request


def _closing(spec: RequestSpec) -> RequestSpec:
    return replace(spec, headers={**spec.headers, "Connection": "close"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per cell")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    run = Run(NAME)
    results: dict[tuple[str, str], list[LoadResult]] = {}
    described: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        data_dir = root / "data"
        bundles: dict[str, Bundle] = {}
        api_key = None
        for i, (name, settings) in enumerate(CONFIGS.items()):
            bundle = Bundle(
                root / f"c{i}", settings={"WS": "0", **settings}, data_dir=data_dir, api_key=api_key
            )
            stack.enter_context(bundle)
            bundle.start()
            api_key = bundle.api_key
            bundles[name] = bundle
        first = bundles[DEFAULT]
        client = Client(first.base_url, first.api_key)
        corpus = Corpus()
        dataset_id, _ = seed_corpus(client, data_dir, corpus.chunks(CHUNKS))
        mix = [PING, client.retrieval_spec(corpus.question(), [dataset_id])]
        mixes = {"keep-alive": mix, "close": [_closing(spec) for spec in mix]}
        for name, bundle in bundles.items():
            described[name] = describe(bundle)
            run_load(bundle.base_url, mix, 8, 1.0)  # warm-up
        for round_no in range(args.rounds):
            for clients, specs in mixes.items():
                for name, bundle in bundles.items():
                    result = run_load(bundle.base_url, specs, args.connections, args.duration)
                    results.setdefault((clients, name), []).append(result)
                    print(
                        f"  round {round_no + 1} {clients:10} {name:20} {result.rps:8.0f} req/s "
                        f"p99 {result.p99_ms:7.1f} ms failed {result.failed}"
                    )
    rows: list[dict[str, Any]] = [
        {
            "clients": clients,
            "config": name,
            "gunicorn": described[name],
            **summarise(runs),
        }
        for (clients, name), runs in results.items()
    ]
    verdicts = []
    for clients in CLIENTS:
        group = [r for r in rows if r["clients"] == clients]
        best = max(group, key=lambda r: r["rps"])
        default = next(r for r in group if r["config"] == DEFAULT)
        for r in group:
            r["share_of_best"] = round(r["rps"] / best["rps"], 3)
        share = default["share_of_best"]
        verdicts.append(
            {
                "clients": clients,
                "best": best["config"],
                "default_share_of_best": share,
                "verdict": verdict(share, 1 - TOLERANCE),
            }
        )
    print()
    print(
        table(
            ["clients", "config", "gunicorn", "req/s", "vs best", "p50 ms", "p99 ms", "failed"],
            [
                [
                    r["clients"],
                    r["config"],
                    r["gunicorn"],
                    r["rps"],
                    f"{r['share_of_best']:.0%}",
                    r["p50_ms"],
                    r["p99_ms"],
                    r["failed"],
                ]
                for r in rows
            ],
        )
    )
    print()
    for v in verdicts:
        print(
            f"{v['clients']}: default = {v['default_share_of_best']:.1%} of the best "
            f"({v['best']}): {v['verdict']} (target >= 95%)"
        )
    labels = [name.replace(" (renderer)", "") for name in CONFIGS]
    run.save(
        {
            "parameters": {
                "duration_s": args.duration,
                "rounds": args.rounds,
                "connections": args.connections,
                "chunks": CHUNKS,
                "mix": "GET /v1/system/ping, POST /api/v1/retrieval alternating",
                "load_driver": rows[0]["runs"][0]["driver"],
            },
            "configs": rows,
            "verdicts": verdicts,
        },
        [
            Panel(
                f"mix at c={args.connections}: requests/s",
                "req/s",
                labels,
                {c: [r["rps"] for r in rows if r["clients"] == c] for c in CLIENTS},
            ),
            Panel(
                "p99 latency",
                "ms",
                labels,
                {c: [r["p99_ms"] for r in rows if r["clients"] == c] for c in CLIENTS},
            ),
        ],
    )
    return 0


def describe(bundle: Bundle) -> str:
    """worker class, workers and threads as rendered into gunicorn.conf.py."""
    values: dict[str, str] = {}
    for line in (bundle.out_dir / "gunicorn.conf.py").read_text().splitlines():
        key, _, value = line.partition(" = ")
        if key in ("workers", "worker_class", "threads"):
            values[key] = value.strip("'\"")
    return f"{values.get('worker_class')} w={values.get('workers')} t={values.get('threads')}"


if __name__ == "__main__":
    raise SystemExit(main())
