"""Bounded ranking (api.storage.topk over SQLite's impact index) gives the exhaustive answer.

The exhaustive answer ranks every chunk holding a query term by FTS5's bm25() (ties to the older
chunk) and keeps the best. The bounded one scores chunks in Python from its own statistics and
the impact index, and stops once the rest cannot beat what it has. Tested here:
- its BM25 is FTS5's, bit for bit, on words that exercise normalisation (case, accents,
  ligatures, CJK) in every field;
- on a generated corpus (bench.corpus's Zipf words), 200 questions of 1 to 5 terms with
  frequencies from rare to every chunk give the exhaustive ids in the exhaustive order, and most
  of them through the bound (not the fallback); so do questions of up to topk.MOST_TERMS terms,
  and longer ones rank every match;
- the impact index follows every write (adds, edits, renames, deletes, a mean length that
  moves) and the migration builds it for an existing database: every entry bounds its terms'
  weight now, the property the bounded ranking rests on.
"""

from __future__ import annotations

import io
import json
import random
import sqlite3
import threading
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from support.backends import SqliteStore, indexed_words
from support.bounded import holders_given_least

from api import storage, text
from api.storage import bm25, topk
from api.storage.sqlite import connections, fulltext, schema
from api.storage.sqlite.fulltext import SqliteImpacts, row_tokens
from api.storage.topk import Row
from bench.corpus import Corpus
from bench.retrieval_scale import question_ranks

WORDS = ["apple", "Apple", "APPLES", "café", "Cafe", "\ufb01le", "file", "東京", "かな", "x2", "42"]
WORDS += [
    "abc\u037adef",
    "abc",
    "def",
    "ΣΟΦΙΑ",
    "σοφια",
    "Straße",
]  # \u037a: a space once normalised


def _exhaustive(
    conn: sqlite3.Connection, terms: list[str], dataset_ids: list[str], limit: int
) -> list[tuple[str, float]]:
    marks = ", ".join("?" * len(dataset_ids))
    return [
        (row[0], row[1])
        for row in conn.execute(
            "SELECT c.id, bm25(chunks_fts, 1.0, 2.0, 3.0, 4.0) AS s FROM chunks_fts"
            " JOIN chunks c ON c.seq = chunks_fts.rowid WHERE chunks_fts MATCH ?"
            f" AND c.available = 1 AND c.dataset_id IN ({marks}) ORDER BY s, c.seq LIMIT ?",
            (" OR ".join(f'"{t}"' for t in terms), *dataset_ids, limit),
        )
    ]


@pytest.fixture(scope="module")
def corpus_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[SqliteStore, str]:
    """20,000 chunks of 60 Zipf words in 4 documents, and a second small dataset."""
    store = SqliteStore(tmp_path_factory.mktemp("bound"))
    corpus = Corpus(seed=3)
    ids = []
    for name, chunks in (("big", 20_000), ("small", 300)):
        ds = store.create_dataset("t", {"name": name})
        ids.append(str(ds["id"]))
        uploads = [
            storage.Upload(f"{name}{i}.txt", "txt", "doc", io.BytesIO(b"x")) for i in range(4)
        ]
        for doc in store.add_documents(ds, uploads, "t"):
            store.replace_chunks(
                str(doc["id"]), [{"content": c} for c in corpus.chunks(chunks // 4)]
            )
    return store, ids[0]


def test_python_bm25_is_fts5_bm25_bit_for_bit(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    ds = store.create_dataset("t", {"name": "ds"})
    names = ["Apple notes.txt", "café menu.pdf", "noext", "東京.md"]
    uploads = [storage.Upload(n, "txt", "doc", io.BytesIO(b"x")) for n in names]
    rng = random.Random(5)
    for doc in store.add_documents(ds, uploads, "t"):
        store.replace_chunks(
            str(doc["id"]),
            [
                {
                    "content": " ".join(rng.choices(WORDS, k=rng.randint(1, 40))),
                    "important_keywords": rng.sample(WORDS, rng.randint(0, 3)),
                    "questions": [" ".join(rng.choices(WORDS, k=4))] * rng.randint(0, 2),
                }
                for _ in range(40)
            ],
        )
    conn = store.conn
    impacts = SqliteImpacts(conn)
    compared = 0
    for size in (1, 2, 3):
        for combo in [rng.sample(WORDS, size) for _ in range(15)]:
            terms = list(dict.fromkeys(text.query_terms(" ".join(combo))))
            if any(bm25.words(t) != [t] for t in terms):  # a phrase for the index
                assert topk.best(impacts, [str(ds["id"])], [], terms, 1) == topk.SearchPath.PHRASE
                continue
            stats = impacts.stats(terms)
            rows = conn.execute(
                "SELECT c.seq, c.content, c.docnm, c.important_keywords, c.questions, d.sz,"
                " bm25(chunks_fts, 1.0, 2.0, 3.0, 4.0) FROM chunks_fts"
                " JOIN chunks c ON c.seq = chunks_fts.rowid"
                " JOIN chunks_fts_docsize d ON d.id = c.seq WHERE chunks_fts MATCH ?",
                (" OR ".join(f'"{t}"' for t in terms),),
            ).fetchall()
            score = bm25.scorer(stats, terms)
            # the chunks holding the first term dropped: None for them, the score for others
            without_first = bm25.scorer(stats, terms, terms[:1])
            first = impacts.holding(terms[:1])
            for seq, content, docnm, keywords, questions, size_record, expected in rows:
                row = (content, docnm, keywords, questions, row_tokens(size_record))
                got = score(*row)
                assert got is not None and -got == expected, (terms, *row)
                assert without_first(*row) == (None if seq in first else got), (terms, *row)
                compared += 1
    assert compared > 1000


def test_bounded_ranking_gives_the_exhaustive_answer(
    corpus_store: tuple[SqliteStore, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every question the bound can answer within its visits gives the exhaustive answer; and
    retrieval's own choice (the bound when it pays, else every match ranked) always does. Of
    up to topk.MOST_TERMS terms; longer ones always rank every match."""
    store, dataset = corpus_store
    conn = store.conn
    impacts = SqliteImpacts(conn)
    words = Corpus().words
    asked = question_ranks(200, seed=15) + question_ranks(40, 19, terms=(6, topk.MOST_TERMS + 2))
    questions = [[words[r] for r in ranks] for ranks in asked]
    # retrieval sums BM25 in one order (topk.summing_order), as ranking every match then does
    questions = [topk.summing_order(impacts.stats(terms), terms) for terms in questions]
    for terms in questions:  # what retrieval calls
        expected = _exhaustive(conn, terms, [dataset], 64)
        got = store.search_chunks([dataset], [], terms, 64)
        assert [(r["id"], r["bm25"]) for r in got] == expected, terms
    # the bound tried wherever it can be: as many visits as there are matches
    monkeypatch.setattr(SqliteImpacts, "visit_cost", 1)
    paths: Counter[tuple[bool, topk.SearchPath]] = Counter()  # (longer than MOST_TERMS?, path)
    for terms in questions:
        for limit in (10, 64):
            found = topk.best(impacts, [dataset], [], terms, limit)
            paths[len(terms) > topk.MOST_TERMS, topk.path_of(found)] += 1
            if isinstance(found, list):
                assert [(row[0], row[6]) for row in found] == _exhaustive(
                    conn, terms, [dataset], limit
                ), (terms, limit)
    # nearly every question (454 of 460 when written), none of the 20 longer than MOST_TERMS
    assert paths[False, topk.SearchPath.BOUNDED] >= 440, paths
    assert paths[True, topk.SearchPath.MANY_TERMS] == 20, paths


def test_the_index_ranks_a_rare_terms_chunks_as_scoring_each_does(
    corpus_store: tuple[SqliteStore, str],
) -> None:
    """FTS5's ranking of the chunks holding a rare term and none of the rarer ones visited
    before (SqliteImpacts.holders) gives the best of them with the scores the Python scorer
    gives, bit for bit, whenever those terms come last in the summing order, also when the
    chunks holding no other term are taken from the term's impact buckets alone, and also when
    FTS5 ranks over the weighty terms alone (the slight ones' scores computed for the ranks
    that could reach the best); in any other order every chunk is scored. Given the best score
    found before (``least``), it gives every chunk that could reach it, and its score."""
    store, dataset = corpus_store
    impacts = SqliteImpacts(store.conn)
    bucketed, beside_slight = impacts._bucketed, impacts._beside_slight
    by_buckets: list[list[int]] = []  # the bucket lists the chunks holding no other came from
    beside: Counter[tuple[bool, bool]] = Counter()  # (weighty others?, answered?)

    def spy(term: str, ladder: list[int], most: int) -> list[int] | None:
        found = bucketed(term, ladder, most)
        if found is not None:
            by_buckets.append(ladder)
        return found

    statements = impacts._ranked
    ranked_calls: list[str] = []  # the matches ranked
    alone = 0  # the calls of beside_slight that ranked the chunks holding no weighty other
    again = 0  # those that ranked the whole window after the first (ties reaching past it)

    def spy_ranked(match: str, count: int, besides: str = "") -> list[tuple[int, float]]:
        ranked_calls.append(match)
        return statements(match, count, besides)

    def spy_beside(*args: Any) -> list[tuple[int, float, Row | None]] | None:
        nonlocal alone, again
        before = len(ranked_calls)
        found = beside_slight(*args)
        beside[bool(args[2]), found is not None] += 1
        calls = ranked_calls[before:]  # the first window, maybe the whole, maybe the alone
        again += calls[1:2] == calls[:1]
        alone += bool(args[2]) and found is not None and calls[-1] != calls[0]
        return found

    impacts._bucketed = spy  # type: ignore[method-assign]
    impacts._beside_slight = spy_beside  # type: ignore[method-assign,assignment]
    impacts._ranked = spy_ranked  # type: ignore[method-assign]
    words = Corpus().words
    ranked = given = 0
    for ranks in question_ranks(80, seed=17):
        asked = list(dict.fromkeys(words[r] for r in ranks))
        stats = impacts.stats(asked)
        for terms in (topk.summing_order(stats, asked), asked[::-1]):
            rarest = sorted(terms[::-1], key=stats.hits.__getitem__)
            for at, term in enumerate(rarest[:-1]):
                visited = rarest[:at]
                found = impacts.holders(term, visited, [dataset], [], stats, terms, 16)
                scored = impacts.score_each(term, visited, [dataset], [], stats, terms)
                held = impacts.holding([term]) - impacts.holding(visited)
                assert {s for s, _, _ in [*found, *scored]} <= held
                best = sorted(((v, -s) for s, v, _ in scored), reverse=True)[:16]
                assert sorted(((v, -s) for s, v, _ in found), reverse=True)[:16] == best
                ranked += len(found) < len(scored)  # FTS5 ranked: the best few only
                given += holders_given_least(impacts, term, visited, dataset, stats, terms, best)
    assert ranked >= 40 and given >= 40, (ranked, given)
    # some from chunks in the top buckets, some with no chunk able to enter
    assert len(by_buckets) >= 10 and any(by_buckets) and not all(by_buckets), by_buckets
    # ranked over the weighty terms, with others weighty and without, and some left to FTS5
    assert all(beside[key] >= 20 for key in [(True, True), (False, True)]), beside
    assert beside[True, False] + beside[False, False] >= 10, beside
    # the chunks holding no weighty other, beyond the buckets' reach: ranked over the term alone
    assert alone >= 10, alone
    assert again >= 5, again


def test_ranks_over_the_weighty_terms_keep_every_chunk_the_slack_could_lift(
    corpus_store: tuple[SqliteStore, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ranked without the slight terms, a chunk's rank is at most their slack below its score:
    every rank within the slack of the ``count``-th is scored, not only ties; and a full window
    whose last rank is within the slack of it cannot bound the others, the first window's nor
    the whole one's (ranks made up here: in a corpus, ranks that close but not equal are too
    rare to test on)."""
    store, dataset = corpus_store
    impacts = SqliteImpacts(store.conn)
    asked: list[list[int]] = []

    def scores(seqs: list[int], *_: Any) -> list[tuple[int, float, Row | None]]:
        asked.append(list(seqs))
        return []

    ranks = [(1, 5.0), (2, 4.0), (3, 4.0 - 1e-7), (4, 4.0 - 1e-5), (5, 3.0)]
    monkeypatch.setattr(impacts, "_ranked", lambda match, most: ranks[:most])
    monkeypatch.setattr(impacts, "_in_scope", lambda seqs, *_: set(seqs))
    monkeypatch.setattr(impacts, "scores", scores)
    stats = impacts.stats([])

    def beside() -> list[tuple[int, float, Row | None]] | None:
        """The best 2 of the term's chunks, no weighty other term, slight ones adding 1e-6."""
        scope: tuple[list[str], list[str]] = ([dataset], [])
        return impacts._beside_slight(
            "term", '"term"', [], 1e-6, scope, stats, ["term"], 2, 0.0, 10**6
        )

    assert beside() == []
    # 3 is 1e-7 below the 2nd best: the slack could lift it
    assert [seqs for seqs in asked if seqs] == [[1, 2, 3]]
    full = 2 * fulltext.SLIGHT_WINDOW  # the window of count 2, filled, its last 1e-7 below
    ranks[:] = [(1, 5.0), (2, 4.0), *((seq, 4.0 - 1e-7) for seq in range(3, full + 1))]
    assert beside() is None


def test_questions_with_everyday_words_rank_their_other_words(
    corpus_store: tuple[SqliteStore, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A term in half the chunks or more weighs next to nothing (idf's floor). When the cells
    cannot bound a question holding one, the full-text index ranks the chunks of its other
    terms alone, and the answer is still the exhaustive one."""
    store, dataset = corpus_store
    impacts = SqliteImpacts(store.conn)
    words = Corpus().words
    stats = impacts.stats(words[:10])
    everyday = [w for w in words[:10] if stats.idf(w) <= bm25.LEAST_IDF]
    assert everyday, [stats.hits[w] / stats.rows for w in words[:10]]
    monkeypatch.setattr(topk, "CELL_COST", 10**9)  # no cell within the visits allowed
    monkeypatch.setattr(topk, "RARE_SHARE", 0)  # nor any rare term's chunks
    asked: list[list[str]] = []
    ranked = impacts.ranked

    def spy(terms: list[str], count: int) -> list[tuple[int, float]]:
        asked.append(list(terms))
        return ranked(terms, count)

    monkeypatch.setattr(impacts, "ranked", spy)
    rng = random.Random(16)
    answered = 0
    for ranks in question_ranks(60, seed=16):
        terms = list(dict.fromkeys([rng.choice(everyday), *(words[r] for r in ranks)]))
        for limit in (10, 64):
            found = topk.best(impacts, [dataset], [], terms, limit)
            if isinstance(found, list):
                answered += 1
                assert [(row[0], row[6]) for row in found] == _exhaustive(
                    store.conn, terms, [dataset], limit
                ), (terms, limit)
    assert asked and all(not set(a) & set(everyday) for a in asked)
    assert len(asked) >= 40 and answered >= 40, (len(asked), answered)  # 64, 75 of 120 when written


def test_a_small_dataset_beside_a_large_one_gets_its_own_best(
    corpus_store: tuple[SqliteStore, str],
) -> None:
    store, _ = corpus_store
    conn = store.conn
    small = conn.execute("SELECT id FROM datasets WHERE name = 'small'").fetchone()[0]
    words = Corpus().words
    for terms in ([words[0]], [words[1], words[4]], [words[0], words[2], words[9]]):
        expected = _exhaustive(conn, terms, [small], 64)
        assert len(expected) == 64
        got = store.search_chunks([small], [], terms, 64)
        assert [(r["id"], r["bm25"]) for r in got] == expected


def _check_indexes(conn: sqlite3.Connection) -> int:
    """Every chunk's impact index entry bounds every term's weight in it now (the property
    the bounded ranking rests on), and names only terms it holds; no entry outlives its
    chunk; chunk_terms counts the chunks holding each term, as FTS5 finds them; the full-text
    index holds each chunk's words, column by column, and nothing of a chunk deleted or of
    its words before an edit. Returns the number of indexed (chunk, term) pairs."""
    stats = SqliteImpacts(conn).stats([])
    indexed = 0
    rows = conn.execute(
        "SELECT c.seq, c.content, c.docnm, c.important_keywords, c.questions, d.sz, i.terms"
        " FROM chunks c JOIN chunks_fts_docsize d ON d.id = c.seq"
        " LEFT JOIN chunks_impacts i ON i.rowid = c.seq"
    ).fetchall()
    for seq, content, docnm, keywords, questions, size, entry in rows:
        assert entry is not None, seq
        buckets = {token[:-2]: int(token[-2:]) for token in entry.split()}
        freqs = bm25.frequencies(bm25.fields(content, docnm, keywords, questions))
        assert set(buckets) <= set(freqs)
        for term, freq in freqs.items():
            weight = bm25.saturation(freq, row_tokens(size), stats.avgdl)
            ceiling = bm25.bucket_ceiling(buckets.get(term, -1)) * stats.drift
            assert weight <= ceiling * (1 + 1e-9), (term, freq, buckets.get(term))
        indexed += len(buckets)
    count = conn.execute("SELECT count(*) FROM chunks_impacts").fetchone()[0]
    assert count == len(rows)
    held: Counter[str] = Counter()
    for _seq, content, docnm, keywords, questions, *_ in rows:
        held.update(set(bm25.frequencies(bm25.fields(content, docnm, keywords, questions))))
    counted = dict(conn.execute("SELECT term, chunks FROM chunk_terms WHERE chunks <> 0"))
    assert counted == held
    words = {
        seq: tuple(" ".join(field) for field in bm25.fields(content, docnm, keywords, questions))
        for seq, content, docnm, keywords, questions, *_ in rows
    }
    assert indexed_words(conn) == {seq: held for seq, held in words.items() if any(held)}
    fts5 = "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?"
    for term, chunks in counted.items():  # FTS5 itself finds each term in as many chunks
        assert conn.execute(fts5, (f'"{term}"',)).fetchone()[0] == chunks, term
    return indexed


def test_a_chunks_terms_are_a_json_list_whatever_they_hold() -> None:
    """rf_terms quotes the words itself, and falls back to JSON's encoder for a word holding a
    character JSON escapes."""
    for content in ("ab cd ab", 'ab "q" c\\d é'):
        listed = fulltext.terms(lambda v: v if isinstance(v, str) else "", content, "t.txt", "", "")
        assert sorted(json.loads(listed)) == sorted({*content.split(), "t"})
    assert json.loads(fulltext.terms(lambda v: "", "", "", "", "")) == []


def test_the_impact_index_follows_every_write(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    conn = store.conn
    ds = store.create_dataset("t", {"name": "ds"})
    doc, other = store.add_documents(
        ds,
        [storage.Upload(n, "txt", "doc", io.BytesIO(b"x")) for n in ("a b.txt", "c.txt")],
        "t",
    )
    rng = random.Random(9)
    vocabulary = ["ab", "cd", "ef", "gh", "ij"]
    # lengths from 3 to 300 tokens: the mean moves as chunks come, and weights with it
    store.replace_chunks(
        str(doc["id"]),
        [{"content": " ".join(rng.choices(vocabulary, k=rng.randint(3, 300)))} for _ in range(60)],
    )
    store.replace_chunks(str(other["id"]), [{"content": "ab ab ab cd", "questions": ["cd ef"]}])
    assert _check_indexes(conn) > 60
    short = store.add_chunk(doc, {"content": "ab"})
    store.update_chunk(str(doc["id"]), str(short["id"]), {"content": "ij ij ij ij ij ij ij ij"})
    store.update_chunk(str(doc["id"]), str(short["id"]), {"important_keywords": ["gh", "gh"]})
    conn.execute("UPDATE chunks SET docnm = 'ab ab renamed.txt' WHERE doc_id = ?", (doc["id"],))
    assert _check_indexes(conn) > 60
    store.delete_chunks(str(doc["id"]), None)
    assert _check_indexes(conn) > 0
    assert conn.execute("SELECT count(*) FROM chunks_impacts").fetchone()[0] == 1


def _as_left_by(conn: sqlite3.Connection, version: int) -> None:
    """Wind a database with chunks back to what migration ``version`` (2 or 4) left: the
    full-text index keeping a copy of the words it indexes, that version's chunk triggers,
    and, at 2, neither impact index nor term counts."""
    triggers = [
        s
        for s in schema.statements(schema.MIGRATIONS[0 if version == 2 else version - 1])
        if s.startswith("CREATE TRIGGER chunks_fts")
    ]
    (table,) = [
        s
        for s in schema.statements(schema.MIGRATIONS[0])
        if s.startswith("CREATE VIRTUAL TABLE chunks_fts")
    ]
    conn.execute("BEGIN")
    for name in ("insert", "delete", "update"):
        conn.execute(f"DROP TRIGGER chunks_fts_{name}")
    conn.execute("DROP TABLE chunks_fts")
    conn.execute(table)
    conn.execute(
        "INSERT INTO chunks_fts (rowid, content, title, keywords, questions) SELECT seq,"
        " rf_words(content), rf_title(docnm), rf_words(important_keywords),"
        " rf_words(questions) FROM chunks"
    )
    for statement in triggers:
        conn.execute(statement)
    if version == 2:
        conn.execute("DROP TABLE chunks_impacts")
        conn.execute("DROP TABLE impact_avgdl")
        conn.execute("DROP TABLE chunk_terms")
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("COMMIT")
    connections.close_all()


@pytest.mark.parametrize("version", [2, 4])
def test_the_migrations_build_the_indexes_of_an_existing_database(
    tmp_path: Path, version: int
) -> None:
    """A database as migration 2 left it (no impact index nor term counts, the first
    triggers), or as migration 4 left it (the full-text index keeping a copy of its words),
    with chunks: opening it builds what is missing, the full-text index without a copy, and
    searches give what they gave before; the new triggers keep every index right."""
    store = SqliteStore(tmp_path)
    ds = store.create_dataset("t", {"name": "ds"})
    (doc,) = store.add_documents(ds, [storage.Upload("x.txt", "txt", "doc", io.BytesIO(b"x"))], "t")
    corpus = Corpus(seed=8)
    store.replace_chunks(str(doc["id"]), [{"content": c} for c in corpus.chunks(200, 30)])
    questions = [[corpus.words[r] for r in ranks] for ranks in question_ranks(20, vocabulary=300)]
    answers = [store.search_chunks([str(ds["id"])], [], terms, 16) for terms in questions]
    _as_left_by(store.conn, version)
    with closing(sqlite3.connect(tmp_path / "ragflow.db")) as raw:  # not migrated on opening
        assert "chunks_fts_content" in _tables(raw)

    store = SqliteStore(tmp_path)
    conn = store.conn
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(schema.MIGRATIONS)
    assert "chunks_fts_content" not in _tables(conn)
    assert [store.search_chunks([str(ds["id"])], [], terms, 16) for terms in questions] == answers
    assert _check_indexes(conn) > 200
    store.replace_chunks(str(doc["id"]), [{"content": c} for c in corpus.chunks(50, 30)])
    (edited, *deleted), _ = store.list_chunks(str(doc["id"]), storage.Page(1, 4))
    store.update_chunk(str(doc["id"]), str(edited["id"]), {"content": "ab", "questions": ["cd"]})
    store.delete_chunks(str(doc["id"]), [str(c["id"]) for c in deleted])
    assert _check_indexes(conn) > 50


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}


def test_a_connection_remembers_buckets_until_the_impact_index_changes(tmp_path: Path) -> None:
    """Another connection's writes (in another thread, as an executor's): one to another table
    (as a heartbeat) leaves the buckets a connection read remembered; a chunk's makes it read
    them again, and the term counts it reads are that write's."""
    store = SqliteStore(tmp_path)
    ds = store.create_dataset("t", {"name": "ds"})
    (doc,) = store.add_documents(ds, [storage.Upload("x.txt", "txt", "doc", io.BytesIO(b"x"))], "t")
    store.replace_chunks(str(doc["id"]), [{"content": "ab cd " * 20}, {"content": "cd ef " * 20}])
    index = SqliteImpacts(store.conn)
    assert index.stats(["ab", "cd"]).hits == {"ab": 1, "cd": 2}
    remembered = index.buckets("ab")
    assert remembered and index._buckets == {"ab": remembered}

    def elsewhere(write: Any) -> None:
        thread = threading.Thread(target=lambda: write(SqliteStore(tmp_path)))
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive()

    elsewhere(lambda other: other.conn.execute("UPDATE datasets SET update_time = 7"))
    index.stats(["ab"])
    assert index._buckets == {"ab": remembered}
    elsewhere(lambda other: other.add_chunk(doc, {"content": "ab"}))
    assert index.stats(["ab", "cd"]).hits == {"ab": 2, "cd": 2}
    assert index._buckets == {}
    found = index.buckets("ab")  # the new chunk's weight is in another bucket
    assert len(found) == len(remembered) + 1 and set(remembered) < set(found)
