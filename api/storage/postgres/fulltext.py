"""PostgreSQL's full-text index of chunks, and the BM25 it ranks by: the SQLite backend's
(api.storage.bm25), from statistics this module keeps.

Each chunk carries, computed here when it is written (``index_columns``):
- ``fts``: a weighted tsvector of the words api.text finds (no PostgreSQL parser: both backends
  index the same words), under a GIN index: the matches;
- ``tokens`` and ``freqs``: its length and each word's weighted frequency (JSON), as FTS5
  counts them: BM25 in SQL (``bm25_sql``), bit for bit the Python scorer's;
- ``impacts``: the impact index (bm25.impacts) as a tsvector of ``word`` + bucket lexemes,
  under a GIN index: what api.storage.topk bounds with (``PostgresImpacts``).

The index's totals (chunks, tokens) are kept by statement triggers in ``fulltext_totals``, one
row per slot (a session writes its backend's slot: concurrent writers do not queue on one row);
``impact_reference`` holds the lowest mean length an impact was computed with. The same triggers
keep ``fulltext_terms``: how many chunks hold each word, and each impact (word and bucket), so a
search reads its terms' counts and buckets in one statement, exact in its snapshot."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from psycopg.rows import tuple_row

from api import text
from api.storage import bm25, codec, topk
from api.storage.topk import ROW_SQL, Row

# The weighted vector of a chunk from the words api.text finds (no PostgreSQL parser: both
# backends index the same words): content D, title C, keywords B, questions A. Each group has its
# own position (1-4): PostgreSQL keeps a weight only on a position, and a lexeme without one
# would match a query restricted to the content's weight (`'word':D`) from any group.
FTS_VALUE = "?::tsvector"
_GROUPS = ((1, "D"), (2, "C"), (3, "B"), (4, "A"))


LEXEME_BYTES = 2046  # PostgreSQL's longest lexeme, in UTF-8 bytes


def fit_lexeme(word: str) -> str:
    """The word as PostgreSQL can index and query it: its first LEXEME_BYTES bytes (whole
    characters). Index and queries cut alike, so a longer word still finds itself."""
    data = word.encode("utf-8")
    return word if len(data) <= LEXEME_BYTES else data[:LEXEME_BYTES].decode("utf-8", "ignore")


def _lexeme(word: str) -> str:
    """A word as a quoted tsvector or tsquery lexeme (cut to fit, quotes and backslashes
    doubled)."""
    return "'" + fit_lexeme(word).replace("\\", "\\\\").replace("'", "''") + "'"


def fts_words(content: str, docnm: str, keywords: Any, questions: Any) -> str:
    """The parameter of FTS_VALUE: the tsvector text of the four word groups."""

    def words(value: Any) -> list[str]:
        if isinstance(value, list | tuple):
            value = " ".join(str(v) for v in value)
        return list(dict.fromkeys(text.tokens(str(value or ""))))

    positions: dict[str, list[str]] = {}
    for (position, weight), group in zip(
        _GROUPS,
        (words(content), words(text.title(docnm)), words(keywords), words(questions)),
        strict=True,
    ):
        for word in group:
            positions.setdefault(word, []).append(f"{position}{weight}")
    return " ".join(f"{_lexeme(w)}:{','.join(p)}" for w, p in positions.items())


def any_word(terms: Sequence[str], weight: str = "") -> str:
    """The text of a tsquery matching any of ``terms`` (fit_lexeme'd and quoted), in the
    fields of ``weight`` only when given (``D``: the content, as RAGFlow's chunk-list keywords
    filter). It is passed as a parameter (``?::tsquery``), never built in SQL from the words:
    with a constant query the planner takes the candidates from the GIN index and estimates
    them from the column's statistics, where a query computed inside the statement made it
    test every chunk of the dataset instead."""
    suffix = f":{weight}" if weight else ""
    return " | ".join(_lexeme(term) + suffix for term in terms)


def impact_word(term: str, bucket: int) -> str:
    """The impacts lexeme of ``term`` in ``bucket``: the term cut to leave room for the two
    digits (index and queries cut alike)."""
    data = term.encode("utf-8")[: LEXEME_BYTES - 2].decode("utf-8", "ignore")
    return f"{data}{bucket:02d}"


def impact_lexeme(term: str, bucket: int) -> str:
    """``impact_word``, quoted."""
    return _lexeme(impact_word(term, bucket))


def index_columns(
    content: str, docnm: str, keywords: Any, questions: Any, reference: float
) -> tuple[dict[str, tuple[str, Any]], float]:
    """A chunk's index columns (Dialect.chunk_index), its impacts computed at mean length
    ``reference`` (the chunk's own length when 0.0: the index is empty); and that length."""
    tokens, freqs = _counts(content, docnm, codec.json_list(keywords), codec.json_list(questions))
    avgdl = reference or float(max(tokens, 1))
    columns = {
        "fts": (FTS_VALUE, fts_words(content, docnm, keywords, questions)),
        "tokens": ("?", tokens),
        "freqs": ("?::jsonb", json.dumps(freqs, ensure_ascii=False)),
        "impacts": ("?::tsvector", impacts_vector(freqs, tokens, avgdl)),
    }
    return columns, avgdl


def _counts(content: str, docnm: str, keywords: str, questions: str) -> tuple[int, Counter[str]]:
    """A chunk's length and its words' weighted frequencies, as FTS5 counts them (keywords and
    questions as stored: JSON text)."""
    fields = bm25.fields(content, docnm, keywords, questions)
    return sum(len(field) for field in fields), bm25.frequencies(fields)


# the index's chunks and their tokens (fulltext_totals' slots summed)
_TOTALS = (
    "SELECT COALESCE(SUM(chunks), 0) AS chunks, COALESCE(SUM(tokens), 0) AS tokens"
    " FROM fulltext_totals"
)
BACKFILL_BATCH = 2000  # chunks read at a time by the backfill


def backfill(conn: Any) -> None:
    """Fill the index columns of the chunks stored before they existed (migration 3), inside
    the migration's transaction, in two reads: the mean length first (the impacts are computed
    at it), then each chunk's columns, copied into a temporary table that one UPDATE sets them
    from."""
    cursor = conn.cursor(row_factory=tuple_row)
    read = "content, docnm, important_keywords, questions"
    chunks = tokens = 0
    for rows in _batches(cursor, read):
        chunks += len(rows)
        tokens += sum(len(field) for _, *row in rows for field in bm25.fields(*row))
    if not chunks:
        return  # the first chunk written sets the reference
    reference = tokens / chunks
    cursor.execute("UPDATE impact_reference SET avgdl = %s", (reference,))
    cursor.execute(
        "CREATE TEMPORARY TABLE chunk_index (seq BIGINT, tokens INTEGER, freqs JSONB,"
        " impacts TSVECTOR) ON COMMIT DROP"
    )
    for rows in _batches(cursor, read):
        with cursor.copy("COPY chunk_index FROM STDIN") as copy:
            for seq, *row in rows:
                length, freqs = _counts(*row)
                found = impacts_vector(freqs, length, reference)
                copy.write_row((seq, length, json.dumps(freqs, ensure_ascii=False), found))
    cursor.execute(
        "UPDATE chunks c SET tokens = i.tokens, freqs = i.freqs, impacts = i.impacts"
        " FROM chunk_index i WHERE c.seq = i.seq"
    )


def _batches(cursor: Any, columns: str) -> Iterator[list[tuple[Any, ...]]]:
    """The chunks' ``seq`` and ``columns``, BACKFILL_BATCH rows at a time, in order."""
    last = 0
    while rows := cursor.execute(
        f"SELECT seq, {columns} FROM chunks WHERE seq > %s ORDER BY seq LIMIT %s",
        (last, BACKFILL_BATCH),
    ).fetchall():
        yield rows
        last = rows[-1][0]


def impact_reference(c: Any) -> float:
    """The mean length a write session's chunks get their impacts computed at: the index's
    now, recorded as ``record_reference`` does (in the same statement); 0.0 while the index is
    empty."""
    chunks, tokens = c.execute(
        f"WITH t AS ({_TOTALS}), m AS (SELECT t.tokens::float8 / t.chunks AS avgdl FROM t"
        " WHERE t.chunks > 0), lowered AS (UPDATE impact_reference r SET avgdl = m.avgdl FROM m"
        " WHERE r.avgdl IS NULL OR r.avgdl > m.avgdl RETURNING 1) SELECT * FROM t"
    ).fetchone()
    return float(tokens) / int(chunks) if int(chunks) else 0.0


def record_reference(c: Any, avgdl: float) -> float:
    """Record ``avgdl`` as a mean length impacts are computed at: ``impact_reference`` keeps
    the lowest (bm25.Stats.drift). The row is locked only when lowered."""
    c.execute(
        "UPDATE impact_reference SET avgdl = ? WHERE avgdl IS NULL OR avgdl > ?", (avgdl, avgdl)
    )
    return avgdl


def impacts_vector(freqs: Mapping[str, float], tokens: int, avgdl: float) -> str:
    """The ``impacts`` tsvector text of a chunk (bm25.impacts at mean length ``avgdl``)."""
    return " ".join(impact_lexeme(t, b) for t, b in bm25.impacts(freqs, tokens, avgdl))


# the column of each chunk ``c`` that bm25_sql's join gives, and the join's alias
_SCORED = "scored"
SCORE = f"{_SCORED}.score"


def bm25_sql(stats: bm25.Stats, terms: Sequence[str]) -> tuple[str, list[Any]]:
    """The BM25 of chunk ``c`` for ``terms`` (positive), as SQL over its ``tokens`` and
    ``freqs``: a join giving each chunk SCORE, and its arguments. bm25.scorer's arithmetic,
    operation for operation, in float8 (a term not found adds 0.0, as the scorer skips it).
    Each term's frequency is read once, in a subquery the planner keeps apart (OFFSET 0):
    written in the sum, it was read twice, and the reads are most of ranking's cost (at 1M
    chunks, about 0.3 us each: ranking the 35k chunks of a rare word and another, 155 -> 131
    ms)."""
    norm = "?::float8 * (?::float8 + ?::float8 * c.tokens / ?::float8)"
    parts = ["0.0::float8"]
    reads = [f"{norm} AS norm"]
    sum_args: list[Any] = []
    read_args: list[Any] = [bm25.K1, 1 - bm25.B, bm25.B, stats.avgdl]
    for at, term in enumerate(terms):
        parts.append(
            f"COALESCE(?::float8 * ((f.f{at} * ?::float8) / (f.f{at} + f.norm)), 0.0::float8)"
        )
        sum_args += [stats.idf(term), bm25.K1 + 1.0]
        reads.append(f"(c.freqs ->> ?)::float8 AS f{at}")
        read_args.append(term)
    join = (
        f"CROSS JOIN LATERAL (SELECT {' + '.join(parts)} AS score"
        f" FROM (SELECT {', '.join(reads)} OFFSET 0) f) {_SCORED}"
    )
    return join, [*sum_args, *read_args]  # as their marks are written: the sum's first


def in_scope(dataset_ids: Sequence[str], doc_ids: Sequence[str]) -> tuple[str, list[Any]]:
    """The condition (and its arguments) that chunk ``c`` is available and in the datasets (and
    the documents, when given) searched."""
    if doc_ids:
        return "c.available = 1 AND c.dataset_id = ANY(?) AND c.doc_id = ANY(?)", [
            list(dataset_ids),
            list(doc_ids),
        ]
    return "c.available = 1 AND c.dataset_id = ANY(?)", [list(dataset_ids)]


# The first chunks whose impacts match a tsquery (the query and the count as arguments):
# planned apart from its LIMIT, as with one a scan of every chunk would look cheaper than the
# GIN index
_FIRST = (
    "WITH m AS MATERIALIZED (SELECT seq FROM chunks WHERE impacts @@ ?::tsquery)"
    " SELECT seq FROM m LIMIT ?"
)
# the chunk counts of lexemes (fulltext_terms' slots summed): of words (the first array) and of
# impacts (the second), those held by a chunk
_TERMS = (
    "SELECT impact, lexeme, sum(chunks) FROM fulltext_terms"
    " WHERE (NOT impact AND lexeme = ANY(?)) OR (impact AND lexeme = ANY(?))"
    " GROUP BY impact, lexeme HAVING sum(chunks) > 0"
)

# Scoring the chunks that hold a term (holders: from the GIN index) costs about half a visit
# each (at 1M chunks: 3.7-3.9 us a chunk, against 6.9 us a visit).
HELD_PER_VISIT = 2
# holders ranks the chunks holding the term and its rarest weighty other apart when this many
# times ``count`` of them are expected
SPLIT_WHEN = 2


def _pairing_pays(stats: bm25.Stats, term: str, others: Sequence[str], count: int) -> bool:
    """Whether PostgresImpacts.holders should rank the chunks holding ``term`` and one of
    ``others`` first: when, the words found independently, at least ``count`` of them are
    expected to hold one weighing more than (IMPACT_FLOOR - 1) x ``term``'s idf. Such a chunk,
    holding both once (each weighing about 1.0), outweighs every chunk holding ``term`` alone
    below its buckets; with fewer, the bound seldom holds and the statement is wasted."""
    least = (bm25.IMPACT_FLOOR - 1.0) * stats.idf(term) * stats.drift
    return stats.holding_one_of(term, (o for o in others if stats.idf(o) > least)) >= count


class PostgresImpacts:
    """The ImpactIndex (api.storage.topk) of one session ``c``: a search's statistics and
    buckets are read once, in two statements, from the counts the triggers keep."""

    # Visiting a chunk (scores: by seq) costs 6.9 us at 1M chunks, against 1.9 us a match ranked
    # by a parallel scan of the table and about 4 us through the GIN index: at 16, visits that
    # end without reaching the bound cost at most a quarter of ranking every match. (At 8, the
    # rare question of docs/BENCHMARKS.md section 11 tried the bound and then ranked every
    # match: 143-146 ms at 1M in process, against 64-68.)
    visit_cost = 16

    def __init__(self, c: Any) -> None:
        self.c = c
        self._stats: bm25.Stats | None = None  # the search's statistics
        self._buckets: dict[str, list[int]] = {}

    def stats(self, terms: Sequence[str]) -> bm25.Stats:
        if self._stats is not None and set(terms) <= self._stats.hits.keys():
            return self._stats  # a search's statistics are taken once
        chunks, tokens, reference = self.c.execute(
            f"SELECT t.*, (SELECT avgdl FROM impact_reference) FROM ({_TOTALS}) t"
        ).fetchone()
        words: dict[str, list[str]] = {}  # a lexeme's terms (several when cut alike)
        impacts: dict[str, list[tuple[str, int]]] = {}
        for t in terms:
            words.setdefault(fit_lexeme(t), []).append(t)
            for bucket in range(bm25.IMPACT_BUCKETS):
                impacts.setdefault(impact_word(t, bucket), []).append((t, bucket))
        hits = dict.fromkeys(terms, 0)
        self._buckets = {t: [] for t in terms}
        for impact, lexeme, count in self.c.execute(_TERMS, (list(words), list(impacts))):
            if impact:
                for t, bucket in impacts[lexeme]:
                    self._buckets[t].append(bucket)
            else:
                hits.update(dict.fromkeys(words[lexeme], int(count)))
        for ladder in self._buckets.values():
            ladder.sort(reverse=True)
        self._stats = bm25.Stats(
            rows=int(chunks),
            avgdl=float(tokens) / int(chunks) if int(chunks) else 1.0,
            hits=hits,
            impact_avgdl=float(reference) if reference is not None else 0.0,
        )
        return self._stats

    def buckets(self, term: str) -> list[int]:
        if term not in self._buckets:
            self.stats([term])
        return self._buckets[term]

    def holders_cost(
        self, term: str, visited: Sequence[str], stats: bm25.Stats, terms: Sequence[str]
    ) -> int:
        return stats.hits[term] // HELD_PER_VISIT

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
        """The best ``count`` in scope, scored in SQL. The visited terms are a filter on each
        chunk's own words, never a NOT in the index's tsquery: while VACUUM merges the GIN
        index's pending list, a NOT read from the index can pass a chunk that holds the word
        (seen on PostgreSQL 15), which would take a place of the ``count``.

        When enough of its chunks hold another weighty term (idf above its floor:
        _pairing_pays), the best of those come first, then of the chunks holding none: if the
        ``count``-th of the first (or ``least``, the best found before) beats every chunk of
        the second below the term's impact buckets (those chunks weigh the term's weight, the
        slight terms adding at most their slack: topk.alone_buckets), only the chunks in the
        buckets that could beat it are scored. Else every chunk holding the term is. With
        several weighty others, and enough chunks expected to hold the rarest (SPLIT_WHEN),
        those are ranked first, and the chunks holding only later ones are bounded alike, the
        later ones adding at most their heaviest (topk.heaviest): at 1M chunks, the 35k
        chunks of a rare word and either of two others took 159 ms to rank, the 16k holding
        the rarer of the two 69 ms, and the 23 others that could enter 0.1."""
        scored, args = bm25_sql(stats, terms)
        where, scope = in_scope(dataset_ids, doc_ids)

        def best(
            words: Sequence[str], without: Sequence[str], buckets: Sequence[int] = ()
        ) -> list[tuple[int, float, Row | None]]:
            """The best ``count`` in scope of the chunks holding ``term`` and one of ``words``
            (when given), none of ``without``, and (when given) ``term`` in one of
            ``buckets``. The GIN index of the chunks' words is read only without buckets:
            those chunks are few (the heaviest of a rare term), and reading a common word's
            entries cost more than testing each (at 1M chunks, 14 ms against 0.1)."""
            match = "ts_match_vq(c.fts, ?::tsquery)" if buckets else "c.fts @@ ?::tsquery"
            held = [match] * (1 + bool(words))
            queries = [any_word([term]), *([any_word(words)] if words else [])]
            if buckets:
                held.append("c.impacts @@ ?::tsquery")
                queries.append(" | ".join(impact_lexeme(term, b) for b in buckets))
            if without:  # a filter on each chunk's own words
                held.append("NOT c.fts @@ ?::tsquery")
                queries.append(any_word(without))
            found = self.c.execute(
                f"SELECT c.seq, {SCORE} FROM chunks c {scored} WHERE {' AND '.join(held)}"
                f" AND {where} ORDER BY {SCORE} DESC, c.seq LIMIT ?",
                (*args, *queries, *scope, count),
            )
            return [(int(seq), float(value), None) for seq, value in found]

        rest = [t for t in terms if t != term and t not in visited]
        others = [t for t in rest if not stats.slight(t)]
        if not _pairing_pays(stats, term, others, count):
            return best([], visited)
        slack = stats.slack(t for t in rest if t not in others)
        weight = stats.idf(term) * stats.drift

        def buckets_left(
            found: list[tuple[int, float, Row | None]], heavier: Sequence[str]
        ) -> list[int] | None:
            """The term's buckets whose chunks could still enter, ``found`` kept, when they
            hold no weighty term but some of ``heavier`` (topk.alone_buckets; None: those
            below every bucket could too)."""
            values = sorted((value for _, value, _ in found), reverse=True)
            reach = max(values[count - 1] if len(values) >= count else 0.0, least)
            beside = slack + sum(topk.heaviest(stats, t, self.buckets(t)) for t in heavier)
            return topk.alone_buckets(self.buckets(term), weight, beside, reach) if reach else None

        # the chunks holding the rarest weighty other first, when enough are expected to: those
        # holding only later ones weigh at most the later ones' heaviest, and only those with
        # the term in the buckets that could still enter are ranked
        rarest, *later = sorted(others, key=lambda t: (stats.hits[t], t))
        split = bool(later) and stats.holding_one_of(term, [rarest]) >= SPLIT_WHEN * count
        paired = best([rarest] if split else others, visited)
        if split and (ladder := buckets_left(paired, later)) != []:
            paired += best(later, [*visited, rarest], ladder or ())
        ladder = buckets_left(paired, [])  # the chunks holding no other weighty term
        if ladder == []:
            return paired
        return paired + best([], [*visited, *others], ladder or ())

    def ranked(self, terms: Sequence[str], count: int) -> list[tuple[int, float]]:
        scored, args = bm25_sql(self.stats(terms), terms)
        rows = self.c.execute(
            f"SELECT c.seq, {SCORE} FROM chunks c {scored} WHERE c.fts @@ ?::tsquery"
            f" ORDER BY {SCORE} DESC, c.seq LIMIT ?",
            (*args, any_word(terms), count),
        ).fetchall()
        return [(int(seq), float(value)) for seq, value in rows]

    def cell(self, places: dict[str, int], ladders: dict[str, list[int]], most: int) -> list[int]:
        # the NOT may pass a chunk of a higher bucket while VACUUM merges the GIN pending list
        # (holders): it is then visited, scored exactly, and costs only a visit
        held = [impact_lexeme(term, place) for term, place in places.items() if place >= 0]
        below = [
            impact_lexeme(term, bucket)
            for term, place in places.items()
            if place < 0
            for bucket in ladders[term]
        ]
        query = " & ".join(held) + (f" & !({' | '.join(below)})" if below else "")
        return [int(seq) for (seq,) in self.c.execute(_FIRST, (query, most))]

    def scores(
        self,
        seqs: Sequence[int],
        dataset_ids: Sequence[str],
        doc_ids: Sequence[str],
        stats: bm25.Stats,
        terms: Sequence[str],
        absent: Sequence[str] = (),
    ) -> list[tuple[int, float, Row | None]]:
        if not seqs:
            return []
        scored, args = bm25_sql(stats, terms)
        where, scope = in_scope(dataset_ids, doc_ids)
        if absent:  # a filter on each chunk's own words (holders)
            where += " AND NOT c.fts @@ ?::tsquery"
            scope.append(any_word(absent))
        sql = f"SELECT c.seq, {SCORE} FROM chunks c {scored} WHERE c.seq = ANY(?) AND {where}"
        found = self.c.execute(sql, [*args, list(seqs), *scope])
        return [(int(seq), float(value), None) for seq, value in found]

    def rows(self, seqs: Sequence[int]) -> dict[int, Row]:
        sql = f"SELECT c.seq, {ROW_SQL} FROM chunks c WHERE c.seq = ANY(?)"
        return {int(seq): tuple(row) for seq, *row in self.c.execute(sql, (list(seqs),))}
