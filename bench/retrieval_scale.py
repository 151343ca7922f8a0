"""Benchmark: retrieval as the data grows (10k, 100k, 1M chunks) on both storage backends, over
HTTP against the production bundle.

For each size, the cached seeded databases (bench.seeded: seeded once, then reused; SQLite file,
PostgreSQL database in the bench's own cluster) are served by one production bundle per backend and
per code variant (VARIANTS: the application "after" bounded ranking, "before", ranking every match,
and on SQLite "filed", retrieval as it was when issue 15 was filed), WS=0. For each question class
and concurrency (1 and 32), wrk measures p50, p99 and requests/s in a window (3 s, longer for slow
cells and for P99_ANSWERS answers one at a time: ``window_s``, from what one request costs alone, at
most 30 s), the bundles taking turns (the order alternates from cell to cell), ROUNDS times (the
median is reported). Before the first window, every web worker answers the classes' questions for
WINDOW_S at twice as many connections as workers, untimed (warm_workers): the windows measure steady
state, where a worker's first request (docs/architecture.md) is one in about a thousand
(max_requests), instead of the first class's window holding every worker's. Before each window, the
class's requests are sent once, untimed (settle): the pages are read and what a previous window left
queued is drained. After the load: each web worker's memory (USS: private; RSS - USS: shared; PSS),
the database size and the seeding time.

    .venv/bin/python -m bench.retrieval_scale [--sizes 10000 100000 1000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from api import limits
from bench import TARGET_COLUMNS
from bench.bundle import APP, Bundle
from bench.corpus import VOCABULARY_SIZE, Corpus
from bench.load import LoadResult, LoadRun, RequestSpec, summarise
from bench.report import Panel, Run, table, verdict
from bench.retrieval_quality import compare
from bench.seeded import BACKENDS, SHARED_BUFFERS, bench_cluster, database_bytes, seeded

NAME = "retrieval_scale"
SIZES = (10_000, 100_000, 1_000_000)
WINDOW_S = 3.0  # the shortest window; slow cells get longer ones (window_s)
MAX_WINDOW_S = 30.0
# Answers a window at concurrency 1 is sized for: wrk's p99 of fewer than 100 answers is their
# slowest; of 200, the third slowest.
P99_ANSWERS = 200
SETTLE_REQUESTS = 3
ROUNDS = 2
CONCURRENCY = (1, 32)
REQUEST_TIMEOUT_S = 30.0  # wrk's per-request timeout: slow answers are measured, not dropped
SETTLE_DEADLINE_S = 180.0
WORDS_PER_CHUNK = 60  # bench.corpus Corpus.chunks' default
MIB = 1024 * 1024
CPUS = len(os.sched_getaffinity(0))
# Code variants per backend, each the WSGI app serving it: "after", the application; "before",
# the same with every retrieval ranking every match (bench.exhaustive_app); on SQLite "filed",
# retrieval as it was when issue 15 was filed (bench.filed_app): the baseline its throughput
# target names. PostgreSQL's retrieval then ranked by ts_rank, not BM25: its baseline is "before".
VARIANTS = {
    backend: {"after": APP, "before": "bench.exhaustive_app:application"} for backend in BACKENDS
}
VARIANTS["sqlite"]["filed"] = "bench.filed_app:application"
# p99 targets at concurrency 1 (ms), by size: issue 12 (both backends) and issue 15 (classes)
TARGETS_MS = {100_000: 25.0, 1_000_000: 100.0}
LARGEST = "largest accepted"
THROUGHPUT_GAIN = 10.0  # req/s at 1M, c=32, after / before (issue 15)
QUALITY_CHUNKS = 100_000  # answers compared with ranking every match at this size (issue 15)


def term_share(rank: int, vocabulary: int = VOCABULARY_SIZE) -> float:
    """The probability that one word of bench.corpus text is the word of frequency ``rank``
    (Zipf, s=1, over ``vocabulary`` words)."""
    harmonic = sum(1.0 / (r + 1) for r in range(vocabulary))
    return 1.0 / (rank + 1) / harmonic


def match_share(ranks: Sequence[int], words_per_chunk: int = WORDS_PER_CHUNK) -> float:
    """The expected share of chunks holding any of the words of these ranks: the chunk's words
    are independent draws, so none of them is one of these with (1 - sum of shares)^words."""
    return 1.0 - (1.0 - sum(term_share(r) for r in set(ranks))) ** words_per_chunk


def question_ranks(
    count: int, seed: int = 99, vocabulary: int = VOCABULARY_SIZE, terms: tuple[int, int] = (1, 5)
) -> list[list[int]]:
    """``count`` questions of ``terms`` (the fewest and the most) distinct terms, each term's
    frequency rank log-uniform over the vocabulary (rare words and everyday words equally
    represented per decade)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        ranks: set[int] = set()
        size = rng.randint(*terms)
        while len(ranks) < size:
            ranks.add(int(math.exp(rng.uniform(0.0, math.log(vocabulary)))) - 1)
        out.append(sorted(ranks))
    return out


@dataclass(frozen=True)
class QuestionClass:
    name: str
    share: float  # expected share of chunks matching (the mean over the class's questions)
    bodies: list[dict[str, Any]]  # the request bodies a window cycles through (no dataset ids)
    concurrency: tuple[int, ...] = CONCURRENCY


def classes(words: Sequence[str]) -> list[QuestionClass]:
    """The question classes of issue 15, by frequency rank in bench.corpus, and the largest
    request the API accepts (api.limits)."""

    def one(label: str, ranks: Sequence[int]) -> QuestionClass:
        share = match_share(ranks)
        body = {"question": " ".join(words[r] for r in ranks)}
        return QuestionClass(f"{label} ({share:.1%})", share, [body])

    mixed = question_ranks(20)
    terms = limits.QUERY_TERMS.value
    spread = list(range(0, len(words), max(1, len(words) // terms)))[:terms]
    largest = {
        "question": " ".join(words[r] for r in spread),
        "top_k": limits.TOP_K.value,
        "page_size": limits.PAGE_SIZE.value,
    }
    return [
        one("rare", (800, 2000, 2900)),
        one("common", (10, 100, 1000)),
        one("one word", (20,)),
        one("one word", (0,)),
        QuestionClass(
            "1-5 mixed terms, 20 questions",
            statistics.mean(match_share(r) for r in mixed),
            [{"question": " ".join(words[r] for r in ranks)} for ranks in mixed],
        ),
        # one at a time only: at 1M chunks 32 of them queue for minutes (bench.abusive measures
        # what several at once do to the bundle)
        QuestionClass(LARGEST, match_share(spread), [largest], concurrency=(1,)),
    ]


def specs(bundle: Bundle, dataset_id: str, bodies: list[dict[str, Any]]) -> list[RequestSpec]:
    return [
        RequestSpec(
            "POST",
            "/api/v1/retrieval",
            body=json.dumps({**body, "dataset_ids": [dataset_id]}),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {bundle.api_key}",
            },
            expect='"chunks"' if len(bodies) == 1 else "",
        )
        for body in bodies
    ]


def settle(bundle: Bundle, mix: list[RequestSpec], deadline_s: float = SETTLE_DEADLINE_S) -> float:
    """Send the mix's first request and wait for the answer: requests a previous window left
    queued in the workers' socket are drained first, so they do not count against the next
    window, and the pages it reads are loaded. Then SETTLE_REQUESTS requests of the mix one at a
    time; returns their median seconds (what one request costs alone, to size the window)."""
    session = requests.Session()
    limit = time.monotonic() + deadline_s
    took = []
    for number in range(1 + SETTLE_REQUESTS):
        spec = mix[number % len(mix)]
        left = limit - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"the bundle did not settle in {deadline_s:.0f} s")
        started = time.monotonic()
        url = bundle.base_url + spec.path
        session.post(url, data=spec.body, headers=spec.headers, timeout=left)
        took.append(time.monotonic() - started)
    return statistics.median(took[1:])


def warm_workers(bundle: Bundle, mix: list[RequestSpec]) -> None:
    """Load ``mix`` for WINDOW_S at twice as many connections as the bundle has web workers:
    requests always wait for a worker, so each worker answers some (see the module's doc).
    Then what the load left queued is drained (settle). Fails when answers came and none was
    good: the windows would only count failures (none may come in time at 1M, ranking every
    match)."""
    connections = 2 * len(bundle.web_workers())
    found = LoadRun(
        bundle.base_url, mix, connections, WINDOW_S, timeout_s=REQUEST_TIMEOUT_S
    ).result()
    if found.requests and not found.ok:
        raise RuntimeError(
            f"no good answer while warming {bundle.base_url}'s workers ({found.requests}"
            f" requests, errors {found.errors}): every window would fail"
        )
    settle(bundle, mix)


def window_s(single_s: float, connections: int, cpus: int, bodies: int = 1) -> float:
    """A window long enough for about max(5, 2 x connections, ``bodies``) answers at the cost of
    one request alone (``single_s``, ``cpus`` answering at once), so that requests answered in
    steady state outweigh the first ones (wrk counts only answers that arrive within the window)
    and each of a class's questions is asked (wrk sends them in turn); one at a time, where the
    targets are p99s, P99_ANSWERS at least; within [WINDOW_S, MAX_WINDOW_S]."""
    least = P99_ANSWERS if connections == 1 else 5
    wanted = max(least, 2 * connections, bodies) * single_s / min(connections, cpus)
    return round(min(MAX_WINDOW_S, max(WINDOW_S, wanted)), 1)


def worker_memory(bundle: Bundle) -> dict[str, Any]:
    """Per web worker, after the load: private (USS), shared (RSS - USS) and PSS, in MiB."""
    infos = [p.memory_full_info() for p in bundle.web_workers()]
    return {
        "workers": len(infos),
        "private_mib": round(statistics.mean(i.uss for i in infos) / MIB, 1),
        "shared_mib": round(statistics.mean(i.rss - i.uss for i in infos) / MIB, 1),
        "pss_mib": round(statistics.mean(i.pss for i in infos) / MIB, 1),
        "private_mib_each": [round(i.uss / MIB, 1) for i in infos],
    }


Key = tuple[int, str, str, str, int]  # chunks, backend, variant, class, connections


def measure_size(
    size: int,
    served: dict[str, tuple[Path, str, str]],  # backend: (DATA_DIR, DATABASE_URL, dataset id)
    question_classes: list[QuestionClass],
    workdir: Path,
    rounds: int,
) -> tuple[dict[Key, list[LoadResult]], dict[tuple[str, str], dict[str, Any]]]:
    """Every window of one size, the bundles taking turns; then their workers' memory."""
    windows: dict[Key, list[LoadResult]] = {}
    memory: dict[tuple[str, str], dict[str, Any]] = {}
    with ExitStack() as stack:
        bundles: dict[tuple[str, str], Bundle] = {}
        for backend, (data_dir, url, _) in served.items():
            for variant, app in VARIANTS[backend].items():
                settings = {"WS": "0", **({"DATABASE_URL": url} if url else {})}
                bundle = stack.enter_context(
                    Bundle(workdir / f"{size}-{backend}-{variant}", settings=settings,
                           data_dir=data_dir, app=app)
                )  # fmt: skip
                bundle.start()
                bundles[backend, variant] = bundle
        for (backend, _), bundle in bundles.items():
            # every class that may run at more than one connection (not the largest request)
            bodies = [body for qc in question_classes if max(qc.concurrency) > 1
                      for body in qc.bodies]  # fmt: skip
            warm_workers(bundle, specs(bundle, served[backend][2], bodies))
        order = list(bundles)
        turn = 0
        for round_ in range(rounds):
            for qc in question_classes:
                for connections in qc.concurrency:
                    turn += 1
                    for backend, variant in order if turn % 2 else order[::-1]:
                        bundle = bundles[backend, variant]
                        mix = specs(bundle, served[backend][2], qc.bodies)
                        single_s = settle(bundle, mix)
                        window = window_s(single_s, connections, CPUS, len(mix))
                        result = LoadRun(
                            bundle.base_url, mix, connections, window, timeout_s=REQUEST_TIMEOUT_S
                        ).result()
                        key = (size, backend, variant, qc.name, connections)
                        windows.setdefault(key, []).append(result)
                        print(
                            f"  {size:>9,} r{round_} {backend:10} {variant:8} {qc.name:32} "
                            f"c={connections:<2} p50 {result.p50_ms:8.1f} p99 {result.p99_ms:8.1f}"
                            f" ms {result.rps:7.1f} req/s failed {result.failed} ({window:g} s)",
                            flush=True,
                        )
        for combo, bundle in bundles.items():
            memory[combo] = worker_memory(bundle)
    return windows, memory


def growth(
    cells: dict[Key, dict[str, Any]], sizes: Sequence[int], key: tuple[str, str, str]
) -> str:
    """p50 at each size over p50 at the size before (c=1): "x10.2, x8.1"."""
    p50 = [cells[(s, *key, 1)]["p50_ms"] for s in sizes]
    return ", ".join(f"x{b / a:.1f}" if a else "-" for a, b in itertools.pairwise(p50))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    args = parser.parse_args(argv)
    run = Run(NAME)
    question_classes = classes(Corpus().words)
    sizes = sorted(args.sizes)
    windows: dict[Key, list[LoadResult]] = {}
    seeds: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    with (
        bench_cluster() if "postgresql" in args.backends else nullcontext() as cluster,
        tempfile.TemporaryDirectory(prefix="bench-rs-") as tmp,
    ):
        for size in sizes:  # seed first (cached): the measurements then run back to back
            for backend in args.backends:
                seeded(backend, size, cluster)
        for size in sizes:
            served = {}
            for backend in args.backends:
                data_dir, url, facts = seeded(backend, size, cluster)
                served[backend] = (data_dir, url, facts.dataset_id)
                size_bytes = database_bytes(data_dir, facts, cluster)
                seeds.append({"chunks": size, "backend": backend, "seed_s": facts.seed_s,
                              "db_mib": round(size_bytes / MIB, 1)})  # fmt: skip
                print(f"{backend} {size:,}: seeded in {facts.seed_s} s, {size_bytes / MIB:.0f} MiB")
            found, mem = measure_size(size, served, question_classes, Path(tmp), args.rounds)
            windows.update(found)
            memory += [
                {"chunks": size, "backend": b, "variant": v, **m} for (b, v), m in mem.items()
            ]
        quality = {}
        if "sqlite" in args.backends and QUALITY_CHUNKS in sizes:
            data_dir, _, facts = seeded("sqlite", QUALITY_CHUNKS, cluster)
            print(f"answers against ranking every match at {QUALITY_CHUNKS:,} chunks:", flush=True)
            questions = question_ranks(200, seed=15)
            quality = {"chunks": QUALITY_CHUNKS, **compare(data_dir, facts.dataset_id, questions)}
            print(f"  {quality}", flush=True)
    cells = {key: summarise(results) for key, results in windows.items()}
    rows = [
        {"chunks": s, "backend": b, "variant": v, "class": c, "connections": n,
         "p50_ms": round(cell["p50_ms"], 1), "p99_ms": round(cell["p99_ms"], 1),
         "rps": round(cell["rps"], 1), "failed": cell["failed"], "runs": cell["runs"]}
        for (s, b, v, c, n), cell in cells.items()
    ]  # fmt: skip
    names = [qc.name for qc in question_classes]
    combos = [(b, v) for b in args.backends for v in VARIANTS[b]]
    print()
    print(
        table(
            ["chunks", "backend", "variant", "class", "c", "p50 ms", "p99 ms", "req/s", "failed"],
            [[f"{r['chunks']:,}", r["backend"], r["variant"], r["class"], r["connections"],
              r["p50_ms"], r["p99_ms"], r["rps"], r["failed"]] for r in rows],
        )
    )  # fmt: skip
    growth_rows = [
        {"backend": b, "variant": v, "class": c, "p50_growth": growth(cells, sizes, (b, v, c))}
        for b, v in combos
        for c in names
    ]
    print()
    print(table(["backend", "variant", "class", f"p50 growth {sizes}"],
                [list(g.values()) for g in growth_rows]))  # fmt: skip
    targets = []
    for size, goal in TARGETS_MS.items():
        if size not in sizes:
            continue
        for b, v in combos:
            for c in names:
                if c == LARGEST:
                    continue
                p99 = round(cells[size, b, v, c, 1]["p99_ms"], 1)
                label = f"p99 at {size:,}, c=1, {b} ({v}), {c} (ms)"
                targets.append([label, p99, f"< {goal:g}", verdict(p99, goal, False)])
    largest = max(sizes)
    for b, c in itertools.product(args.backends if largest in TARGETS_MS else [], names[1:2]):
        # the common question: issue 15's throughput target
        base = "filed" if "filed" in VARIANTS[b] else "before"
        after, before = (cells[largest, b, v, c, 32]["rps"] for v in ("after", base))
        ratio = round(after / before, 2) if before else 0.0
        label = f"req/s at {largest:,}, c=32, {b}, {c}: after / {base}"
        targets.append([label, ratio, f">= {THROUGHPUT_GAIN:g}", verdict(ratio, THROUGHPUT_GAIN)])
    if quality:
        share = quality["top10_identical"] / quality["questions"]
        label = f"top-10 identical to ranking every match, {quality['chunks']:,} chunks"
        targets.append([label, round(share, 3), ">= 0.99", verdict(share, 0.99)])
        label = f"recall@10 against ranking every match, {quality['chunks']:,} chunks"
        targets.append(
            [label, quality["recall_at_10"], ">= 0.99", verdict(quality["recall_at_10"], 0.99)]
        )
    if targets:
        print()
        print(table(TARGET_COLUMNS, targets))
    panels = [
        Panel(
            f"{c}, c={n}",
            "p99 ms (log)",
            [f"{s:,}" for s in sizes],
            {f"{b}, {v}": [cells[s, b, v, c, n]["p99_ms"] for s in sizes] for b, v in combos},
            log_y=True,
        )
        for n in CONCURRENCY[:1]
        for c in names
    ] + [
        Panel(
            f"{c}, c={CONCURRENCY[-1]}",
            "req/s (log)",
            [f"{s:,}" for s in sizes],
            {f"{b}, {v}": [cells[s, b, v, c, CONCURRENCY[-1]]["rps"] for s in sizes]
             for b, v in combos},
            log_y=True,
        )
        for c in names[:2]
    ]  # fmt: skip
    run.save(
        {
            "parameters": {
                "sizes": sizes,
                "backends": args.backends,
                "variants": VARIANTS,
                "window_s": [WINDOW_S, MAX_WINDOW_S],
                "p99_answers": P99_ANSWERS,
                "rounds": args.rounds,
                "concurrency": list(CONCURRENCY),
                "request_timeout_s": REQUEST_TIMEOUT_S,
                "classes": [
                    {
                        "name": q.name,
                        "share": round(q.share, 4),
                        "concurrency": list(q.concurrency),
                        "questions": [b["question"] for b in q.bodies],
                    }
                    for q in question_classes
                ],
                "postgresql": "the bench's own cluster (bench.seeded): fsync off, "
                f"shared_buffers {SHARED_BUFFERS} (a quarter of the machine's memory)",
            },
            "seeds": seeds,
            "memory": memory,
            "cells": rows,
            "growth": growth_rows,
            "quality": quality,
            "targets": [dict(zip(TARGET_COLUMNS, t, strict=True)) for t in targets],
        },
        panels,
        columns=4,
    )
    return 0 if all(r["failed"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
