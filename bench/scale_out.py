"""Benchmark: the PostgreSQL backend side by side with SQLite, and two bundles on one database.

1. Executor scaling. Four production bundles: SQLite WS=1 and WS=2 (a DATA_DIR each), PostgreSQL
   WS=1 and WS=2 (a database each, on one throwaway cluster) take turns over ROUNDS rounds,
   each ingesting DOCUMENTS plain-text documents (~5 KB; their cost is the database writes).
   Each round also measures the machine's two-process ceiling (two processes of pure Python
   over one). Reported: WS=2 / WS=1 per backend and its share of the ceiling.
2. Two bundles, one database. Bundle A (WS=1) alone, then A and B (WS=1 each, one PostgreSQL
   database; the uploads go through A, both bundles' executors parse), interleaved by stopping
   and starting B's executor. On one 2-core machine this measures the overhead of sharing, not
   scale: both bundles share the same two cores.
3. Retrieval on both backends over CHUNKS chunks (seeded through api.storage in bulk), one
   question of three mid-frequency words, at concurrency 1 and 32.

The cluster is the test suite's throwaway cluster (tests/support/postgres.py: initdb as a
non-root user on 127.0.0.1, fsync and synchronous_commit off), so PostgreSQL's commits here cost
no disk flush; SQLite runs as the bundle configures it (WAL, synchronous=NORMAL).

    .venv/bin/python -m bench.scale_out [--documents 600] [--rounds 3] [--chunks 100000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import REPO_ROOT, TARGET_COLUMNS
from bench.bundle import Bundle
from bench.client import Client, seed_corpus
from bench.corpus import Corpus
from bench.ingestion import cpu_ceiling, ingest, median_row
from bench.load import LoadResult, run_load, summarise
from bench.report import Panel, Run, table, verdict

NAME = "scale_out"
SCALING_TARGET = 0.9  # WS=2 / WS=1 on PostgreSQL, as a share of the two-process ceiling
LATENCY_SECONDS = 5.0
CONCURRENCY = (1, 32)
BACKENDS = ("sqlite", "postgresql")
EXECUTOR = "task_executor:task_executor_00"


def scaling(
    bundles: dict[tuple[str, int], Bundle], files: list[tuple[str, bytes]], rounds: int
) -> tuple[list[dict[str, Any]], list[float]]:
    rows: list[dict[str, Any]] = []
    ceilings: list[float] = []
    for number in range(rounds):
        ceilings.append(cpu_ceiling())
        order = list(bundles.items())
        if number % 2:
            order.reverse()
        for (backend, ws), bundle in order:
            row = {"round": number, "backend": backend, "ws": ws,
                   **ingest(bundle, files, f"{backend}-{ws}-{number}")}  # fmt: skip
            print(f"  round {number} {backend} WS={ws}: {row['docs_per_s']} docs/s")
            rows.append(row)
    return rows, ceilings


def sharing(
    a: Bundle, b: Bundle, files: list[tuple[str, bytes]], rounds: int
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for number in range(rounds):
        for bundles in ("one", "two") if number % 2 == 0 else ("two", "one"):
            b.supervisorctl("start" if bundles == "two" else "stop", EXECUTOR)
            row = {"round": number, "bundles": bundles,
                   **ingest(a, files, f"share-{bundles}-{number}")}  # fmt: skip
            print(f"  round {number} {bundles} bundle(s): {row['docs_per_s']} docs/s")
            rows.append(row)
    b.supervisorctl("start", EXECUTOR)
    return rows


def retrieval(bundles: dict[str, Bundle], corpus: Corpus, chunks: int) -> list[dict[str, Any]]:
    contents = corpus.chunks(chunks)
    question = corpus.question()
    specs = {}
    seeding: dict[str, float] = {}
    for backend, bundle in bundles.items():
        client = Client(bundle.base_url, bundle.api_key, timeout=120)
        started = time.monotonic()
        dataset_id, _ = seed_corpus(
            client, bundle.data_dir, contents, 20, bundle.env.get("DATABASE_URL", "")
        )
        seeding[backend] = round(time.monotonic() - started, 1)
        specs[backend] = client.retrieval_spec(question, [dataset_id])
        run_load(bundle.base_url, [specs[backend]], 1, 1.0)  # warm-up
        print(f"  seeded {chunks} chunks on {backend} in {seeding[backend]} s")
    cells: dict[tuple[str, int], list[LoadResult]] = {}
    for number in range(3):  # interleaved windows: the median of each cell is reported
        for connections in CONCURRENCY:
            for backend in BACKENDS if number % 2 == 0 else BACKENDS[::-1]:
                result = run_load(
                    bundles[backend].base_url, [specs[backend]], connections, LATENCY_SECONDS
                )
                cells.setdefault((backend, connections), []).append(result)
    rows = []
    for (backend, connections), results in cells.items():
        row = summarise(results)
        rows.append({"backend": backend, "connections": connections, "chunks": chunks,
                     "seed_s": seeding[backend], **row})  # fmt: skip
        print(
            f"  retrieval {backend} c={connections}: p50 {row['p50_ms']:.1f} ms "
            f"p99 {row['p99_ms']:.1f} ms, {row['rps']:.0f} req/s, failed {row['failed']}"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__)
    parser.add_argument("--documents", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=100_000)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from support.postgres import start_cluster

    run = Run(NAME)
    corpus = Corpus()
    files = [(f"doc{i:05d}.txt", corpus.document(i).encode()) for i in range(args.documents)]
    cluster = start_cluster()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, ExitStack() as stack:
            root = Path(tmp)

            def bundle(name: str, ws: int, url: str, api_key: str | None = None) -> Bundle:
                settings = {"WS": str(ws), "GUNICORN_WORKERS": "2"}
                if url:
                    settings["DATABASE_URL"] = url
                started = stack.enter_context(
                    Bundle(root / name, settings=settings, api_key=api_key)
                )
                started.start()
                started.wait_running()
                return started

            bundles = {
                (backend, ws): bundle(
                    f"{backend}-ws{ws}",
                    ws,
                    cluster.create_database() if backend == "postgresql" else "",
                )
                for backend in BACKENDS
                for ws in (1, 2)
            }
            print("executor scaling:")
            scaled, ceilings = scaling(bundles, files, args.rounds)
            print("two bundles on one database:")
            a = bundles["postgresql", 1]
            b = bundle("postgresql-b", 1, a.env["DATABASE_URL"], api_key=a.api_key)
            shared = sharing(a, b, files, args.rounds)
            print("retrieval:")
            found = retrieval({name: bundles[name, 1] for name in BACKENDS}, corpus, args.chunks)
    finally:
        cluster.stop()
    ceiling = statistics.median(ceilings)
    rate = {
        (backend, ws): median_row([r for r in scaled if (r["backend"], r["ws"]) == (backend, ws)])[
            "docs_per_s"
        ]
        for backend in BACKENDS
        for ws in (1, 2)
    }
    speedup = {backend: rate[backend, 2] / rate[backend, 1] for backend in BACKENDS}
    share_rate = {
        n: median_row([r for r in shared if r["bundles"] == n])["docs_per_s"]
        for n in ("one", "two")
    }
    targets = [
        *(
            [f"WS=2 / WS=1 documents/s, {backend}", round(speedup[backend], 2), "-", "-"]
            for backend in BACKENDS
        ),
        ["two processes / one, pure Python (the ceiling)", ceiling, "-", "-"],
        [
            "WS=2 / WS=1 on PostgreSQL, share of the ceiling",
            round(speedup["postgresql"] / ceiling, 2),
            f">= {SCALING_TARGET}",
            verdict(speedup["postgresql"] / ceiling, SCALING_TARGET),
        ],
        ["two bundles / one bundle on one database, documents/s",
         round(share_rate["two"] / share_rate["one"], 2), "-", "-"],
    ]  # fmt: skip
    print()
    rounds_of = {
        key: " ".join(str(r["docs_per_s"]) for r in scaled if (r["backend"], r["ws"]) == key)
        for key in rate
    }
    print(
        table(
            ["backend", "WS", "docs/s (median)", "docs/s each round"],
            [[backend, ws, rate[backend, ws], rounds_of[backend, ws]] for backend, ws in rate],
        )
    )
    print()
    print(
        table(
            ["backend", "connections", "p50 ms", "p99 ms", "req/s", "failed"],
            [
                [r["backend"], r["connections"], r["p50_ms"], r["p99_ms"], r["rps"], r["failed"]]
                for r in found
            ],
        )
    )
    print()
    print(table(TARGET_COLUMNS, targets))
    run.save(
        {
            "parameters": {
                "documents": args.documents,
                "rounds": args.rounds,
                "chunks": args.chunks,
                "gunicorn_workers": 2,
                "postgresql": "throwaway cluster, fsync=off, synchronous_commit=off",
            },
            "cpu_ceiling_rounds": ceilings,
            "scaling_rounds": scaled,
            "docs_per_s": [
                {"backend": backend, "ws": ws, "docs_per_s": rate[backend, ws]}
                for backend in BACKENDS
                for ws in (1, 2)
            ],
            "sharing_rounds": shared,
            "sharing_docs_per_s": share_rate,
            "retrieval": [{k: v for k, v in r.items() if k != "runs"} for r in found],
            "targets": [dict(zip(TARGET_COLUMNS, t, strict=True)) for t in targets],
        },
        [
            Panel(
                "parse throughput, plain text (median of rounds)",
                "documents/s",
                ["WS=1", "WS=2"],
                {backend: [rate[backend, ws] for ws in (1, 2)] for backend in BACKENDS},
            ),
            Panel(
                f"retrieval at {args.chunks} chunks",
                "p99 ms",
                [f"c={c}" for c in CONCURRENCY],
                {
                    backend: [
                        next(
                            r["p99_ms"]
                            for r in found
                            if (r["backend"], r["connections"]) == (backend, c)
                        )
                        for c in CONCURRENCY
                    ]
                    for backend in BACKENDS
                },
            ),
        ],
    )
    failed = sum(r["failed"] for r in found)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
