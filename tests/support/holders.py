"""A check both backends' tests of ImpactIndex.holders (api.storage.topk) share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from api.storage import bm25, topk


def best_first(found: Iterable[tuple[int, float, Any]]) -> list[tuple[float, int]]:
    """Chunks (seq, score, row) as (score, -seq), best first: ties to the older chunk."""
    return sorted(((value, -seq) for seq, value, _ in found), reverse=True)


def least_leaves_out(
    index: topk.ImpactIndex,
    asked: tuple[str, Sequence[str], str, bm25.Stats, Sequence[str]],
    found: Sequence[tuple[int, float, Any]],
    best: list[tuple[float, int]],
) -> bool:
    """With the 8th of ``best`` (the term's best ``len(best)``, every chunk scored) kept,
    holders still gives those of ``best`` it does not beat, scores and order; whether it left
    out chunks that ``found`` (holders with nothing kept) holds. ``asked``: term, visited, the
    dataset, the statistics, the terms."""
    term, visited, dataset, stats, terms = asked
    least = best[7][0]
    floored = index.holders(term, visited, [dataset], [], stats, terms, len(best), least)
    wanted = [entry for entry in best if not topk.beats(least, entry[0])]
    assert best_first(floored)[: len(wanted)] == wanted
    return len(floored) < len(found)
