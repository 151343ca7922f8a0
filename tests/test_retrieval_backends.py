"""The same corpus and 50 questions (English, accented, CJK) retrieved through api.search on
both backends: each backend's full-text index finds the same candidates and ranks them by the
same BM25 (api.storage.bm25: FTS5's bm25() in SQLite, its arithmetic in SQL in PostgreSQL), bit
for bit, and the shared scorer gives them the same similarities: the answers agree, in order.
(Chunks are compared by content: chunk ids hash the document id, which differs between the two
loads.)"""

from __future__ import annotations

import io
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from api import search, storage, text
from api.storage import Page

WORDS = [
    "apple", "pear", "river", "mountain", "engine", "retrieval", "database", "lease",
    "café", "naïve", "Straße", "東京", "大阪", "数据库", "检索", "模型", "학교", "서울",
    "executor", "queue", "storage", "index", "token", "chunk", "dataset", "cluster",
]  # fmt: skip
DOCS = 8
CHUNKS_PER_DOC = 40
QUESTIONS = 50
TOP = 10


def _corpus(rng: random.Random) -> list[list[dict[str, Any]]]:
    docs = []
    for _ in range(DOCS):
        chunks = []
        for n in range(CHUNKS_PER_DOC):
            words = rng.choices(WORDS, k=rng.randint(3, 12))
            chunk: dict[str, Any] = {"content": " ".join(words) + f" n{n}"}
            if rng.random() < 0.2:
                chunk["important_keywords"] = rng.sample(WORDS, 2)
            if rng.random() < 0.1:
                chunk["questions"] = [" ".join(rng.sample(WORDS, 3)) + "?"]
            chunks.append(chunk)
        docs.append(chunks)
    return docs


def _load(backend: storage.Backend, corpus: list[list[dict[str, Any]]]) -> list[str]:
    store = backend.store
    dataset = store.create_dataset("t", {"name": "corpus", "parser_config": {}})
    uploads = [
        storage.Upload(f"{WORDS[i % len(WORDS)]} notes {i}.txt", "txt", "doc", io.BytesIO(b"x"))
        for i in range(DOCS)
    ]
    docs = store.add_documents(dataset, uploads, "t")
    for doc, chunks in zip(docs, corpus, strict=True):
        store.replace_chunks(doc["id"], chunks)
    return [dataset["id"]]


def _top(backend: storage.Backend, dataset_ids: list[str], question: str) -> list[tuple[Any, ...]]:
    found = search.retrieve(
        backend.store,
        dataset_ids=dataset_ids,
        doc_ids=[],
        question=question,
        page=Page(1, DOCS * CHUNKS_PER_DOC),
        similarity_threshold=0.0,
        top_k=DOCS * CHUNKS_PER_DOC,  # every match is a candidate
        with_highlight=False,
    )
    return [(c["content"], c["similarity"]) for c in found["chunks"][:TOP]]


@pytest.fixture
def backends(tmp_path: Path, pg_database: str) -> dict[str, storage.Backend]:
    return {
        "sqlite": storage.open_backend(tmp_path / "sqlite"),
        "postgresql": storage.open_backend(tmp_path / "postgresql", pg_database),
    }


def test_both_backends_give_the_same_answers_in_the_same_order(
    backends: dict[str, storage.Backend],
) -> None:
    rng = random.Random(12)
    corpus = _corpus(rng)
    datasets = {name: _load(backend, corpus) for name, backend in backends.items()}
    questions = [" ".join(rng.sample(WORDS, rng.randint(1, 3))) for _ in range(QUESTIONS)]
    assert any(not q.isascii() for q in questions)
    compared = 0
    for question in questions:
        tops = {name: _top(b, datasets[name], question) for name, b in backends.items()}
        assert tops["sqlite"] == tops["postgresql"], question
        compared += bool(tops["sqlite"])
        terms = text.query_terms(question)
        for limit in (TOP, 10_000):  # the best few; every match
            found = {
                name: [
                    (hit["content"], hit["bm25"])
                    for hit in b.store.search_chunks(datasets[name], [], terms, limit)
                ]
                for name, b in backends.items()
            }
            assert found["sqlite"] == found["postgresql"], question
    assert compared >= QUESTIONS - 2  # the questions do find chunks


def test_a_read_sees_one_state_of_the_database_while_chunks_are_written(
    backends: dict[str, storage.Backend],
) -> None:
    """The statements of one read (a search's statistics, bound and rows) see one state: chunks
    written by another thread in the middle of it appear to the next read only. (Otherwise a
    word's chunk count, read after a write, could pass the total read before it.)"""
    for name, backend in backends.items():
        store: Any = backend.store  # an SqlStorage: its ``db`` is read here
        dataset = store.create_dataset("t", {"name": "one state"})
        upload = storage.Upload("notes.txt", "txt", "doc", io.BytesIO(b"x"))
        doc_id = store.add_documents(dataset, [upload], "t")[0]["id"]
        count = "SELECT COUNT(*) FROM chunks WHERE doc_id = ?"
        with store.db.read() as c:
            assert c.execute(count, (doc_id,)).fetchone()[0] == 0
            chunks = [{"content": "apple pear"}, {"content": "river"}]
            writer = threading.Thread(target=store.replace_chunks, args=(doc_id, chunks))
            writer.start()
            writer.join(30)
            assert not writer.is_alive(), name
            assert c.execute(count, (doc_id,)).fetchone()[0] == 0, name
        with store.db.read() as c:
            assert c.execute(count, (doc_id,)).fetchone()[0] == 2, name


class _Recording:
    """A store that records the terms each search_chunks call was given."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.searched: list[list[str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def search_chunks(self, dataset_ids: Any, doc_ids: Any, terms: Any, limit: int) -> Any:
        self.searched.append(list(terms))
        return self.store.search_chunks(dataset_ids, doc_ids, terms, limit)


def test_warming_searches_a_word_of_a_stored_chunk_and_nothing_on_an_empty_store(
    backends: dict[str, storage.Backend],
) -> None:
    """api.search.warm (a worker before it serves): one retrieval of a word the index holds,
    the first word of an available chunk; an empty store is left alone."""
    for name, backend in backends.items():
        empty = _Recording(backend.store)
        search.warm(empty)
        assert empty.searched == [], name
        _load(backend, _corpus(random.Random(3)))
        store = _Recording(backend.store)
        search.warm(store)
        ((term,),) = store.searched
        _, dataset_id, content = backend.store.sample_chunk() or ("", "", "")
        assert term == text.query_terms(content)[0], name
        assert backend.store.search_chunks([dataset_id], [], [term], 5), name  # found
