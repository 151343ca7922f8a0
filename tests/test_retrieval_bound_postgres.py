"""Bounded ranking on PostgreSQL (api.storage.topk over postgres/fulltext.py's impact index)
gives the exhaustive answer: every match ranked in SQL by the same BM25.

Tested here, on a real throwaway cluster:
- the SQL BM25 is the Python scorer's, bit for bit, on every match of generated questions (and,
  in test_retrieval_backends.py, FTS5's on the same corpus);
- on a generated corpus (bench.corpus's Zipf words), 200 questions of 1 to 5 terms give the
  exhaustive ids, scores and order, most of them through the bound;
- questions holding an everyday word go through the ranked step and still give it;
- the index columns, totals and impact reference follow every write (adds, edits, renames,
  deletes, a document's and a dataset's removal), and so do the word and impact counts of
  ``fulltext_terms``; migrations 3 and 4 build them for a database that predates them;
- each chunk's freqs, read for every chunk ranked, is stored uncompressed.
"""

from __future__ import annotations

import io
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.bounded import holders_given_least

from api import storage, text
from api.storage import bm25, topk
from api.storage.postgres.connections import close_pools
from api.storage.postgres.dialect import PostgresDialect
from api.storage.postgres.fulltext import SCORE, PostgresImpacts, any_word, bm25_sql
from bench.corpus import Corpus
from bench.retrieval_scale import question_ranks

Store = Any  # SqlStorage over PostgresDialect: its ``db`` is read here


def _load(store: Store, name: str, chunks: list[dict[str, Any]], docs: int = 4) -> str:
    ds = store.create_dataset("t", {"name": name})
    uploads = [
        storage.Upload(f"{name} notes {i}.txt", "txt", "doc", io.BytesIO(b"x")) for i in range(docs)
    ]
    share = len(chunks) // docs
    for n, doc in enumerate(store.add_documents(ds, uploads, "t")):
        store.replace_chunks(str(doc["id"]), chunks[n * share : (n + 1) * share])
    return str(ds["id"])


@pytest.fixture(scope="module")
def corpus_store(
    pg_cluster: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Store, str]]:
    """20,000 chunks of 60 Zipf words in 4 documents, and a second small dataset."""
    url = str(pg_cluster.create_database())
    backend = storage.open_backend(tmp_path_factory.mktemp("bound-pg"), url)
    corpus = Corpus(seed=3)
    dataset = _load(backend.store, "big", [{"content": c} for c in corpus.chunks(20_000)])
    _load(backend.store, "small", [{"content": c} for c in corpus.chunks(300)])
    yield backend.store, dataset
    close_pools(url)
    pg_cluster.drop_database(url)


def _bounded(store: Store, dataset: str, terms: list[str], limit: int) -> Any:
    with store.db.read() as session:
        return topk.best(PostgresImpacts(session), [dataset], [], terms, limit)


def _exhaustive(store: Store, dataset: str, terms: list[str], limit: int) -> list[Any]:
    """Every match ranked in SQL: the backend's own fallback (the bound turned off)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(topk, "best", lambda *args: topk.SearchPath.UNBOUNDED)
        return [(r["id"], r["bm25"]) for r in store.search_chunks([dataset], [], terms, limit)]


def test_sql_bm25_is_the_python_scorer_bit_for_bit(corpus_store: tuple[Store, str]) -> None:
    store, _ = corpus_store
    words = Corpus().words
    compared = 0
    with store.db.read() as session:
        index = PostgresImpacts(session)
        for ranks in question_ranks(12, seed=21):
            terms = list(dict.fromkeys(words[r] for r in ranks))
            stats = index.stats(terms)
            scored, args = bm25_sql(stats, terms)
            rows = session.execute(
                "SELECT c.content, c.docnm, c.important_keywords, c.questions, c.tokens,"
                f" {SCORE} FROM chunks c {scored} WHERE c.fts @@ ?::tsquery",
                (*args, " | ".join(f"'{t}'" for t in terms)),
            ).fetchall()
            python = bm25.scorer(stats, terms)
            for content, docnm, keywords, questions, tokens, expected in rows:
                assert python(content, docnm, keywords, questions, tokens) == expected, terms
                compared += 1
    assert compared > 20_000


def test_bounded_ranking_gives_the_exhaustive_answer(
    corpus_store: tuple[Store, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every question the bound can answer within its visits gives the exhaustive answer; and
    retrieval's own choice (the bound when it pays, else every match ranked) always does. Of
    up to topk.MOST_TERMS terms; longer ones always rank every match."""
    store, dataset = corpus_store
    words = Corpus().words
    asked = question_ranks(200, seed=15) + question_ranks(40, 19, terms=(6, topk.MOST_TERMS + 2))
    questions = [[words[r] for r in ranks] for ranks in asked]
    with store.db.read() as session:  # retrieval's order of summing (topk.summing_order)
        index = PostgresImpacts(session)
        questions = [topk.summing_order(index.stats(terms), terms) for terms in questions]
    for terms in questions:  # what retrieval calls
        got = store.search_chunks([dataset], [], terms, 64)
        assert [(r["id"], r["bm25"]) for r in got] == _exhaustive(store, dataset, terms, 64)
    monkeypatch.setattr(PostgresImpacts, "visit_cost", 1)  # the bound tried wherever it can be
    paths: Counter[tuple[bool, topk.SearchPath]] = Counter()  # (longer than MOST_TERMS?, path)
    for terms in questions:
        for limit in (10, 64):
            found = _bounded(store, dataset, terms, limit)
            paths[len(terms) > topk.MOST_TERMS, topk.path_of(found)] += 1
            if isinstance(found, list):
                assert [(row[0], row[6]) for row in found] == _exhaustive(
                    store, dataset, terms, limit
                ), (terms, limit)
    # as on SQLite: nearly every question, none of the 20 longer than MOST_TERMS
    assert paths[False, topk.SearchPath.BOUNDED] >= 440, paths
    assert paths[True, topk.SearchPath.MANY_TERMS] == 20, paths


def test_the_chunks_of_a_rare_term_are_its_best_scored_each(
    corpus_store: tuple[Store, str],
) -> None:
    """The best chunks holding a rare term and none of the rarer ones visited before
    (PostgresImpacts.holders) are the best of every such chunk scored, scores and order:
    also when those holding another weighty term come first (of several, those holding the
    rarest before the others) and the others are taken from the term's impact buckets, or
    left out as unable to enter. Given the best score found before (``least``), every chunk
    that could reach it, and its score."""
    store, dataset = corpus_store
    words = Corpus().words
    paths: dict[str, int] = {}
    given = 0
    with store.db.read() as session:
        ranking: list[str] = []  # the ranking statements of one holders call

        class Recorder:
            def execute(self, sql: str, args: Any = ()) -> Any:
                if f"ORDER BY {SCORE} DESC" in sql:  # the term's and others' tests, buckets
                    held = sql.count("c.fts @@ ?") + sql.count("c.fts, ?") - sql.count("NOT")
                    ranking.append(
                        ("paired" if held == 2 else "alone")
                        + (" in buckets" if "c.impacts @@" in sql else "")
                    )
                return session.execute(sql, args)

        index = PostgresImpacts(Recorder())

        def holding(terms: list[str]) -> set[int]:
            sql = "SELECT seq FROM chunks WHERE fts @@ ?::tsquery"
            return {seq for (seq,) in session.execute(sql, (any_word(terms),))} if terms else set()

        for ranks in question_ranks(80, seed=17):
            asked = list(dict.fromkeys(words[r] for r in ranks))
            stats = index.stats(asked)
            terms = topk.summing_order(stats, asked)
            rarest = sorted(terms[::-1], key=stats.hits.__getitem__)
            for at, term in enumerate(rarest[:-1]):
                visited = rarest[:at]
                ranking.clear()
                found = index.holders(term, visited, [dataset], [], stats, terms, 16)
                held = sorted(holding([term]) - holding(visited))
                scored = index.scores(held, [dataset], [], stats, terms)
                # dropped as they are scored: the chunks holding a visited term
                among = sorted(holding([term]))
                kept = index.scores(among, [dataset], [], stats, terms, visited)
                assert sorted((s, v) for s, v, _ in kept) == sorted((s, v) for s, v, _ in scored)
                expected = sorted(((v, -s) for s, v, _ in scored), reverse=True)[:16]
                assert sorted(((v, -s) for s, v, _ in found), reverse=True)[:16] == expected
                path = " then ".join(ranking)
                paths[path] = paths.get(path, 0) + 1
                given += holders_given_least(index, term, visited, dataset, stats, terms, expected)
    # the chunks holding no other weighty term: from the buckets, or none able to enter
    assert paths.get("paired then alone in buckets", 0) >= 5 and paths.get("paired", 0) >= 5, paths
    # with several weighty others, the chunks holding the rarest first, then those holding
    # only later ones: all of them, or those with the term in the buckets that could enter
    split = ("paired then paired", "paired then paired in buckets")
    assert paths.get(split[0], 0) >= 5 and paths.get(split[1], 0) >= 2, paths
    assert given >= 40, given


def test_questions_with_everyday_words_rank_their_other_words(
    corpus_store: tuple[Store, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the cells made unaffordable, questions holding an everyday word go through the
    ranked step (SQL BM25 over their other terms) and still give the exhaustive answer."""
    store, dataset = corpus_store
    words = Corpus().words
    with store.db.read() as session:
        stats = PostgresImpacts(session).stats(words[:10])
    everyday = [w for w in words[:10] if stats.idf(w) <= bm25.LEAST_IDF]
    assert everyday, [stats.hits[w] / stats.rows for w in words[:10]]
    monkeypatch.setattr(topk, "CELL_COST", 10**9)
    monkeypatch.setattr(topk, "RARE_SHARE", 0)  # nor any rare term's chunks
    asked: list[list[str]] = []
    ranked = PostgresImpacts.ranked

    def spy(self: PostgresImpacts, terms: list[str], count: int) -> list[tuple[int, float]]:
        asked.append(list(terms))
        return ranked(self, terms, count)

    monkeypatch.setattr(PostgresImpacts, "ranked", spy)
    rng = random.Random(16)
    answered = 0
    for ranks in question_ranks(60, seed=16):
        terms = list(dict.fromkeys([rng.choice(everyday), *(words[r] for r in ranks)]))
        for limit in (10, 64):
            found = _bounded(store, dataset, terms, limit)
            if isinstance(found, list):
                answered += 1
                assert [(row[0], row[6]) for row in found] == _exhaustive(
                    store, dataset, terms, limit
                ), (terms, limit)
    assert asked and all(not set(a) & set(everyday) for a in asked)
    assert len(asked) >= 40 and answered >= 40, (len(asked), answered)


def test_a_small_dataset_beside_a_large_one_gets_its_own_best(
    corpus_store: tuple[Store, str],
) -> None:
    store, _ = corpus_store
    with store.db.read() as session:
        small = session.execute("SELECT id FROM datasets WHERE name = 'small'").fetchone()[0]
    words = Corpus().words
    for terms in ([words[0]], [words[1], words[4]], [words[0], words[2], words[9]]):
        expected = _exhaustive(store, small, terms, 64)
        assert len(expected) == 64
        got = store.search_chunks([small], [], terms, 64)
        assert [(r["id"], r["bm25"]) for r in got] == expected


def _one(conn: psycopg.Connection[Any], sql: str) -> tuple[Any, ...]:
    row = conn.execute(sql.encode()).fetchone()
    assert row is not None
    return tuple(row)


# each word's and each impact's chunk count, as fulltext_terms keeps them and as counted anew
_TERMS_KEPT = (
    "SELECT impact, lexeme, sum(chunks) FROM fulltext_terms GROUP BY impact, lexeme"
    " HAVING sum(chunks) <> 0 ORDER BY impact, lexeme"
)
_TERMS_COUNTED = (
    "SELECT impact, lexeme, count(*) FROM (SELECT false AS impact, u.lexeme FROM chunks c,"
    " unnest(c.fts) u UNION ALL SELECT true, u.lexeme FROM chunks c, unnest(c.impacts) u) t"
    " GROUP BY impact, lexeme ORDER BY impact, lexeme"
)


def _check_index(url: str) -> int:
    """Each chunk's index columns are what its fields give (length and frequencies as FTS5
    counts them); its impacts bound every term's weight now, at the mean length the totals
    give (they count every chunk and token); the totals and the word and impact counts agree
    with the table. Returns the number of (chunk, term) impact entries."""
    with psycopg.connect(url) as conn:
        chunks, tokens = _one(conn, "SELECT count(*), COALESCE(sum(tokens), 0) FROM chunks")
        assert _one(conn, "SELECT sum(chunks), sum(tokens) FROM fulltext_totals") == (
            chunks,
            tokens,
        )
        kept = conn.execute(_TERMS_KEPT.encode()).fetchall()
        assert kept == conn.execute(_TERMS_COUNTED.encode()).fetchall()
        (reference,) = _one(conn, "SELECT avgdl FROM impact_reference")
        stats = bm25.Stats(
            rows=chunks, avgdl=tokens / max(chunks, 1), hits={}, impact_avgdl=reference
        )
        indexed = 0
        rows = conn.execute(
            "SELECT content, docnm, important_keywords, questions, tokens, freqs,"
            " tsvector_to_array(impacts) FROM chunks"
        ).fetchall()
        for content, docnm, keywords, questions, length, freqs, impacts in rows:
            fields = bm25.fields(content, docnm, keywords, questions)
            assert length == sum(len(field) for field in fields)
            assert freqs == bm25.frequencies(fields)
            buckets = {entry[:-2]: int(entry[-2:]) for entry in impacts}
            assert set(buckets) <= set(freqs)
            for term, freq in freqs.items():
                weight = bm25.saturation(freq, length, stats.avgdl)
                ceiling = bm25.bucket_ceiling(buckets.get(term, -1)) * stats.drift
                assert weight <= ceiling * (1 + 1e-9), (term, freq, buckets.get(term))
            indexed += len(buckets)
    return indexed


def test_the_index_follows_every_write(
    tmp_path: Path, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PostgresDialect, "insert_batch", 7)  # writes of several statements
    store = storage.open_backend(tmp_path, pg_database).store
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
    with psycopg.connect(pg_database) as conn:  # an empty index: the first chunk's length
        first = _one(conn, "SELECT tokens FROM chunks ORDER BY seq LIMIT 1")
        assert _one(conn, "SELECT avgdl FROM impact_reference") == first
    store.replace_chunks(str(other["id"]), [{"content": "ab ab ab cd", "questions": ["cd ef"]}])
    assert _check_index(pg_database) > 60
    short = store.add_chunk(doc, {"content": "ab"})
    store.update_chunk(str(doc["id"]), str(short["id"]), {"content": "ij ij ij ij ij ij ij ij"})
    store.update_chunk(str(doc["id"]), str(short["id"]), {"important_keywords": ["gh", "gh"]})
    store.update_chunk(str(doc["id"]), str(short["id"]), {"available": False})
    store.update_document(doc, {"name": "ab ab renamed.txt"})
    assert _check_index(pg_database) > 60
    store.delete_chunks(str(doc["id"]), None)
    assert _check_index(pg_database) > 0
    store.delete_documents(str(ds["id"]), [str(other["id"])])  # its chunks go with it (a cascade)
    assert _check_index(pg_database) == 0
    with psycopg.connect(pg_database) as conn:
        assert _one(conn, "SELECT sum(chunks), sum(tokens) FROM fulltext_totals") == (0, 0)


def test_migrations_3_and_4_build_the_index_of_an_existing_database(
    tmp_path: Path, pg_database: str
) -> None:
    """A database as migration 2 left it (no index columns, totals, term counts, triggers)
    with chunks: opening it fills them, retrieval gives what it gave, and the triggers keep them."""
    store = storage.open_backend(tmp_path, pg_database).store
    corpus = Corpus(seed=8)
    dataset = _load(store, "ds", [{"content": c} for c in corpus.chunks(400, 30)], docs=2)
    words = Corpus().words
    questions = [[words[r] for r in ranks] for ranks in question_ranks(20, seed=4)]
    before = [store.search_chunks([dataset], [], terms, 10) for terms in questions]
    close_pools(pg_database)
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(
            b"DROP TRIGGER chunks_inserted ON chunks; DROP TRIGGER chunks_deleted ON chunks;"
            b" DROP TRIGGER chunks_updated ON chunks;"
            b" DROP FUNCTION chunks_inserted, chunks_deleted, chunks_updated, fulltext_count;"
            b" DROP TABLE fulltext_totals, impact_reference, fulltext_terms;"
            b" DROP INDEX chunks_impacts;"
            b" ALTER TABLE chunks DROP COLUMN tokens, DROP COLUMN freqs, DROP COLUMN impacts;"
            b" UPDATE schema_version SET version = 2"
        )
    store = storage.open_backend(tmp_path, pg_database).store
    after = [store.search_chunks([dataset], [], terms, 10) for terms in questions]
    assert after == before
    assert _check_index(pg_database) > 400
    upload = storage.Upload("more.txt", "txt", "doc", io.BytesIO(b"x"))
    (doc,) = store.add_documents(store.get_dataset("t", dataset) or {}, [upload], "t")
    store.replace_chunks(str(doc["id"]), [{"content": c} for c in corpus.chunks(50, 30)])
    assert _check_index(pg_database) > 450


def test_every_chunk_ranked_has_its_freqs_read_as_stored(pg_cluster: Any, tmp_path: Path) -> None:
    """Ranking reads each candidate's freqs for every term (bm25_sql): it is stored uncompressed,
    in a chunk whose row PostgreSQL would compress by default (above 2 kB) and in one above a
    page, where the other columns are compressed or moved out first (migration 5)."""
    url = str(pg_cluster.create_database())
    store = storage.open_backend(tmp_path, url).store
    words = Corpus().words
    sizes = (60, 150, 250)  # distinct words: rows of about 1.8, 4.5 and 9 kB
    _load(store, "sizes", [{"content": " ".join(words[100 : 100 + n])} for n in sizes], docs=1)
    close_pools(url)
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            b"SELECT pg_column_size(c.freqs) + pg_column_size(c.fts::text::tsvector)"
            b" + octet_length(c.content), pg_column_compression(c.freqs) FROM chunks c"
            b" ORDER BY c.seq"
        ).fetchall()
    pg_cluster.drop_database(url)
    assert [compression for _, compression in stored] == [None] * len(sizes)
    assert stored[-1][0] > 8192  # a row above a page (freqs, fts and content as they are)


def test_a_question_of_words_the_index_holds_as_one_lexeme(
    corpus_store: tuple[Store, str],
) -> None:
    """A term that normalises to two words matches in PostgreSQL as one lexeme (as before) and
    is ranked by every match, never through the bound."""
    store, dataset = corpus_store
    terms = text.query_terms("abc\u037adef")
    assert _bounded(store, dataset, terms, 10) == topk.SearchPath.PHRASE
    assert store.search_chunks([dataset], [], terms, 10) == []
