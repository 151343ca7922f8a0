"""SQLite's full-text index beyond FTS5's own: the impact index (``chunks_impacts``: each chunk's
weightiest terms with their impact bucket, bm25.impact_terms), the lowest mean length an impact
was computed with (``impact_avgdl``) and how many chunks hold each term (``chunk_terms``), kept
by the chunk triggers (schema.py) through the functions registered here; and the ImpactIndex
that topk.py ranks with."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from api.storage import bm25, codec, topk
from api.storage.topk import ROW_SQL, Row


def varints(data: bytes) -> list[int]:
    """The numbers of an FTS5 record (SQLite varints: 7 bits a byte, high bit set on all but
    the last, a ninth byte of 8 bits)."""
    if data.isascii():  # every number below 128: a byte each
        return list(data)
    numbers: list[int] = []
    at = 0
    while at < len(data):
        value = 0
        for position in range(9):
            byte = data[at]
            at += 1
            if position == 8:
                value = (value << 8) | byte
                break
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        numbers.append(value)
    return numbers


def row_tokens(size: object) -> int:
    """A chunk's length in tokens, from its FTS5 docsize record (tokens per column)."""
    return sum(varints(size)) if isinstance(size, bytes) else 0


def mean_tokens(averages: object) -> float:
    """The mean chunk length in tokens, from FTS5's averages record (chunks, then tokens
    per column); 0.0 for an empty index."""
    numbers = varints(averages) if isinstance(averages, bytes) else []
    return sum(numbers[1:]) / numbers[0] if numbers and numbers[0] else 0.0


def reference(size: object, averages: object) -> float:
    """The mean length a new chunk's weights are computed with: the index's, or the chunk's
    own length while the index is empty."""
    return mean_tokens(averages) or float(max(row_tokens(size), 1))


def impacts(
    words: Callable[[object], str],
    content: str,
    docnm: str,
    keywords: str,
    questions: str,
    size: object,
    averages: object,
) -> str:
    """The impact index's text for a chunk (bm25.impact_terms) from its columns, its FTS5
    docsize record and the index's averages record; ``words``: the connection's rf_words."""
    fields = bm25.fields(content, docnm, keywords, questions, lambda value: words(value).split())
    freqs = bm25.frequencies(fields)
    return bm25.impact_terms(freqs, row_tokens(size), reference(size, averages))


def terms(
    words: Callable[[object], str], content: str, docnm: str, keywords: str, questions: str
) -> str:
    """The distinct terms of a chunk's columns, a JSON list: the ``chunk_terms`` rows the chunk
    triggers count it in; ``words``: the connection's rf_words."""
    fields = bm25.fields(content, docnm, keywords, questions, lambda value: words(value).split())
    held = set().union(*fields)
    # words are letters and digits, quoted as they are (5x faster than json.dumps), unless
    # normalisation left a character JSON escapes: a quote besides the separators', a backslash
    listed = '","'.join(held)
    if "\\" in listed or listed.count('"') != 2 * (len(held) - 1):
        return json.dumps(list(held))
    return f'["{listed}"]'


# Chunks ``c`` named by a JSON list of seqs, each read by its rowid: NOT INDEXED keeps SQLite from
# looking them up through chunks_dataset to test the scope (at 1M chunks, 2,560 in 1.35 ms
# instead of 3.0; with their lengths and columns for scoring, 6.0 instead of 9.7)
_LISTED = "chunks c NOT INDEXED"
_AMONG = "c.seq IN (SELECT value FROM json_each(?))"


def in_scope(dataset_ids: Sequence[str], doc_ids: Sequence[str]) -> tuple[str, list[Any]]:
    """The condition (and its arguments) that chunk ``c`` is available and in the datasets (and
    the documents, when given) searched."""
    where = ["c.available = 1", f"c.dataset_id IN ({', '.join('?' * len(dataset_ids))})"]
    if doc_ids:
        where.append(f"c.doc_id IN ({', '.join('?' * len(doc_ids))})")
    return " AND ".join(where), [*dataset_ids, *doc_ids]


REMEMBERED = 4096  # terms whose buckets a connection remembers
_STRUCTURE = 10  # the rowid of an FTS5 table's structure record (its segments) in its _data
# bm25() counts the chunks holding each of its terms, for the idf, in each statement: counting
# this many costs about what scoring one chunk in Python does (21 ns a chunk against 8 us, at
# 1M chunks); ranking a match costs about an eighth of that scoring.
COUNTED = 380
RANKED_PER_VISIT = 8
# Ranked without the slight terms, this many times ``count`` chunks are read (_beside_slight):
# room for chunks out of scope, and for the ties the slight terms break (in the bench corpus,
# whose chunks are all 60 words long, up to 2,209 for the 1,024 best at 1M)
SLIGHT_WINDOW = 8
# Of that window, this many times ``count`` are read first, and the whole window only when the
# ties reach past them (at 1M chunks, 35k ranked with 8,192 read took 101-105 ms, 3,072 91-92)
FIRST_WINDOW = 3
# Finding the chunks that hold a rare term and another (an FTS5 AND), to set them aside while
# ranking the others: this many cost about a visit (at 1M chunks, 3,573 in 2.5-3.5 ms).
SET_ASIDE = 6


class _HoldersPlan(NamedTuple):
    """How SqliteImpacts.holders visits the chunks holding a rare term (and none of the terms
    visited), and its cost in visits: FTS5 ranks them (``ranked``); those holding no other term
    (about as many as expected of terms found independently) are scored each (``alone``) or
    ranked, over every term or (``aside``) over the rare terms alone, the chunks holding another
    set aside, whichever costs least."""

    ranked: bool
    alone: bool
    aside: bool
    cost: int


def _holders_plan(
    term: str, visited: Sequence[str], stats: bm25.Stats, terms: Sequence[str]
) -> _HoldersPlan:
    held = stats.hits[term]
    # term, then the visited, last, after another term: BM25 over terms sums over the others
    # first, as the statements of SqliteImpacts.holders do
    last = len(terms) - len(visited)
    if last < 2 or terms[last - 1] != term or set(terms[last:]) != set(visited):
        return _HoldersPlan(False, False, False, held)
    alone = held
    for t in terms[: last - 1]:
        alone = int(alone * (1.0 - stats.hits[t] / max(stats.rows, 1)))
    paired = held - alone
    counted = sum(stats.hits[t] for t in terms) // COUNTED  # by a statement over every term
    rare = sum(stats.hits[t] for t in terms[last - 1 :]) // COUNTED
    aside = rare + paired // SET_ASIDE
    ranked = held // RANKED_PER_VISIT + counted + min(alone, counted, aside)
    if ranked >= held:
        return _HoldersPlan(False, False, False, held)
    return _HoldersPlan(True, alone <= min(counted, aside), aside < counted, ranked)


def _reaching(
    ranked: Sequence[tuple[int, float]], window: int, least: float, slack: float
) -> list[int] | None:
    """Of ``ranked`` (a window of at most ``window`` chunks, best first, each rank at most
    ``slack`` below its score), the chunks that could reach ``least``, ties included; None when
    the window is full and a chunk after it could too."""
    if len(ranked) == window and not topk.beats(least, ranked[-1][1] + slack):
        return None
    return [seq for seq, value in ranked if not topk.beats(least, value + slack)]


class SqliteImpacts:
    """The ImpactIndex (topk.py) of one SQLite connection (one per thread: each thread has its
    connection)."""

    # Scoring a visited chunk in Python costs about as much as FTS5 ranking 7 matches (measured
    # at 100k chunks: 6 us against 0.9 us): 16 keeps the visits within 7/16 of ranking every
    # match. (At 48, a word in nearly every chunk of 100k ranked every match: 74-90 ms, against
    # 14-18 at 16.)
    visit_cost = 16

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._version: tuple[object, int] = (None, -1)
        self._buckets: dict[str, list[int]] = {}

    def _current(self) -> None:
        """Forget the buckets remembered once the impact index changed, or too many are. Its
        structure record (FTS5's rowid 10) changes with every commit writing to it: other
        writes (an executor's heartbeat, a task's state) leave the buckets remembered. This
        connection's own writes, not yet committed, are known by its change count."""
        found = self.conn.execute(f"SELECT block FROM chunks_impacts_data WHERE id = {_STRUCTURE}")
        version = ((found.fetchone() or [b""])[0], self.conn.total_changes)
        if version != self._version or len(self._buckets) > REMEMBERED:
            self._version, self._buckets = version, {}

    def stats(self, terms: Sequence[str]) -> bm25.Stats:
        self._current()
        found = self.conn.execute("SELECT block FROM chunks_fts_data WHERE id = 1").fetchone()
        averages = found[0] if found else b""
        indexed = self.conn.execute("SELECT avgdl FROM impact_avgdl").fetchone()
        among = "SELECT value FROM json_each(?)"
        counted = dict(
            self.conn.execute(
                f"SELECT term, chunks FROM chunk_terms WHERE term IN ({among})",
                (json.dumps(list(terms)),),
            ).fetchall()
        )
        return bm25.Stats(
            rows=(varints(averages) or [0])[0],  # empty while the index has never held a chunk
            avgdl=mean_tokens(averages) or 1.0,
            hits={t: int(counted.get(t, 0)) for t in terms},
            impact_avgdl=float(indexed[0]) if indexed else 0.0,
        )

    def buckets(self, term: str) -> list[int]:
        found = self._buckets.get(term)
        if found is None:
            probe = "SELECT 1 FROM chunks_impacts WHERE chunks_impacts MATCH ? LIMIT 1"
            found = self._buckets[term] = [
                bucket
                for bucket in range(bm25.IMPACT_BUCKETS - 1, -1, -1)
                if self.conn.execute(probe, (f'"{term}{bucket:02d}"',)).fetchone()
            ]
        return found

    def holding(self, terms: Sequence[str]) -> set[int]:
        return set(self._matching(codec.fts_query(terms))) if terms else set()

    def _matching(self, match: str) -> list[int]:
        sql = "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?"
        return [int(row[0]) for row in self.conn.execute(sql, (match,))]

    def holders_cost(
        self, term: str, visited: Sequence[str], stats: bm25.Stats, terms: Sequence[str]
    ) -> int:
        return _holders_plan(term, visited, stats, terms).cost

    def score_each(
        self,
        term: str,
        visited: Sequence[str],
        dataset_ids: Sequence[str],
        doc_ids: Sequence[str],
        stats: bm25.Stats,
        terms: Sequence[str],
    ) -> list[tuple[int, float, Row | None]]:
        """``holders`` by scoring every chunk holding ``term`` and none of ``visited``."""
        held = self.holding([term]) - self.holding(visited)
        return self.scores(sorted(held), dataset_ids, doc_ids, stats, terms)

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
        """Ranked by FTS5 when ``term`` comes last in ``terms`` but for ``visited`` and that
        costs less than scoring each (_holders_plan): over the weighty terms alone when slight
        ones come before it (_beside_slight), else the chunks holding ``term`` and another
        term (``others AND (term NOT visited)``), and those holding no other. A chunk holding
        no other term scores its term's weight alone: when the ``count``-th best of the first
        in scope beats every such chunk below the term's impact buckets (topk.alone_buckets),
        only those in the buckets that could beat it are scored (at most a window of them);
        ``least``, the best found before, bounds them as well.
        Else they are scored each, ranked as ``(term NOT visited) NOT others``, or ranked as
        ``term NOT visited`` with the first set aside (a statement's bm25() first counts the
        chunks of each term it names, and this one names only the rare terms). bm25() sums over
        the query's terms in the order they are written, a term a chunk lacks adding exactly
        0.0, so every one of these sums as ranking every match does (``others OR term OR
        visited``), bit for bit. Else, or when fewer than ``count`` of a ranked window are in
        scope, every chunk is scored (score_each)."""
        plan = _holders_plan(term, visited, stats, terms)
        if not plan.ranked:
            return self.score_each(term, visited, dataset_ids, doc_ids, stats, terms)
        before = terms[: len(terms) - len(visited) - 1]
        others = codec.fts_query(before)
        held = codec.fts_query([term])
        if visited:  # in the summing order
            held = f"{held} NOT ({codec.fts_query(terms[len(terms) - len(visited) :])})"
        slight = [t for t in before if stats.slight(t)]
        weighty = [t for t in before if t not in slight]
        # _beside_slight cannot answer when fewer than count chunks hold a weighty other and
        # nothing was found before (the term's buckets then bound nothing): not tried when that
        # is expected, twice over
        if (
            slight
            and not stats.slight(term)
            and (not weighty or least or 2 * stats.holding_one_of(term, weighty) >= count)
        ):
            scope = (dataset_ids, doc_ids)
            beside = self._beside_slight(
                term,
                held,
                weighty,
                stats.slack(slight),
                scope,
                stats,
                terms,
                count,
                least,
                plan.cost,
            )
            if beside is not None:
                return beside
        window = count + count // 4  # room for chunks out of scope
        paired = f"({others}) AND ({held})"
        alone = f"({held}) NOT ({others})"
        windows = [self._ranked(paired, window)]
        scoped = self._in_scope([seq for seq, _ in windows[0]], dataset_ids, doc_ids)
        kept = [(seq, value, None) for seq, value in windows[0] if seq in scoped]
        if len(kept) >= count or least:  # the chunks holding no other term: by its buckets?
            least = max(kept[count - 1][1] if len(kept) >= count else 0.0, least)
            ladder = topk.alone_buckets(
                self.buckets(term), stats.idf(term) * stats.drift, 0.0, least
            )
            bucketed = None if ladder is None else self._bucketed(term, ladder, window)
            if bucketed is not None:
                others_too = [t for t in terms if t != term]
                alone_scored = self.scores(bucketed, dataset_ids, doc_ids, stats, terms, others_too)
                return [*kept, *alone_scored]
        scored: list[tuple[int, float, Row | None]] = []
        if plan.alone:
            scored = self.scores(self._matching(alone), dataset_ids, doc_ids, stats, terms)
        elif plan.aside:
            windows.append(self._ranked(held, window, besides=paired))
        else:
            windows.append(self._ranked(alone, window))
        values = dict(pair for found in windows for pair in found)
        if len(windows) > 1:
            scoped |= self._in_scope([seq for seq, _ in windows[1]], dataset_ids, doc_ids)
        for found in windows:  # a full window with fewer than count in scope
            if len(found) == window and sum(seq in scoped for seq, _ in found) < count:
                return self.score_each(term, visited, dataset_ids, doc_ids, stats, terms)
        return scored + [(seq, values[seq], None) for seq in scoped]

    def _beside_slight(
        self,
        term: str,
        held: str,
        weighty: Sequence[str],
        slack: float,
        scope: tuple[Sequence[str], Sequence[str]],
        stats: bm25.Stats,
        terms: Sequence[str],
        count: int,
        least: float,
        cost: int,
    ) -> list[tuple[int, float, Row | None]] | None:
        """``holders`` when terms before ``term`` are slight (bm25.LEAST_IDF: in half the chunks
        or more, together adding at most ``slack`` to any chunk). FTS5 ranks over the others,
        ``weighty``, and ``held`` alone, so that its bm25() never counts the slight terms'
        chunks (at 1M chunks, three such words made a statement 175 ms); a chunk's rank is
        then at most ``slack`` below its score. The chunks holding a weighty term are ranked
        (all of them, without weighty others), and the ranked ones that could reach the
        ``count``-th best in scope, or ``least`` (the best found before), are scored each
        (ties, which the slight terms break, included); those holding no weighty term but
        ``term`` come from its buckets (topk.alone_buckets), or, when those cannot bound them
        and ``least`` is known, from FTS5 ranking them over ``held`` alone (a rank again at
        most ``slack`` below the score). None when the windows or the buckets cannot bound
        them, or the ties would cost more than ``cost`` visits (FTS5 then ranks them over every
        term)."""
        dataset_ids, doc_ids = scope
        window = count * SLIGHT_WINDOW
        weighted = codec.fts_query(weighty)
        step = count + count // 4  # ranks checked for scope at a time
        for reach in (count * FIRST_WINDOW, window):  # the first, else the whole window
            ranked = self._ranked(f"({weighted}) AND ({held})" if weighty else held, reach)
            inside: list[float] = []  # the ranks in scope, best first, until count are
            for at in range(0, len(ranked), step):
                if len(inside) >= count:
                    break
                part = ranked[at : at + step]
                scoped = self._in_scope([seq for seq, _ in part], dataset_ids, doc_ids)
                inside += [value for seq, value in part if seq in scoped]
            found = max(inside[count - 1] if len(inside) >= count else 0.0, least)  # 0.0: all
            near = _reaching(ranked, reach, found, slack)
            if near is not None or len(ranked) < reach:
                break
        least = found
        lone: list[int] | None = []
        if weighty:
            weight = stats.idf(term) * stats.drift
            ladder = topk.alone_buckets(self.buckets(term), weight, slack, least)
            lone = None if ladder is None else self._bucketed(term, ladder, window)
            if lone is None and least:
                alone = self._ranked(f"({held}) NOT ({weighted})", window)
                lone = _reaching(alone, window, least, slack)
                lone = lone if lone is None or len(lone) <= cost else None
        if near is None or lone is None or len(near) > cost:
            return None
        # scores keeps the chunks in scope; of the bucketed, those holding no weighty other term
        weighty_too = [t for t in terms if t != term and not stats.slight(t)]
        return [
            *self.scores(near, dataset_ids, doc_ids, stats, terms),
            *self.scores(lone, dataset_ids, doc_ids, stats, terms, weighty_too),
        ]

    def _in_scope(
        self, seqs: Sequence[int], dataset_ids: Sequence[str], doc_ids: Sequence[str]
    ) -> set[int]:
        """Of ``seqs``, the chunks in scope (in_scope)."""
        where, args = in_scope(dataset_ids, doc_ids)
        sql = f"SELECT c.seq FROM {_LISTED} WHERE {_AMONG} AND {where}"
        return {seq for (seq,) in self._read(sql, [json.dumps(list(seqs)), *args])}

    def _bucketed(self, term: str, ladder: list[int], most: int) -> list[int] | None:
        """The chunks in the buckets ``ladder`` of ``term``; None when these buckets hold more
        than ``most`` (scoring each would cost more than ranking). Which of them hold no other
        term is found as they are scored (``scores``' ``absent``): asking FTS5 costs a seek of
        each term's postings per chunk (at 100k chunks, 164 chunks beside a word in 97% of
        them took 57 ms)."""
        if not ladder:
            return []
        sql = "SELECT rowid FROM chunks_impacts WHERE chunks_impacts MATCH ? LIMIT ?"
        match = " OR ".join(f'"{term}{bucket:02d}"' for bucket in ladder)
        bucketed = [int(row[0]) for row in self.conn.execute(sql, (match, most + 1))]
        return bucketed if len(bucketed) <= most else None

    def ranked(self, terms: Sequence[str], count: int) -> list[tuple[int, float]]:
        return self._ranked(codec.fts_query(terms), count)

    def _ranked(self, match: str, count: int, besides: str = "") -> list[tuple[int, float]]:
        """The first ``count`` chunks matching ``match`` and not ``besides`` (seq, BM25
        positive), best first; bm25() counts and ranks over ``match`` alone."""
        sql = (
            f"SELECT rowid, bm25(chunks_fts, {bm25.SQL_WEIGHTS}) AS bm25 FROM chunks_fts"
            " WHERE chunks_fts MATCH ?"
            + (
                " AND rowid NOT IN (SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?)"
                if besides
                else ""
            )
            + " ORDER BY bm25, rowid LIMIT ?"
        )
        args = (match, besides, count) if besides else (match, count)
        return [(int(seq), -float(value)) for seq, value in self.conn.execute(sql, args)]

    def cell(self, places: dict[str, int], ladders: dict[str, list[int]], most: int) -> list[int]:
        held = [f'"{term}{place:02d}"' for term, place in places.items() if place >= 0]
        below = [
            f'"{term}{bucket:02d}"'
            for term, place in places.items()
            if place < 0
            for bucket in ladders[term]
        ]
        match = f"({' AND '.join(held)})" + (f" NOT ({' OR '.join(below)})" if below else "")
        sql = "SELECT rowid FROM chunks_impacts WHERE chunks_impacts MATCH ? LIMIT ?"
        return [int(row[0]) for row in self.conn.execute(sql, (match, most))]

    def scores(
        self,
        seqs: Sequence[int],
        dataset_ids: Sequence[str],
        doc_ids: Sequence[str],
        stats: bm25.Stats,
        terms: Sequence[str],
        absent: Sequence[str] = (),
    ) -> list[tuple[int, float, Row | None]]:
        """ImpactIndex.scores; without the chunks holding any of ``absent`` (terms of
        ``terms``)."""
        if not seqs:
            return []
        where, args = in_scope(dataset_ids, doc_ids)
        score = bm25.scorer(stats, terms, absent)
        found: list[tuple[int, float, Row | None]] = []
        for seq, size, *row in self._read(
            f"SELECT c.seq, d.sz, {ROW_SQL} FROM {_LISTED}"
            f" JOIN chunks_fts_docsize d ON d.id = c.seq WHERE {_AMONG} AND {where}",
            [json.dumps(list(seqs)), *args],
        ):
            _, _, docnm, content, keywords, questions = row
            value = score(content, docnm, keywords, questions, row_tokens(size))
            if value is not None:
                found.append((seq, value, tuple(row)))
        return found

    def rows(self, seqs: Sequence[int]) -> dict[int, Row]:
        sql = f"SELECT c.seq, {ROW_SQL} FROM {_LISTED} WHERE {_AMONG}"
        return {seq: tuple(row) for seq, *row in self._read(sql, [json.dumps(list(seqs))])}

    def _read(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        cursor = self.conn.cursor()
        cursor.row_factory = None  # plain tuples: cheaper than sqlite3.Row for many rows
        return cursor.execute(sql, args).fetchall()
