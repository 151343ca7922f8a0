"""Checks that both backends' tests of bounded ranking (api.storage.topk) share."""

from __future__ import annotations

from collections.abc import Sequence

from api.storage import bm25, topk


def holders_given_least(
    index: topk.ImpactIndex,
    term: str,
    visited: Sequence[str],
    dataset: str,
    stats: bm25.Stats,
    terms: Sequence[str],
    best: Sequence[tuple[float, int]],
) -> bool:
    """Given the 4th of ``best`` (the best 16 (score, -seq) of the chunks holding ``term`` and
    none of ``visited``, each scored) as the best score found before, ``index.holders`` gives
    every chunk that could reach it, ties too, with its score. False when ``best`` holds too
    few to check."""
    if len(best) <= 4:
        return False
    least = best[3][0]
    found = index.holders(term, visited, [dataset], [], stats, terms, 16, least)
    reach = sorted(((value, -seq) for seq, value, _ in found if value >= least), reverse=True)
    assert reach[:16] == [entry for entry in best if entry[0] >= least], (term, visited)
    return True
