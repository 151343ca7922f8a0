"""Retrieval: full-text candidates (FTS5 BM25) scored to a term similarity in [0, 1]."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from api import text
from api.storage import Page, Storage

# How much finding a query term in each field counts; later fields weigh more.
FIELD_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("content", 0.7),
    ("title", 0.8),
    ("important_keywords", 0.9),
    ("questions", 1.0),
)


def _title(name: str) -> str:
    stem, dot, _ = name.rpartition(".")
    return stem if dot and stem else name


def _field_words(row: Mapping[str, Any]) -> dict[str, set[str]]:
    return {
        "content": set(text.tokens(str(row["content"]))),
        "title": set(text.tokens(_title(str(row["docnm"])))),
        "important_keywords": set(text.tokens(" ".join(map(str, row["important_keywords"])))),
        "questions": set(text.tokens(" ".join(map(str, row["questions"])))),
    }


def term_similarity(terms: Sequence[str], row: Mapping[str, Any]) -> float:
    """Share of the query's terms found in the chunk, each counted with the weight of the
    best field it appears in (content < title < keywords < questions); in [0, 1]."""
    if not terms:
        return 0.0
    words = _field_words(row)
    score = 0.0
    for term in terms:
        score += max((w for f, w in FIELD_WEIGHTS if term in words[f]), default=0.0)
    return round(score / len(terms), 6)


def highlight(content: str, terms: Sequence[str]) -> str:
    """``content`` HTML-escaped, with every occurrence of a query term wrapped in <em>."""
    wanted = set(terms)
    out: list[str] = []
    last = 0
    for match in text.WORD.finditer(content):
        if text.norm(match.group(0)) in wanted:
            out.append(html.escape(content[last : match.start()], quote=False))
            out.append(f"<em>{html.escape(match.group(0), quote=False)}</em>")
            last = match.end()
    out.append(html.escape(content[last:], quote=False))
    return "".join(out)


def retrieve(
    storage: Storage,
    *,
    dataset_ids: Sequence[str],
    doc_ids: Sequence[str],
    question: str,
    page: Page,
    similarity_threshold: float,
    top_k: int,
    with_highlight: bool,
) -> dict[str, Any]:
    terms = text.query_terms(question)
    candidates = storage.search_chunks(dataset_ids, doc_ids, terms, top_k)
    scored = []
    for rank, row in enumerate(candidates):
        similarity = term_similarity(terms, row)
        if similarity >= similarity_threshold:
            scored.append((-similarity, rank, similarity, row))
    scored.sort(key=lambda item: (item[0], item[1]))
    aggs: dict[str, dict[str, Any]] = {}
    for _, _, _, row in scored:
        agg = aggs.setdefault(
            row["doc_id"], {"doc_name": row["docnm"], "doc_id": row["doc_id"], "count": 0}
        )
        agg["count"] += 1
    chunks = []
    for _, _, similarity, row in scored[page.offset : page.offset + page.size]:
        item: dict[str, Any] = {
            "id": row["id"],
            "content": row["content"],
            "content_ltks": " ".join(text.tokens(str(row["content"]))),
            "document_id": row["doc_id"],
            "document_keyword": row["docnm"],
            "dataset_id": row["dataset_id"],
            "important_keywords": row["important_keywords"],
            "questions": row["questions"],
            "image_id": "",
            "similarity": similarity,
            "vector_similarity": 0.0,
            "term_similarity": similarity,
            "positions": row["positions"],
        }
        if with_highlight:
            item["highlight"] = highlight(str(row["content"]), terms)
        chunks.append(item)
    return {
        "chunks": chunks,
        "doc_aggs": sorted(aggs.values(), key=lambda a: -int(a["count"])),
        "total": len(scored),
    }
