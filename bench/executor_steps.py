"""What one executor spends per document, in process, on SQLite and on PostgreSQL side by side:
milliseconds per document in each step of the worker's path (claim, fetching the upload,
parsing, complete-and-claim) and the statements and round trips it sends per document.

The loop is the executor worker's own (api.task_executor: ``local_copy``, ``build_chunks``,
``complete_and_claim``) over N queued ~5 KB plain-text documents (bench.corpus), one executor,
no HTTP and no supervisord: what remains is the storage cost of a document. The backends take
turns, round by round, each round on fresh documents. Statements and round trips are counted
in an extra round (tests/support/statements.py: SQLite's trace callback, libpq's protocol
trace). PostgreSQL: ``--database-url``, or a throwaway cluster (tests/support/postgres.py:
fsync off, as the other benchmarks run it).

    .venv/bin/python -m bench.executor_steps [--documents 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import collections
import io
import statistics
import tempfile
import time
from pathlib import Path

from support import statements

from api import storage
from api.parsing import limits as parse_limits
from api.parsing.pipeline import build_chunks
from bench import postgres_url
from bench.corpus import Corpus
from bench.report import table

NAME = "executor_steps"
LEASE = 60.0
STEPS = ("claim", "file", "parse", "complete")


def _queue(backend: storage.Backend, corpus: Corpus, count: int, start: int) -> None:
    dataset = backend.store.create_dataset("t", {"name": f"steps{start}", "parser_config": {}})
    uploads = [
        storage.Upload(f"doc{i:05d}.txt", "txt", "t", io.BytesIO(corpus.document(i).encode()))
        for i in range(start, start + count)
    ]
    docs = backend.store.add_documents(dataset, uploads, "t")
    backend.tasks.enqueue_parse(dataset["id"], [doc["id"] for doc in docs])


def _drain(backend: storage.Backend, count: int) -> dict[str, float]:
    """The executor worker's path until the queue is empty: seconds spent in each step."""
    limits = parse_limits.load({})
    spent = dict.fromkeys(STEPS, 0.0)
    clock = time.perf_counter
    began = clock()
    task = backend.tasks.claim("bench_1", LEASE)
    spent["claim"] += clock() - began
    done = 0
    while task is not None:
        began = clock()
        with backend.store.local_copy({"id": task.doc_id, "dataset_id": task.dataset_id}) as path:
            fetched = clock()
            chunks = build_chunks(
                path, suffix=task.suffix, parser_config=task.parser_config, limits=limits
            )
            parsed = clock()
        completed, task = backend.tasks.complete_and_claim(task, chunks, LEASE)
        spent["file"] += fetched - began
        spent["parse"] += parsed - fetched
        spent["complete"] += clock() - parsed
        done += completed
    if done != count:
        raise RuntimeError(f"{done} of {count} documents completed")
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__)
    parser.add_argument("--documents", type=int, default=200, help="per backend and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args(argv)
    corpus = Corpus()
    n = args.documents
    ms: dict[str, dict[str, list[float]]] = {}
    counts: dict[str, collections.Counter[str]] = {}
    with (
        postgres_url(args.database_url) as url,
        tempfile.TemporaryDirectory(prefix="bench-steps-") as tmp,
    ):
        backends = {
            "sqlite": storage.open_backend(Path(tmp) / "sqlite"),
            "postgresql": storage.open_backend(Path(tmp) / "postgresql", url),
        }
        ms = {name: {step: [] for step in STEPS} for name in backends}
        start = 0
        for _ in range(args.rounds):
            for name, backend in backends.items():
                _queue(backend, corpus, n, start)
                start += n
                for step, seconds in _drain(backend, n).items():
                    ms[name][step].append(seconds * 1000 / n)
        for name, backend in backends.items():
            _queue(backend, corpus, n, start)
            start += n
            with statements.counting(name, url) as counting:
                _drain(backend, n)
                counts[name] = counting.take()
        for backend in backends.values():
            backend.close()
    rows = []
    for name, steps in ms.items():
        medians = {step: statistics.median(values) for step, values in steps.items()}
        rows.append(
            [
                name,
                *(round(medians[step], 2) for step in STEPS),
                round(sum(medians.values()), 2),
                round(sum(medians.values()) - medians["parse"], 2),
                round(counts[name]["statements"] / n, 1),
                round(counts[name]["round trips"] / n, 1),
            ]
        )
    print(f"{n} documents of ~5 KB per backend and round, {args.rounds} rounds (median of rounds)")
    print(
        table(
            [
                "backend",
                *(f"{step} ms/doc" for step in STEPS),
                "total ms/doc",
                "storage ms/doc",
                "statements/doc",
                "round trips/doc",
            ],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
