"""POST /api/v1/retrieval: candidates, term similarity, threshold, paging, highlight, errors."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from support.api_client import Api

from api import search

URL = "/api/v1/retrieval"


@pytest.fixture
def corpus(api: Api) -> dict[str, Any]:
    ds = api.dataset("kb")
    fruit, space = api.upload(ds["id"], ("fruit.txt", b"x"), ("space travel.md", b"y"))
    api.add_chunk(ds["id"], fruit["id"], "Apples and pears grow on trees in the orchard.")
    api.add_chunk(ds["id"], fruit["id"], "Bananas are yellow.", important_keywords=["banana"])
    api.add_chunk(ds["id"], space["id"], "Rockets carry astronauts to orbit.")
    api.add_chunk(ds["id"], space["id"], "Nothing here.", questions=["How do apples fly?"])
    return {"ds": ds["id"], "fruit": fruit["id"], "space": space["id"]}


def test_results_are_scored_sorted_and_aggregated(api: Api, corpus: dict[str, Any]) -> None:
    data = api.ok("POST", URL, json={"question": "apples orchard", "dataset_ids": [corpus["ds"]]})
    chunks = data["chunks"]
    assert data["total"] == 2 == len(chunks)
    assert chunks[0]["content"].startswith("Apples") and chunks[0]["similarity"] == 0.7
    assert chunks[1]["document_id"] == corpus["space"] and chunks[1]["similarity"] == 0.5
    for chunk in chunks:
        assert chunk["similarity"] == chunk["term_similarity"] and chunk["vector_similarity"] == 0
        assert 0 <= chunk["similarity"] <= 1
        assert chunk["dataset_id"] == corpus["ds"]
    assert chunks[0]["highlight"] == (
        "<em>Apples</em> and pears grow on trees in the <em>orchard</em>."
    )
    assert sorted((a["doc_name"], a["count"]) for a in data["doc_aggs"]) == [
        ("fruit.txt", 1),
        ("space travel.md", 1),
    ]


def test_fields_weigh_progressively_more(api: Api, corpus: dict[str, Any]) -> None:
    by_keyword = api.ok("POST", URL, json={"question": "banana", "dataset_ids": [corpus["ds"]]})
    assert by_keyword["chunks"][0]["similarity"] == 0.9
    by_title = api.ok("POST", URL, json={"question": "travel", "dataset_ids": [corpus["ds"]]})
    assert {c["similarity"] for c in by_title["chunks"]} == {0.8}
    assert by_title["total"] == 2


def test_threshold_top_k_paging_and_document_filter(api: Api, corpus: dict[str, Any]) -> None:
    base = {"question": "apples orchard", "dataset_ids": [corpus["ds"]]}
    assert api.ok("POST", URL, json={**base, "similarity_threshold": 0.6})["total"] == 1
    # as on RAGFlow's default engine, top_k bounds vector candidates, not full-text matches
    assert api.ok("POST", URL, json={**base, "top_k": 1})["total"] == 2
    page2 = api.ok("POST", URL, json={**base, "page": 2, "page_size": 1})
    # RAGFlow's total counts the matches of the requested page
    assert page2["total"] == 1 and page2["chunks"][0]["document_id"] == corpus["space"]
    only = api.ok("POST", URL, json={**base, "document_ids": [corpus["fruit"]]})
    assert [c["document_id"] for c in only["chunks"]] == [corpus["fruit"]]
    plain = api.ok("POST", URL, json={**base, "highlight": "false"})
    assert "highlight" not in plain["chunks"][0]


def test_nulls_from_the_sdk_count_as_absent(api: Api, corpus: dict[str, Any]) -> None:
    payload = {
        "question": "rockets",
        "dataset_ids": [corpus["ds"]],
        "document_ids": [],
        "page": 1,
        "page_size": 30,
        "similarity_threshold": 0.2,
        "vector_similarity_weight": 0.3,
        "top_k": 1024,
        "rerank_id": None,
        "keyword": False,
        "cross_languages": None,
        "metadata_condition": None,
    }
    assert api.ok("POST", URL, json=payload)["total"] == 1


def test_no_match_and_stopword_only_questions(api: Api, corpus: dict[str, Any]) -> None:
    assert api.ok("POST", URL, json={"question": "zebra", "dataset_ids": [corpus["ds"]]}) == {
        "chunks": [],
        "doc_aggs": [],
        "total": 0,
    }
    assert api.ok("POST", URL, json={"question": "", "dataset_ids": [corpus["ds"]]})["total"] == 0
    assert (
        api.ok("POST", URL, json={"question": '"*) OR (', "dataset_ids": [corpus["ds"]]})["total"]
        == 0
    )


def test_term_similarity_is_a_weighted_share_of_the_terms() -> None:
    row = {
        "content": "red fox",
        "docnm": "animals.txt",
        "important_keywords": ["fox"],
        "questions": [],
    }
    assert search.term_similarity(["red", "fox"], row) == pytest.approx((0.7 + 0.9) / 2)
    assert search.term_similarity(["animals", "cat"], row) == pytest.approx(0.8 / 2)
    assert search.term_similarity(["txt"], row) == 0  # the extension is not part of the title
    assert search.term_similarity([], row) == 0


def test_highlight_escapes_html() -> None:
    assert search.highlight("<b>Café</b> & cafe", ["cafe"]) == (
        "&lt;b&gt;<em>Café</em>&lt;/b&gt; &amp; <em>cafe</em>"
    )


@pytest.mark.parametrize(
    ("payload", "code", "expected"),
    [
        ({"question": "x"}, 102, "`dataset_ids` is required."),
        ({"question": "x", "dataset_ids": []}, 102, "`dataset_ids` is required."),
        ({"question": "x", "dataset_ids": "abc"}, 102, "`dataset_ids` should be a list"),
        ({"question": "x", "dataset_ids": ["ghost"]}, 102, "You don't own the dataset ghost."),
        ({"dataset_ids": ["DS"]}, 102, "`question` is required."),
        (
            {"question": "x", "dataset_ids": ["DS"], "document_ids": "d"},
            102,
            "`documents` should be a list",
        ),
        (
            {"question": "x", "dataset_ids": ["DS"], "document_ids": ["ghost"]},
            102,
            "The datasets don't own the document ghost",
        ),
        (
            {"question": 1, "dataset_ids": ["DS"]},
            101,
            "Field: <question> - Message: <Input should be a valid string>",
        ),
        (
            {"question": "x", "dataset_ids": ["DS"], "page": 0},
            101,
            "Field: <page> - Message: <Input should be greater than or equal to 1>",
        ),
        (
            {"question": "x", "dataset_ids": ["DS"], "top_k": "five"},
            101,
            "Field: <top_k> - Message: <Input should be a valid integer> - Value: <five>",
        ),
        (
            {"question": "x", "dataset_ids": ["DS"], "similarity_threshold": "high"},
            101,
            "Field: <similarity_threshold> - Message: <Input should be a valid number>",
        ),
    ],
)
def test_errors(
    api: Api, corpus: dict[str, Any], payload: dict[str, Any], code: int, expected: str
) -> None:
    if payload.get("dataset_ids") == ["DS"]:
        payload = {**payload, "dataset_ids": [corpus["ds"]]}
    assert expected in api.error(code, "POST", URL, json=payload)


def test_datasets_with_different_embedding_models(api: Api) -> None:
    a = api.dataset("a", embedding_model="text-embedding-3-small@OpenAI")
    b = api.dataset("b", embedding_model="BAAI/bge-m3@Builtin")
    message = api.error(102, "POST", URL, json={"question": "x", "dataset_ids": [a["id"], b["id"]]})
    assert message == 'Datasets use different embedding models."'


def test_other_tenants_datasets_are_refused(api: Api) -> None:
    other = uuid.uuid1().hex
    message = api.error(102, "POST", URL, json={"question": "x", "dataset_ids": [other]})
    assert message == f"You don't own the dataset {other}."
