"""The best chunks by BM25 without ranking every chunk that holds a common word.

Ranking every match costs time in proportion to how many chunks hold the question's words:
about a second for an everyday word at a million chunks. The impact index keeps, for each chunk,
its weightiest terms with the bucket of their weight (bm25.impact_terms); each bucket has a
ceiling, the most a term in it weighed when indexed (scaled by Stats.drift: how much the mean
chunk length has grown since), and a term below every bucket (or absent) weighs at most
bm25.IMPACT_FLOOR. Every visited chunk is scored exactly (bm25.scorer).

A term in half the chunks or more weighs next to nothing (idf's floor, bm25.LEAST_IDF): it adds
at most its idf x bm25.WEIGHT_LIMIT to any chunk. Such a "slight" term raises every bound below
by that much (the slack) instead of splitting the cells, unless every term is slight.

1. The rare terms have all their chunks visited first: the rarest term's, then the next
   one's (those not holding the rarer), while the chunks whose other terms all lie below their
   buckets could still enter (the cells could not bound them) and these visits cost at most
   RARE_SHARE x the visits allowed (ImpactIndex.holders: the full-text index may rank the
   chunks instead of scoring each, since every way of ranking sums in ``summing_order``, the
   rare terms last; a chunk that cannot reach the ``limit``-th best kept so far is left out).
2. Every other chunk lies in one cell: for each common term, the bucket it has in the chunk (or
   "below"). A cell's chunks score at most the slack plus the sum, over common terms, of idf x
   that bucket's ceiling. Cells are visited best bound first (a cell's successors lower one
   term's bucket by one step), through the index (``chunks in these buckets and in none of
   those``).
3. As soon as the ``limit``-th best visited chunk beats the bound of the next cell, nothing
   unvisited can enter: the answer is the exhaustive one, chunk for chunk, in the same order
   (ties to the older chunk).
4. When the cells cannot bound a question holding slight terms, the full-text index ranks the
   chunks of its other terms alone (far fewer matches than with an everyday word), and they are
   visited best first until the next one, at most its rank plus the slack, cannot enter; the
   chunks holding only slight terms score at most the slack.

With more than MOST_TERMS terms, when ranking every match would cost less than the visits (few
matches), or when the visits (a cell counting as CELL_COST of them) would pass the visits
allowed (matches / ImpactIndex.visit_cost, at most BUDGET) or only the cell of chunks with
every common term below its buckets is left (they are not in the index) and step 4 does not
apply or ends unbounded, ``best`` says why (a SearchPath) and the caller ranks every match: the
answer is always the exhaustive one. ``search`` counts each search by its path (api.metrics)."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, Protocol

from api import metrics
from api.storage import bm25

# Visit at most this many chunks.
BUDGET = 32_768
# Asking the index for a cell's chunks costs about as much as visiting this many.
CELL_COST = 64
# When the impact index cannot bound a question holding terms in half the chunks or more, the
# full-text index ranks its other terms' chunks; this many times ``limit`` of them are visited,
# at most.
RANKED = 4
# The rare terms' chunks (step 1) may cost up to this many times the visits allowed (the cells
# keep theirs): ranking every match ranks those chunks too, and more.
RARE_SHARE = 2
# Questions of more terms rank every match: a visit's scoring grows with the terms, and so do
# the cells, while their bounds loosen (a chunk holding many of the question's common words once
# each could outweigh the best found), so the visits more often end without an answer; at 1M
# chunks, questions of 20 terms were all slower through the bound than ranking every match, of
# 9-12 terms mostly faster (docs/BENCHMARKS.md, "Questions of 9 to 12 terms").
MOST_TERMS = 12
# A hair above 1: the bound counts as met only when the best beat it by more than rounding.
_MARGIN = 1.0 + 1e-9
BELOW = -1  # a common term's place in a cell: below every bucket, or absent
# A chunk as search returns it: id, doc_id, docnm, content, important_keywords, questions (JSON
# text); read from chunks ``c`` by ROW_SQL
Row = tuple[Any, ...]
ROW_SQL = "c.id, c.doc_id, c.docnm, c.content, c.important_keywords, c.questions"


class ImpactIndex(Protocol):
    """What a backend's full-text index offers for bounded ranking."""

    # Visits are allowed up to the matches / this: a backend sets it so that visits ending
    # without reaching the bound cost a small share of ranking every match (SQLite: about 7/16).
    visit_cost: int

    def stats(self, terms: Sequence[str]) -> bm25.Stats:
        """The index's statistics, with the hits of ``terms``."""

    def buckets(self, term: str) -> list[int]:
        """The impact buckets ``term`` has chunks in, heaviest first."""

    def holders_cost(
        self, term: str, visited: Sequence[str], stats: bm25.Stats, terms: Sequence[str]
    ) -> int:
        """What ``holders`` costs, in visits (at most the chunks holding ``term``)."""

    def holders(
        self,
        term: str,
        visited: Sequence[str],
        dataset_ids: Sequence[str],
        doc_ids: Sequence[str],
        stats: bm25.Stats,
        terms: Sequence[str],
        count: int,
        least: float = 0.0,
    ) -> list[tuple[int, float, Row | None]]:
        """Of the chunks holding ``term`` and none of ``visited`` that are in scope, at least
        the best ``count`` of those that could reach ``least`` (the ``count``-th best score
        found so far, 0.0 while fewer are: a chunk below it cannot enter), as ``scores`` gives
        them."""

    def ranked(self, terms: Sequence[str], count: int) -> list[tuple[int, float]]:
        """The ``count`` chunks best by BM25 over ``terms`` (seq, BM25 positive), best first."""

    def cell(self, places: dict[str, int], ladders: dict[str, list[int]], most: int) -> list[int]:
        """At most ``most`` of the chunks (seq) holding each term of ``places`` in that bucket,
        or (BELOW) in none of its buckets ``ladders[term]``; at least one place is a bucket."""

    def scores(
        self,
        seqs: Sequence[int],
        dataset_ids: Sequence[str],
        doc_ids: Sequence[str],
        stats: bm25.Stats,
        terms: Sequence[str],
        absent: Sequence[str] = (),
    ) -> list[tuple[int, float, Row | None]]:
        """Of ``seqs``, the available chunks of ``dataset_ids`` (and ``doc_ids``) holding none
        of ``absent`` (terms of ``terms``), each with its BM25 over ``terms`` (positive;
        bm25.scorer's, bit for bit) and its Row when scoring read it (else None: ``rows`` reads
        it, should the chunk be kept)."""

    def rows(self, seqs: Sequence[int]) -> dict[int, Row]:
        """The Rows of the chunks ``seqs``, by seq."""


Entry = tuple[float, int, Row | None]  # (score, -seq, row): heapq keeps the worst first


class SearchPath(StrEnum):
    """How a search was answered: through the bound, or by ranking every match, and why
    (ragflow_retrieval_searches_total's ``path``)."""

    BOUNDED = "bounded"
    FEW_MATCHES = "few_matches"  # ranking every match costs less than the visits would
    MANY_TERMS = "many_terms"  # more than MOST_TERMS terms
    PHRASE = "phrase"  # a term the full-text index holds as several words
    UNBOUNDED = "unbounded"  # the visits allowed ended without an answer


def summing_order(stats: bm25.Stats, terms: Sequence[str]) -> list[str]:
    """``terms`` once each, the most chunks first and the rarest last (ties by the term): the
    order every way of ranking a search sums BM25 in (sums in another order can differ in the
    last bit), the rare terms last so that a full-text index can rank their chunks with the
    other terms ahead of them (ImpactIndex.holders)."""
    return sorted(dict.fromkeys(terms), key=lambda term: (-stats.hits.get(term, 0), term))


def search(
    index: ImpactIndex,
    dataset_ids: Sequence[str],
    doc_ids: Sequence[str],
    terms: Sequence[str],
    limit: int,
    rank_all: Callable[[list[str]], Sequence[Sequence[Any]]],
) -> Sequence[Sequence[Any]]:
    """A backend's search: ``best`` when the bound pays, else ``rank_all`` (every match ranked,
    summing in the order it is given), both in the summing order; counted by its SearchPath."""
    ordered = summing_order(index.stats(terms), terms)
    found = best(index, dataset_ids, doc_ids, ordered, limit)
    metrics.searched(path_of(found))
    return found if isinstance(found, list) else rank_all(ordered)


def path_of(found: list[tuple[Any, ...]] | SearchPath) -> SearchPath:
    """The path of ``best``'s answer: BOUNDED for the chunks it found, else the one it gave."""
    return found if isinstance(found, SearchPath) else SearchPath.BOUNDED


def best(
    index: ImpactIndex,
    dataset_ids: Sequence[str],
    doc_ids: Sequence[str],
    terms: Sequence[str],
    limit: int,
) -> list[tuple[Any, ...]] | SearchPath:
    """The best ``limit`` chunks holding any of ``terms``, best first: (id, doc_id, docnm,
    content, important_keywords, questions, bm25) with bm25 as FTS5's (negative, lower is
    better); else why ranking every match is the way to the answer (a SearchPath)."""
    if len(terms) > MOST_TERMS:
        return SearchPath.MANY_TERMS
    if any(bm25.words(t) != [t] for t in terms):
        return SearchPath.PHRASE  # only a phrase query finds it
    stats = index.stats(terms)
    terms = [t for t in dict.fromkeys(terms) if stats.hits.get(t)]
    visits = min(BUDGET, sum(stats.hits[t] for t in terms) // index.visit_cost)
    if not terms or visits < limit:
        return SearchPath.FEW_MATCHES
    # the slight terms (above) raise every bound by their slack instead of splitting the cells
    slight = [t for t in terms if stats.slight(t)]
    weighty = [t for t in terms if t not in slight] or slight
    slack = stats.slack(t for t in slight if t not in weighty)
    visited: list[str] = []  # the rare terms whose chunks were visited (the cells keep theirs)
    seen: set[int] = set()  # the chunks visited
    kept: list[Entry] = []
    spent = [0]  # visits, and CELL_COST for each cell asked for
    allowed = [visits]

    def keep(scored: list[tuple[int, float, Row | None]]) -> None:
        for seq, value, row in scored:
            entry = (value, -seq, row)
            if len(kept) < limit:
                heapq.heappush(kept, entry)
            elif entry > kept[0]:
                heapq.heapreplace(kept, entry)

    def visit(seqs: list[int], cost: int = 0) -> bool:
        """Score the chunks not seen yet (those holding a visited rare term were ranked by
        ``holders``: dropped as they are scored); False when that would pass the visits
        allowed."""
        new = [seq for seq in seqs if seq not in seen]
        spent[0] += cost + len(new)
        if spent[0] > allowed[0]:
            return False
        seen.update(new)
        keep(index.scores(new, dataset_ids, doc_ids, stats, terms, visited))
        return True

    def room() -> int:
        """The visits left."""
        return allowed[0] - spent[0]

    # the rarest first; of terms as rare, the later in ``terms`` (the summing order's suffix)
    common = sorted(weighty[::-1], key=stats.hits.__getitem__)
    rare_cost = 0
    while common and not _below_every_cell(stats, common, slack, kept, limit):
        rare_cost += index.holders_cost(common[0], visited, stats, terms)
        if rare_cost > visits * RARE_SHARE:
            break
        term = common.pop(0)
        least = kept[0][0] if len(kept) == limit else 0.0
        keep(index.holders(term, visited, dataset_ids, doc_ids, stats, terms, limit, least))
        visited.append(term)
    bounded = not common or _visit_cells(index, stats, common, slack, (visit, room), kept, limit)
    if not bounded and slack:  # what was visited stays scored
        ranked = index.ranked(weighty, limit * RANKED)
        allowed[0] = spent[0] + len(ranked)
        bounded = _visit_ranked(ranked, limit * RANKED, slack, visit, kept, limit)
    if not bounded:
        return SearchPath.UNBOUNDED
    if slack and not (len(kept) == limit and beats(kept[0][0], slack)):
        return SearchPath.UNBOUNDED  # a chunk holding only the slight terms could still enter
    best = sorted(kept, reverse=True)
    read = index.rows([-seq for _, seq, row in best if row is None])
    return [
        (*found, -value)
        for value, seq, row in best
        if (found := row or read.get(-seq)) is not None  # None: deleted since it was scored
    ]


def beats(value: float, bound: float) -> bool:
    """``value`` beats ``bound`` by more than rounding: no chunk scoring at most ``bound`` can
    rank ahead of a chunk scoring ``value``."""
    return value > bound * _MARGIN


def alone_buckets(ladder: list[int], weight: float, slack: float, least: float) -> list[int] | None:
    """Of ``ladder`` (a term's impact buckets, heaviest first), the buckets whose chunks could
    beat ``least`` when the term is the only weighty term they hold (``weight``: its idf x
    Stats.drift; the other terms adding at most ``slack``). None when the chunks holding it
    below every bucket could too (ImpactIndex.holders: the chunks of a rare term that hold none
    of the question's other weighty terms)."""
    if not beats(least, slack + weight * bm25.bucket_ceiling(BELOW)):
        return None
    return [b for b in ladder if not beats(least, slack + weight * bm25.bucket_ceiling(b))]


def heaviest(stats: bm25.Stats, term: str, ladder: list[int]) -> float:
    """The most ``term`` weighs in any chunk now: idf x its heaviest bucket's ceiling (or
    IMPACT_FLOOR's, ``ladder`` empty: every chunk has it below the buckets) x Stats.drift."""
    return stats.idf(term) * stats.drift * bm25.bucket_ceiling(ladder[0] if ladder else BELOW)


def _below_every_cell(
    stats: bm25.Stats, terms: list[str], slack: float, kept: list[Entry], limit: int
) -> bool:
    """The ``limit``-th best chunk kept beats every chunk whose ``terms`` all lie below their
    buckets (or are absent): the cells of ``terms`` can bound the question."""
    below = slack + sum(heaviest(stats, t, []) for t in terms)  # each below its buckets
    return len(kept) == limit and beats(kept[0][0], below)


def _visit_ranked(
    ranked: list[tuple[int, float]],
    count: int,
    slack: float,
    visit: Callable[[list[int]], bool],
    kept: list[Entry],
    limit: int,
) -> bool:
    """Visit the chunks ``ranked`` by BM25 over the weighty terms (at most ``count``, best
    first) until the next one, weighing at most its rank plus ``slack``, cannot enter. False
    when every one entered and more might follow."""
    step = max(limit // 4, 1)
    at = 0
    while at < len(ranked):
        if len(kept) == limit and beats(kept[0][0], ranked[at][1] + slack):
            return True
        upto = at + step + (limit if at == 0 else 0)
        visit([seq for seq, _ in ranked[at:upto]])
        at = upto
    return len(ranked) < count


def _visit_cells(
    index: ImpactIndex,
    stats: bm25.Stats,
    terms: list[str],
    slack: float,
    visits: tuple[Callable[[list[int], int], bool], Callable[[], int]],
    kept: list[Entry],
    limit: int,
) -> bool:
    """Visit cells of ``terms``' buckets, best bound first, until the ``limit``-th best chunk
    beats every cell left (the other terms adding at most ``slack`` to any chunk). False when
    the visits allowed (``visits``: visit, and the visits left) run out first, a cell asked for
    holding more chunks than are left to visit, or only the cell below every bucket is left."""
    visit, room = visits
    ladders = {t: index.buckets(t) for t in terms}
    steps = [[*ladders[t], BELOW] for t in terms]
    weights = [
        [stats.idf(t) * stats.drift * bm25.bucket_ceiling(b) for b in step]
        for t, step in zip(terms, steps, strict=True)
    ]

    def bound(cell: tuple[int, ...]) -> float:
        return slack + sum(w[i] for w, i in zip(weights, cell, strict=True))

    start = (0,) * len(terms)
    frontier = [(-bound(start), start)]
    pushed = {start}
    while frontier:
        ceiling, cell = heapq.heappop(frontier)
        if len(kept) == limit and beats(kept[0][0], -ceiling):
            return True
        places = {t: step[i] for t, step, i in zip(terms, steps, cell, strict=True)}
        if all(place == BELOW for place in places.values()):
            return False  # the chunks whose every common term weighs little: not indexed
        most = room() - CELL_COST
        found = index.cell(places, ladders, most + 1) if most >= 0 else []
        if most < 0 or len(found) > most or not visit(found, CELL_COST):
            return False
        for k in range(len(terms)):
            if cell[k] + 1 < len(steps[k]):
                after = (*cell[:k], cell[k] + 1, *cell[k + 1 :])
                if after not in pushed:
                    pushed.add(after)
                    heapq.heappush(frontier, (-bound(after), after))
    return True
