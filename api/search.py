"""Retrieval: full-text candidates (FTS5 BM25) scored to a term similarity in [0, 1]."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from api import text
from api.storage import Page, Storage

DEFAULT_TOP_K = 1024  # RAGFlow's: the candidates a retrieval scores

# How much finding a query term in each field counts; later fields weigh more.
FIELD_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("content", 0.7),
    ("title", 0.8),
    ("important_keywords", 0.9),
    ("questions", 1.0),
)


def _field_words(row: Mapping[str, Any]) -> dict[str, set[str]]:
    return {
        "content": set(text.tokens(str(row["content"]))),
        "title": set(text.tokens(text.title(str(row["docnm"])))),
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


_BEST_FIRST = sorted(FIELD_WEIGHTS, key=lambda fw: -fw[1])
_FIELDS = tuple(field for field, _ in FIELD_WEIGHTS)
_NONE: frozenset[str] = frozenset()


def scorer(terms: Sequence[str]) -> Callable[[Mapping[str, Any]], float]:
    """``term_similarity(terms, row)`` for many rows, without tokenising every candidate.

    Only which terms occur in each field matters. An ASCII text's words are exactly its
    ``[a-z0-9]+`` runs lower-cased, so in ASCII content a search per term finds it as a
    whole word when there are few terms (text.SEARCH_PER_TERM_UP_TO); other content, and ASCII
    content with more terms, keywords and questions are tokenised as term_similarity does,
    and each title once per document name. Rows finding the same terms in the same fields
    share one computed score."""
    few = len(terms) <= text.SEARCH_PER_TERM_UP_TO
    ascii_terms = [
        (t, text.whole_word(t).search) for t in terms if few and text.ASCII_WORD.fullmatch(t)
    ]
    wanted = frozenset(terms)
    titles: dict[str, frozenset[str]] = {}
    # the score of each combination of title and terms found in content, keywords, questions
    scores: dict[tuple[frozenset[str], ...], float] = {}

    def found(values: Sequence[Any]) -> frozenset[str]:
        return wanted.intersection(text.tokens(" ".join(map(str, values)))) if values else _NONE

    def score(row: Mapping[str, Any]) -> float:
        if not terms:
            return 0.0
        name = str(row["docnm"])
        title = titles.get(name)
        if title is None:
            title = titles[name] = wanted.intersection(text.tokens(text.title(name)))
        content = str(row["content"])
        if few and content.isascii():
            lowered = content.lower()
            in_content = frozenset([t for t, find in ascii_terms if find(lowered)])
        else:
            in_content = wanted.intersection(text.tokens(content))
        key = (in_content, title, found(row["important_keywords"]), found(row["questions"]))
        known = scores.get(key)
        if known is None:
            words = dict(zip(_FIELDS, key, strict=True))
            total = 0.0
            for term in terms:
                for field, weight in _BEST_FIRST:  # the first field holding it weighs most
                    if term in words[field]:
                        total += weight
                        break
            known = scores[key] = round(total / len(terms), 6)
        return known

    return score


@lru_cache(maxsize=256)
def _ascii_splitter(wanted: frozenset[str]) -> Callable[[str], list[str]] | None:
    """Splits ASCII text around the whole-word occurrences of ``wanted``'s ASCII terms (any
    case); compiled once per set of terms, not once per highlighted chunk."""
    ascii_terms = sorted(t for t in wanted if text.ASCII_WORD.fullmatch(t))
    if not ascii_terms:
        return None
    pattern = rf"(?<![a-z0-9])({'|'.join(ascii_terms)})(?![a-z0-9])"
    return re.compile(pattern, re.IGNORECASE).split


def highlight(content: str, terms: Sequence[str]) -> str:
    """``content`` HTML-escaped, with every occurrence of a query term wrapped in <em>."""
    wanted = frozenset(terms)
    if content.isascii():  # its words are [a-z0-9]+ runs, whatever their case
        split = _ascii_splitter(wanted)
        if split is None:
            return html.escape(content, quote=False)
        # odd parts are matched words: letters and digits only, nothing to escape
        return "".join(
            f"<em>{part}</em>" if index % 2 else html.escape(part, quote=False)
            for index, part in enumerate(split(content))
        )
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
    score = scorer(terms)
    scored = []
    for rank, candidate in enumerate(candidates):
        similarity = score(candidate)
        if similarity >= similarity_threshold:
            scored.append((-similarity, rank, similarity, candidate))
    scored.sort()  # best similarity first, then search rank; ranks are unique: rows never compare
    shown = scored[page.offset : page.offset + page.size]
    full = storage.chunks_by_id([candidate["id"] for *_, candidate in shown])
    chunks = []
    aggs: dict[str, dict[str, Any]] = {}
    for _, _, similarity, candidate in shown:
        row = full.get(candidate["id"])
        if row is None:  # deleted since the search
            continue
        agg = aggs.get(row["doc_id"])
        if agg is None:
            agg = aggs[row["doc_id"]] = {
                "doc_name": row["docnm"],
                "doc_id": row["doc_id"],
                "count": 0,
            }
        agg["count"] += 1
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
            "doc_type_kwd": "",  # RAGFlow's: "" for a text chunk (images are not parsed here)
        }
        if with_highlight:
            item["highlight"] = highlight(str(row["content"]), terms)
        chunks.append(item)
    # RAGFlow's dealer (v0.22.1) counts and aggregates after cutting the requested page out
    # of its re-ranking window: total and doc_aggs describe the chunks of this page
    return {
        "chunks": chunks,
        "doc_aggs": sorted(aggs.values(), key=lambda a: -int(a["count"])),
        "total": len(chunks),
    }


def warm(storage: Storage) -> None:
    """Answer one question as the retrieval route does, before a process serves (App.warm): a
    word of an available chunk, in its dataset. A worker's first search otherwise pays for what
    every later one finds ready: the database session's catalogue and plan caches, the
    driver's adapters. With no chunk stored there is nothing to warm."""
    sample = storage.sample_chunk()
    if sample is None:
        return
    tenant_id, dataset_id, content = sample
    terms = text.query_terms(content)
    if not terms or storage.get_dataset(tenant_id, dataset_id) is None:
        return
    retrieve(storage, dataset_ids=[dataset_id], doc_ids=[], question=terms[0], page=Page(1, 1),
             similarity_threshold=0.0, top_k=DEFAULT_TOP_K, with_highlight=True)  # fmt: skip
