"""Retrieval's candidates against ranking every match, in process, on generated questions.

For each question (1-5 terms, frequency ranks log-uniform: bench.retrieval_scale.question_ranks)
the storage's search (the impact index when it pays, api.storage.topk) and the exhaustive one
(every match ranked: bench.exhaustive_app's path) give their top_k candidates; reported: how
often the candidate lists are identical (ids and order), the top-10 identical, recall@10, how
many questions took the index, and the median time of both on those."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from api import storage, text
from api.search import DEFAULT_TOP_K
from api.storage import topk
from bench.corpus import Corpus

TOP = 10


def _never(*args: Any, **kwargs: Any) -> topk.SearchPath:
    return topk.SearchPath.UNBOUNDED


def compare(
    data_dir: Path, dataset_id: str, ranks: list[list[int]], top_k: int = DEFAULT_TOP_K
) -> dict[str, Any]:
    backend = storage.open_backend(data_dir)
    words = Corpus().words
    identical = top10 = bounded = 0
    recall: list[float] = []
    bounded_ms: list[float] = []
    exhaustive_ms: list[float] = []
    best = topk.best
    answers: list[Any] = []  # what the index answered, the question at a time

    def watched(*args: Any, **kwargs: Any) -> Any:
        answers.append(best(*args, **kwargs))
        return answers[-1]

    try:
        store = backend.store
        for question in ranks:
            terms = text.query_terms(" ".join(words[r] for r in question))
            answers.clear()
            topk.best = watched
            started = time.perf_counter()
            got = [c["id"] for c in store.search_chunks([dataset_id], [], terms, top_k)]
            middle = time.perf_counter()
            topk.best = _never
            expected = [c["id"] for c in store.search_chunks([dataset_id], [], terms, top_k)]
            ended = time.perf_counter()
            if answers and isinstance(answers[0], list):
                bounded += 1
                bounded_ms.append((middle - started) * 1000)
                exhaustive_ms.append((ended - middle) * 1000)
            identical += got == expected
            top10 += got[:TOP] == expected[:TOP]
            if expected:
                recall.append(len(set(got[:TOP]) & set(expected[:TOP])) / len(expected[:TOP]))
    finally:
        topk.best = best
        backend.close()
    return {
        "questions": len(ranks),
        "top_k": top_k,
        "identical": identical,
        "top10_identical": top10,
        "recall_at_10": round(statistics.mean(recall), 4) if recall else 1.0,
        "bounded": bounded,
        "bounded_ms": round(statistics.median(bounded_ms), 1) if bounded_ms else 0.0,
        "bounded_exhaustive_ms": (
            round(statistics.median(exhaustive_ms), 1) if exhaustive_ms else 0.0
        ),
    }
