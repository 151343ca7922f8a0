"""Benchmark 5: ingestion and retrieval at scale.

- Two production bundles, WS=1 and WS=2 (fresh DATA_DIR each), take turns over ROUNDS rounds
  (medians reported): upload DOCS text documents of ~5 KB (50 per request) into a new dataset,
  start parsing all of them, poll until every one is DONE, then check that sampled documents
  are found by retrieval (each carries a unique word); then the same for DOCX_DOCS DOCX files
  of the same text. Reports documents/s of parsing and the time from the first upload until all
  documents are searchable. Plain text costs little to parse, so its rate is bound by the
  database writes, which one writer at a time makes; DOCX parsing dominates. Each round also
  measures what a second core gives here (two processes of pure Python over one).
- Executor idle CPU: CPU time of the executor processes over IDLE_SECONDS with an empty queue.
- Retrieval latency at 100k chunks (seeded through api.storage in bulk) at concurrency 1.

    .venv/bin/python -m bench.ingestion [--documents 1000] [--docx-documents 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench import TARGET_COLUMNS
from bench.bundle import Bundle
from bench.client import Client, seed_corpus
from bench.corpus import Corpus
from bench.load import run_load
from bench.report import Panel, Run, table, verdict

NAME = "ingestion"
UPLOAD_BATCH = 50
PARSE_DEADLINE_S = 240.0
IDLE_SECONDS = 10.0
SEARCH_SAMPLES = 20
BIG_CHUNKS = 100_000
LATENCY_SECONDS = 6.0
LATENCY_WINDOWS = 3


def executor_idle_cpu(bundle: Bundle) -> dict[str, Any]:
    """Percent of one core each executor used while idle for IDLE_SECONDS."""
    executors = bundle.executors()
    before = {p.pid: sum(p.cpu_times()[:2]) for p in executors}
    started = time.monotonic()
    time.sleep(IDLE_SECONDS)  # the measurement window itself
    wall = time.monotonic() - started
    percent = [(sum(p.cpu_times()[:2]) - before[p.pid]) / wall * 100 for p in executors]
    return {
        "executors": len(executors),
        "window_s": round(wall, 1),
        "cpu_percent_each": [round(x, 2) for x in percent],
        "cpu_percent_max": round(max(percent), 2) if percent else 0.0,
    }


def _spin(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i
    return total


def cpu_ceiling(units: int = 4, iterations: int = 5_000_000) -> float:
    """What a second core gives on this machine right now: the throughput of two processes
    of pure Python arithmetic over one, the ceiling of WS=2 / WS=1."""
    rate = {}
    for procs in (1, 2):
        started = time.perf_counter()
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            pool.map(_spin, [iterations] * units)
        rate[procs] = units / (time.perf_counter() - started)
    return round(rate[2] / rate[1], 2)


def cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def ingest(bundle: Bundle, files: list[tuple[str, bytes]], label: str) -> dict[str, Any]:
    client = Client(bundle.base_url, bundle.api_key, timeout=120)
    dataset_id = client.create_dataset(f"ingest-{label}")
    documents = len(files)
    executors = bundle.executors()
    started = time.monotonic()
    doc_ids: list[str] = []
    for i in range(0, documents, UPLOAD_BATCH):
        doc_ids += client.upload(dataset_id, files[i : i + UPLOAD_BATCH])
    uploaded = time.monotonic()
    cpu_before = cpu_seconds(executors)
    psutil.cpu_percent()  # starts the system-wide measurement window
    client.parse(dataset_id, doc_ids)
    parse_s = client.wait_documents(dataset_id, documents, PARSE_DEADLINE_S)
    parsed = time.monotonic()
    executor_cpu = (cpu_seconds(executors) - cpu_before) / (parsed - uploaded) * 100
    system_busy = psutil.cpu_percent()  # all CPUs, every process (other users included)
    sample = random.Random(3).sample(range(documents), SEARCH_SAMPLES)
    for index in sample:
        found = client.retrieve(f"marker{index:06d}", [dataset_id])
        if doc_ids[index] not in {agg["doc_id"] for agg in found["doc_aggs"]}:
            raise RuntimeError(f"document {index} is DONE but retrieval does not find it")
    searchable = time.monotonic()
    dataset = client.call("GET", "/api/v1/datasets", params={"id": dataset_id})[0]
    return {
        "documents": documents,
        "bytes": sum(len(data) for _, data in files),
        "chunks": dataset["chunk_count"],
        "upload_s": round(uploaded - started, 2),
        "parse_s": round(parse_s, 2),
        "docs_per_s": round(documents / (parsed - uploaded), 1),
        # CPU the executors used while parsing, in % of one core (sum over executors)
        "executor_cpu_percent_while_parsing": round(executor_cpu, 1),
        "system_cpu_busy_percent_while_parsing": round(system_busy, 1),
        "searchable_after_s": round(searchable - started, 2),
    }


def retrieval_latency(bundle: Bundle, corpus: Corpus) -> dict[str, Any]:
    client = Client(bundle.base_url, bundle.api_key, timeout=120)
    started = time.monotonic()
    dataset_id, _ = seed_corpus(client, bundle.data_dir, corpus.chunks(BIG_CHUNKS), documents=20)
    seed_s = time.monotonic() - started
    question = corpus.question()
    matched = client.matches(question, [dataset_id])
    spec = client.retrieval_spec(question, [dataset_id])
    run_load(bundle.base_url, [spec], 1, 1.0)  # warm-up
    # Windows of LATENCY_SECONDS, the one with the median p99 reported: a burst of other
    # work on the machine spoils one window's tail, not the figure.
    windows = sorted(
        (run_load(bundle.base_url, [spec], 1, LATENCY_SECONDS) for _ in range(LATENCY_WINDOWS)),
        key=lambda window: window.p99_ms,
    )
    result = windows[len(windows) // 2]
    print(
        f"  retrieval over {BIG_CHUNKS} chunks, c=1: p50 {result.p50_ms:.1f} ms "
        f"p99 {result.p99_ms:.1f} ms ({result.requests} requests, {result.failed} failed; "
        f"p99 of each window {[round(w.p99_ms, 1) for w in windows]})"
    )
    return {
        "chunks": BIG_CHUNKS,
        "seed_s": round(seed_s, 1),
        "question": question,
        "question_matches": matched,
        "windows": [w.as_dict() for w in windows],
        **result.as_dict(),
    }


KINDS = ("text", "docx")


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median documents/s (its own figures, not a mix of rounds), plus
    every round's rate."""
    ranked = sorted(rows, key=lambda r: r["docs_per_s"])
    return {**ranked[len(ranked) // 2], "docs_per_s_rounds": [r["docs_per_s"] for r in rows]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__)
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--docx-documents", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    run = Run(NAME)
    corpus = Corpus()
    files = {
        "text": [(f"doc{i:05d}.txt", corpus.document(i).encode()) for i in range(args.documents)],
        "docx": [(f"doc{i:05d}.docx", corpus.docx(i)) for i in range(args.docx_documents)],
    }
    rounds: list[dict[str, Any]] = []
    ceilings: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp,
        Bundle(Path(tmp) / "ws1", settings={"WS": "1"}) as ws1,
        Bundle(Path(tmp) / "ws2", settings={"WS": "2"}) as ws2,
    ):
        bundles = {1: ws1, 2: ws2}
        for bundle in bundles.values():
            bundle.start()
            bundle.wait_running()
        idle = {ws: executor_idle_cpu(bundle) for ws, bundle in bundles.items()}
        # Interleaved: a burst of other work on the machine spoils one round, not a figure.
        for number in range(args.rounds):
            ceilings.append(cpu_ceiling())
            for ws, bundle in bundles.items():
                for kind in KINDS:
                    row = {
                        "round": number,
                        "ws": ws,
                        "kind": kind,
                        **ingest(bundle, files[kind], f"{kind}-{number}"),
                    }
                    print(
                        f"  round {number} WS={ws} {kind}: {row['docs_per_s']} docs/s, "
                        f"searchable after {row['searchable_after_s']} s"
                    )
                    rounds.append(row)
        latency = retrieval_latency(ws2, corpus)
    runs = [
        {
            **median_row([r for r in rounds if (r["ws"], r["kind"]) == (ws, kind)]),
            "idle_cpu": idle[ws],
        }
        for ws in (1, 2)
        for kind in KINDS
    ]
    rate = {(r["ws"], r["kind"]): r["docs_per_s"] for r in runs}
    speedups = {kind: rate[2, kind] / rate[1, kind] for kind in KINDS}
    ceiling = statistics.median(ceilings)
    targets = [
        *(
            [f"WS=2 / WS=1 documents/s, {kind}", round(speedups[kind], 2), ">= 1.7",
             verdict(speedups[kind], 1.7)]
            for kind in KINDS
        ),
        ["two processes / one, pure Python (ceiling of the above)", ceiling, "-", "-"],
        [
            f"retrieval p99 at {BIG_CHUNKS} chunks, c=1 (ms)",
            round(latency["p99_ms"], 1),
            "<= 25",
            verdict(latency["p99_ms"], 25, higher_is_better=False),
        ],
        [
            "executor idle CPU (max, % of a core)",
            max(r["idle_cpu"]["cpu_percent_max"] for r in runs),
            "low",
            "-",
        ],
    ]  # fmt: skip
    print()
    print(
        table(
            [
                "WS",
                "files",
                "docs",
                "docs/s (median)",
                "docs/s each round",
                "searchable after s",
                "chunks",
                "executor CPU % while parsing",
            ],
            [
                [
                    r["ws"],
                    r["kind"],
                    r["documents"],
                    r["docs_per_s"],
                    " ".join(map(str, r["docs_per_s_rounds"])),
                    r["searchable_after_s"],
                    r["chunks"],
                    r["executor_cpu_percent_while_parsing"],
                ]
                for r in runs
            ],
        )
    )
    print()
    print(table(TARGET_COLUMNS, targets))
    run.save(
        {
            "parameters": {
                "documents": args.documents,
                "docx_documents": args.docx_documents,
                "rounds": args.rounds,
                "document_bytes": "~5000",
                "upload_batch": UPLOAD_BATCH,
                "idle_window_s": IDLE_SECONDS,
            },
            "cpu_ceiling_rounds": ceilings,
            "ingest": runs,
            "ingest_rounds": rounds,
            "retrieval_100k": latency,
            "targets": [dict(zip(TARGET_COLUMNS, t, strict=True)) for t in targets],
        },
        [
            Panel(
                "parse throughput (median of rounds)",
                "documents/s",
                ["WS=1", "WS=2"],
                {kind: [rate[ws, kind] for ws in (1, 2)] for kind in KINDS},
            ),
            Panel(
                "documents searchable after",
                "s",
                ["WS=1", "WS=2"],
                {
                    f"{len(files[kind])} {kind}": [
                        r["searchable_after_s"] for r in runs if r["kind"] == kind
                    ]
                    for kind in KINDS
                },
            ),
            Panel(
                f"retrieval at {BIG_CHUNKS} chunks, c=1",
                "ms",
                ["p50", "p90", "p99"],
                {"latency": [latency["p50_ms"], latency["p90_ms"], latency["p99_ms"]]},
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
