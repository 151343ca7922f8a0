"""BM25 as SQLite FTS5's bm25() computes it, from statistics any backend can keep, and the
impact buckets that let a search stop before it has ranked every match (topk.py).

A chunk's fields are weighted as the full-text index's columns: content 1, title 2, keywords 3,
questions 4. The arithmetic is FTS5's, operation for operation, so a score computed here is
bit-for-bit the one FTS5 gives the same chunk (tested against it)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from api import text

K1 = 1.2
B = 0.75
WEIGHT_LIMIT = K1 + 1.0  # saturation's limit: no term weighs this much in any chunk
LEAST_IDF = 1e-6  # FTS5's idf of a term in half the chunks or more
# Each field's weight: a term found once in it counts this much to the term's frequency.
FIELD_WEIGHTS = (1.0, 2.0, 3.0, 4.0)  # content, title, important keywords, questions
# SQL's spelling of FIELD_WEIGHTS, for bm25(chunks_fts, ...).
SQL_WEIGHTS = ", ".join(map(str, FIELD_WEIGHTS))

# The impact index (topk.py) holds, for each chunk and each term whose weight in it
# (saturation, at the mean chunk length of the moment) is at least IMPACT_FLOOR, the term with
# the bucket of that weight: IMPACT_BUCKETS equal steps from IMPACT_FLOOR up to WEIGHT_LIMIT. A term
# found once in a chunk of the mean length weighs 1.0, twice 1.375.
IMPACT_FLOOR = 1.3
IMPACT_BUCKETS = 60
IMPACT_STEP = (WEIGHT_LIMIT - IMPACT_FLOOR) / IMPACT_BUCKETS


@dataclass(frozen=True)
class Stats:
    """What BM25 needs of the whole index: chunks, their mean length in tokens, and how many
    chunks hold each term; and the lowest mean length any impact was computed with."""

    rows: int
    avgdl: float
    hits: dict[str, int]
    impact_avgdl: float = 0.0

    def idf(self, term: str) -> float:
        """FTS5's: log((N - n + 0.5) / (n + 0.5)), and 1e-6 for a term in half the chunks or
        more (where that would be zero or negative)."""
        hits = self.hits.get(term, 0)
        value = math.log((self.rows - hits + 0.5) / (hits + 0.5))
        return value if value > 0.0 else LEAST_IDF

    def slight(self, term: str) -> bool:
        """Whether ``term`` is in half the chunks or more (idf's floor): next to no weight."""
        return self.idf(term) <= LEAST_IDF

    def holding_one_of(self, term: str, others: Iterable[str]) -> float:
        """How many of the chunks holding ``term`` are expected to hold one of ``others`` too,
        the words found independently."""
        none = 1.0  # the share of chunks holding none of them
        for other in others:
            none *= 1.0 - self.hits[other] / max(self.rows, 1)
        return self.hits.get(term, 0) * (1.0 - none)

    def slack(self, terms: Iterable[str]) -> float:
        """The most ``terms`` can add to any chunk together (each idf x WEIGHT_LIMIT)."""
        return sum(self.idf(term) * WEIGHT_LIMIT for term in terms)

    @property
    def drift(self) -> float:
        """How much more a term can weigh now than when its impact was indexed: a weight
        computed at mean length A grows by at most A_now / A as the mean grows (and shrinks
        as it falls), so the impacts' bounds are scaled by this."""
        if self.impact_avgdl <= 0.0:
            return 1.0
        return max(1.0, self.avgdl / self.impact_avgdl)


def saturation(freq: float, tokens: float, avgdl: float) -> float:
    """A term's weight in a chunk of ``tokens`` tokens where its frequency is ``freq``."""
    return (freq * (K1 + 1.0)) / (freq + K1 * (1 - B + B * tokens / avgdl))


def words(value: str) -> list[str]:
    """The words the index holds for ``value``: api.text's tokens, split again where
    normalising put a space inside one (as the index's tokenizer splits them)."""
    found = text.tokens(value)
    return found if value.isascii() else " ".join(found).split()


def fields(
    content: str,
    docnm: str,
    keywords: str,
    questions: str,
    split: Callable[[str], list[str]] = words,
) -> list[list[str]]:
    """The words of a chunk's indexed fields (``keywords`` and ``questions`` as stored: JSON
    text), each found by ``split``."""
    return [split(content), split(text.title(docnm)), split(keywords), split(questions)]


def frequencies(words: Sequence[Sequence[str]]) -> Counter[str]:
    """Each term's weighted frequency over the fields."""
    found = Counter(words[0])  # the content, weight 1: counted in C
    for weight, field in zip(FIELD_WEIGHTS[1:], words[1:], strict=True):
        for word in field:
            found[word] += int(weight)
    return found


def impacts(freqs: Mapping[str, float], tokens: int, avgdl: float) -> list[tuple[str, int]]:
    """The impact index's entries for a chunk of ``tokens`` tokens whose terms have these
    frequencies (``frequencies``): each term weighing at least IMPACT_FLOOR (at mean length
    ``avgdl``), with its bucket."""
    # saturation grows with the frequency: below this one, a term weighs less than the floor
    # (solved from saturation(f) = IMPACT_FLOOR; a hair lower, so rounding keeps every term)
    norm = K1 * (1 - B + B * tokens / avgdl)
    least = IMPACT_FLOOR * norm / (WEIGHT_LIMIT - IMPACT_FLOOR) * (1 - 1e-9)
    found = []
    for term, freq in [item for item in freqs.items() if item[1] >= least]:
        weight = saturation(freq, tokens, avgdl)
        if weight >= IMPACT_FLOOR:
            bucket = min(int((weight - IMPACT_FLOOR) / IMPACT_STEP), IMPACT_BUCKETS - 1)
            found.append((term, bucket))
    return found


def impact_terms(freqs: Mapping[str, float], tokens: int, avgdl: float) -> str:
    """The impact index's text for a chunk (``impacts``): each term suffixed with its bucket
    (two digits)."""
    return " ".join(f"{term}{bucket:02d}" for term, bucket in impacts(freqs, tokens, avgdl))


def bucket_ceiling(bucket: int) -> float:
    """The most a term in ``bucket`` weighed when indexed (IMPACT_FLOOR for bucket -1: the
    terms below every bucket)."""
    return IMPACT_FLOOR + (bucket + 1) * IMPACT_STEP


def scorer(
    stats: Stats, terms: Sequence[str], absent: Collection[str] = ()
) -> Callable[[str, str, str, str, int], float | None]:
    """``score(content, docnm, keywords, questions, tokens)``: a chunk's BM25 for ``terms``
    (positive: FTS5's bm25() is its negation), ``tokens`` its length as the index counts it;
    None for a chunk holding any of ``absent`` (terms of ``terms``).
    FTS5's arithmetic, operation for operation. With a few ASCII terms, each is counted in
    ASCII text by a search for it as a whole word (such text's words are exactly its [a-z0-9]+
    runs, lower-cased); other text is split into words; titles once per document name."""
    idfs = [stats.idf(t) for t in terms]
    few = len(terms) <= text.SEARCH_PER_TERM_UP_TO
    plain = few and all(text.ASCII_WORD.fullmatch(t) for t in terms)
    searches = [text.whole_word(t).findall for t in terms] if plain else []
    none = [0] * len(terms)
    width = range(len(terms))
    shunned = [t in absent for t in terms]
    in_content, in_title, in_keywords, in_questions = FIELD_WEIGHTS
    titles: dict[str, list[int]] = {}  # each term's count in a document name's title

    def counts(value: str) -> list[int]:
        if value == "[]" or not value:
            return none
        if plain and value.isascii():
            lowered = value.lower()
            return [len(search(lowered)) for search in searches]
        found = words(value)
        return [found.count(t) for t in terms]

    def score(content: str, docnm: str, keywords: str, questions: str, tokens: int) -> float | None:
        title = titles.get(docnm)
        if title is None:
            found = words(text.title(docnm))
            title = titles[docnm] = [found.count(t) for t in terms]
        body, marked, asked = counts(content), counts(keywords), counts(questions)
        norm = K1 * (1 - B + B * float(tokens) / stats.avgdl)  # saturation's, for this length
        total = 0.0
        for i in width:
            freq = (
                in_content * body[i]
                + in_title * title[i]
                + in_keywords * marked[i]
                + in_questions * asked[i]
            )
            if freq:  # a term not found adds 0.0
                if shunned[i]:
                    return None
                total += idfs[i] * ((freq * (K1 + 1.0)) / (freq + norm))
        return total

    return score
