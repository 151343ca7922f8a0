"""api.search.retrieve against a straightforward reference (every candidate's full row
fetched and scored with term_similarity) on generated chunks: same ids, similarities,
order, totals, aggregates and highlights. Mixed-case, punctuated, accented, CJK and other
non-ASCII words, keywords and questions exercise every path of the fast scorer."""

from __future__ import annotations

import html
import io
import json
import random
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from support.backends import SqliteStore

from api import search, storage, text
from api.storage import Page
from api.storage.sqlite.connections import connection

WORDS = [
    "apple",
    "Apple",
    "APPLES",
    "pear",
    "pear_tree",
    "x2",
    "2x",
    "42",
    "café",
    "Cafe",
    "naïve",
    "Straße",
    "\ufb01le",  # the "fi" ligature: NFKD gives "file"
    "file",
    "ΣΟΦΙΑ",
    "σοφια",
    "東京",
    "かな",
    "abc\u037adef",  # the ypogegrammeni normalises to a space inside the word
    "don't",
    "e-mail",
    "mail",
    "the",
    "and",
]
NAMES = ["Apple notes.txt", "pear.md", "café menu.pdf", "noext", "42.x2.txt"]


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) + rng.choice(["", "", ",", ".", "!"]) for _ in range(n))


def _plain_highlight(content: str, terms: list[str]) -> str:
    out: list[str] = []
    last = 0
    for match in text.WORD.finditer(content):
        if text.norm(match.group(0)) in terms:
            out.append(html.escape(content[last : match.start()], quote=False))
            out.append(f"<em>{html.escape(match.group(0), quote=False)}</em>")
            last = match.end()
    return "".join(out) + html.escape(content[last:], quote=False)


def _reference(
    conn: Any,
    terms: list[str],
    dataset_ids: list[str],
    doc_ids: list[str],
    page: Page,
    threshold: float,
    top_k: int,
) -> dict[str, Any]:
    """The retrieval algorithm written plainly: full rows, JSON-decoded, term_similarity,
    every word of a shown chunk normalised for the highlight."""
    if not terms:
        return {"chunks": [], "doc_aggs": [], "total": 0}
    where = f"c.dataset_id IN ({', '.join('?' * len(dataset_ids))})"
    if doc_ids:
        where += f" AND c.doc_id IN ({', '.join('?' * len(doc_ids))})"
    rows = conn.execute(
        "SELECT c.* FROM chunks_fts JOIN chunks c ON c.seq = chunks_fts.rowid"
        f" WHERE chunks_fts MATCH ? AND c.available = 1 AND {where}"
        " ORDER BY bm25(chunks_fts, 1.0, 2.0, 3.0, 4.0) LIMIT ?",
        (" OR ".join(f'"{t}"' for t in terms), *dataset_ids, *doc_ids, top_k),
    ).fetchall()
    scored = []
    for rank, raw in enumerate(rows):
        row = dict(raw)
        for key in ("important_keywords", "questions", "positions"):
            row[key] = json.loads(row[key])
        similarity = search.term_similarity(terms, row)
        if similarity >= threshold:
            scored.append((-similarity, rank, row))
    scored.sort(key=lambda item: (item[0], item[1]))
    shown = scored[page.offset : page.offset + page.size]
    counts: dict[str, int] = {}  # RAGFlow's dealer: total and aggregates of the page
    for _, _, row in shown:
        counts[row["doc_id"]] = counts.get(row["doc_id"], 0) + 1
    return {
        "chunks": [
            (row["id"], -neg, row["positions"], _plain_highlight(row["content"], terms))
            for neg, _, row in shown
        ],
        "doc_aggs": sorted(counts.items(), key=lambda kv: -kv[1]),
        "total": len(shown),
    }


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir: Path = tmp_path_factory.mktemp("scoring")
    store = SqliteStore(data_dir)
    ds = store.create_dataset("t", {"name": "ds", "chunk_method": "naive", "parser_config": {}})
    uploads = [storage.Upload(n, "txt", "doc", io.BytesIO(b"x")) for n in NAMES]
    docs = store.add_documents(ds, uploads, "t")
    rng = random.Random(20261128)
    conn = connection(store.db_path)
    for doc in docs:
        chunks = [
            {
                "content": _text(rng, rng.randint(1, 12)),
                "important_keywords": [_text(rng, 2) for _ in range(rng.choice([0, 0, 1, 2]))],
                "questions": [_text(rng, 3) + "?" for _ in range(rng.choice([0, 0, 0, 1]))],
                "positions": [[rng.randint(0, 9)] * 5] if rng.random() < 0.3 else [],
                "available": rng.random() > 0.1,
            }
            for _ in range(80)
        ]
        store.replace_chunks(doc["id"], chunks)
    return {"store": store, "conn": conn, "ds": ds["id"], "docs": [d["id"] for d in docs]}


def test_the_fast_scorer_equals_term_similarity() -> None:
    rng = random.Random(7)
    long_questions = 0
    for _ in range(2000):
        row = {
            "content": _text(rng, rng.randint(0, 10)),
            "docnm": rng.choice(NAMES),
            "important_keywords": [_text(rng, 1) for _ in range(rng.randint(0, 2))],
            "questions": [_text(rng, 2) for _ in range(rng.randint(0, 1))],
        }
        # short questions search ASCII content per term; long ones (more distinct terms than
        # SEARCH_PER_TERM_UP_TO) tokenise it
        words = rng.randint(0, 4) if rng.random() < 0.6 else rng.randint(12, 40)
        terms = text.query_terms(_text(rng, words))
        long_questions += len(terms) > text.SEARCH_PER_TERM_UP_TO
        assert search.scorer(terms)(row) == search.term_similarity(terms, row), (terms, row)
    assert long_questions > 200


@pytest.mark.parametrize("seed", range(12))
def test_retrieve_equals_the_reference(seeded: dict[str, Any], seed: int) -> None:
    rng = random.Random(seed)
    question = _text(rng, rng.randint(1, 4) if seed < 8 else rng.randint(12, 40))
    terms = text.query_terms(question)
    doc_ids = rng.sample(seeded["docs"], 2) if seed % 3 == 0 else []
    page = Page(rng.randint(1, 3), rng.choice([1, 5, 30]))
    threshold = rng.choice([0.0, 0.2, 0.5])
    top_k = rng.choice([3, 50, 1024])
    got = search.retrieve(
        seeded["store"],
        dataset_ids=[seeded["ds"]],
        doc_ids=doc_ids,
        question=question,
        page=page,
        similarity_threshold=threshold,
        top_k=top_k,
        with_highlight=True,
    )
    want = _reference(seeded["conn"], terms, [seeded["ds"]], doc_ids, page, threshold, top_k)
    assert got["total"] == want["total"]
    assert [(a["doc_id"], a["count"]) for a in got["doc_aggs"]] == want["doc_aggs"]
    assert [
        (c["id"], c["similarity"], c["positions"], c["highlight"]) for c in got["chunks"]
    ] == want["chunks"]


def test_the_generated_data_reaches_every_field_and_both_content_paths(
    seeded: dict[str, Any],
) -> None:
    rows = (
        seeded["conn"]
        .execute("SELECT content, important_keywords, questions FROM chunks")
        .fetchall()
    )
    assert any(r[0].isascii() for r in rows) and any(not r[0].isascii() for r in rows)
    assert any(r[1] != "[]" for r in rows) and any(r[2] != "[]" for r in rows)
    similarities: set[float] = set()
    for seed in range(12):
        terms = text.query_terms(_text(random.Random(seed), 3))
        ref = _reference(seeded["conn"], terms, [seeded["ds"]], [], Page(1, 1000), 0.0, 1024)
        similarities.update(c[1] for c in ref["chunks"])
    assert len(similarities) >= 5, similarities


def test_connections_read_the_database_without_mmap(seeded: dict[str, Any]) -> None:
    # mapped, each search after another connection's commit maps the file again (connections.py)
    assert seeded["conn"].execute("PRAGMA mmap_size").fetchone()[0] == 0


def test_norm_fast_paths_equal_the_plain_normalisation() -> None:
    def plain(word: str) -> str:
        decomposed = unicodedata.normalize("NFKD", word.lower())
        return "".join(ch for ch in decomposed if not unicodedata.combining(ch))

    rng = random.Random(3)
    samples = [*WORDS, "ÀÉÎÕÜ" * 10, "ABC_def09", "", "İstanbul", "ΣΑΣ"]
    samples += [rng.choice(WORDS) * rng.randint(1, 8) for _ in range(200)]
    for word in samples:
        assert text.norm(word) == plain(word), word


def test_the_ascii_fast_path_of_tokens_equals_the_general_one() -> None:
    rng = random.Random(5)
    alphabet = [chr(c) for c in range(128)]
    for _ in range(500):
        sample = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        general = [text.norm(m.group(0)) for m in text.WORD.finditer(sample)]
        assert text.tokens(sample) == general, sample


def test_highlight_equals_the_plain_one() -> None:
    rng = random.Random(11)
    for _ in range(1000):
        content = _text(rng, rng.randint(0, 8)) + rng.choice(["", " <b>&amp;", "_x", " X2"])
        terms = text.query_terms(_text(rng, rng.randint(0, 3) if rng.random() < 0.7 else 20))
        assert search.highlight(content, terms) == _plain_highlight(content, terms), content
