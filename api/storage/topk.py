"""The best chunks by BM25 without ranking every chunk that holds a common word.

Ranking every match costs time in proportion to how many chunks hold the question's words:
about a second for an everyday word at a million chunks. The impact index keeps, for each chunk,
its weightiest terms with the bucket of their weight (bm25.impact_terms). Here each term's
chunks are visited bucket by bucket, heaviest first, then (last) all the term's other chunks;
each visited chunk is scored exactly (bm25.scorer). A chunk not visited yet holds each term with
at most the weight of that term's next bucket (scaled by how much the mean chunk length has
grown since the weights were indexed, Stats.drift), so it scores at most the sum, over terms, of
idf x that weight. As soon as ``limit`` visited chunks score above that sum, they are the best
``limit`` of all: the exhaustive answer, chunk for chunk, in the same order (ties to the older
chunk). Each step visits the next bucket of the term whose bound is largest.

When ranking every match would cost less than the visits (few matches), or the visits would
exceed ``BUDGET`` chunks before the bound is met (several everyday words together, whose sum
falls slowly; a small dataset beside a large one), ``best`` returns None and the caller ranks
every match: the answer is always the exhaustive one."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any, Protocol

from api.storage import bm25

# Visit at most this many chunks; past it, ranking every match is the cheaper exact answer.
BUDGET = 8192
# Scoring a visited chunk in Python costs about as much as FTS5 ranking this many matches
# (measured: ~12 us against ~0.5 us): below matches / VISIT_COST visits, visiting is cheaper.
VISIT_COST = 24
# A hair above 1: the bound counts as met only when the best beat it by more than rounding.
_MARGIN = 1.0 + 1e-9


class ImpactIndex(Protocol):
    """What a backend's full-text index offers for bounded ranking."""

    def stats(self, terms: Sequence[str]) -> bm25.Stats:
        """The index's statistics, with the hits of ``terms``."""

    def holding(self, term: str, bucket: int) -> list[int]:
        """The chunks (seq) holding ``term`` in impact ``bucket``; for -1, every chunk
        holding it."""

    def rows(
        self, seqs: Sequence[int], dataset_ids: Sequence[str], doc_ids: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        """Of ``seqs``, the available chunks of ``dataset_ids`` (and ``doc_ids``): (seq, id,
        doc_id, docnm, content, important_keywords, questions (JSON text), tokens)."""


def best(
    index: ImpactIndex,
    dataset_ids: Sequence[str],
    doc_ids: Sequence[str],
    terms: Sequence[str],
    limit: int,
) -> list[tuple[Any, ...]] | None:
    """The best ``limit`` chunks holding any of ``terms``, best first: (id, doc_id, docnm,
    content, important_keywords, questions, bm25) with bm25 as FTS5's (negative, lower is
    better); None when ranking every match is the cheaper way to the same answer."""
    if any(bm25.words(t) != [t] for t in terms):
        return None  # a term the index holds as several words: only a phrase query finds it
    stats = index.stats(terms)
    terms = [t for t in dict.fromkeys(terms) if stats.hits.get(t)]
    visits = min(BUDGET, sum(stats.hits[t] for t in terms) // VISIT_COST)
    if not terms or visits < limit:
        return None
    idfs = [stats.idf(t) for t in terms]
    # per term, the impact bucket visited last (IMPACT_BUCKETS: none yet; -1 stands for the
    # term's other chunks, visited last; then done)
    done = -2
    step = dict.fromkeys(terms, bm25.IMPACT_BUCKETS)

    def bound(term: str, idf: float) -> float:
        """The most ``term`` adds to the score of a chunk not visited yet."""
        if step[term] == done:
            return 0.0
        return idf * bm25.bucket_ceiling(step[term] - 1) * stats.drift

    score = bm25.scorer(stats, terms)
    seen: set[int] = set()
    kept: list[tuple[float, int, tuple[Any, ...]]] = []  # the best ``limit``: (score, -seq, row)
    while True:
        bounds = {t: bound(t, idf) for t, idf in zip(terms, idfs, strict=True)}
        if len(kept) == limit and kept[0][0] > sum(bounds.values()) * _MARGIN:
            break
        nxt = max((t for t in terms if step[t] != done), key=bounds.__getitem__, default=None)
        if nxt is None:  # every chunk holding a term was visited
            break
        step[nxt] -= 1
        new = [seq for seq in index.holding(nxt, step[nxt]) if seq not in seen]
        if step[nxt] == -1:
            step[nxt] = done
        if len(seen) + len(new) > visits:
            return None
        seen.update(new)
        for seq, *row, tokens in index.rows(new, dataset_ids, doc_ids):
            entry = (score(row[3], row[2], row[4], row[5], tokens), -seq, tuple(row))
            if len(kept) < limit:
                heapq.heappush(kept, entry)
            elif entry > kept[0]:
                heapq.heapreplace(kept, entry)
    return [(*row, -value) for value, _, row in sorted(kept, reverse=True)]
