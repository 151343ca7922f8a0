"""Chunk endpoints and parse start/stop (through the real task queue) with their error paths."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from support.api_client import Api

from api.storage import chunk_id


@pytest.fixture
def doc(api: Api) -> dict[str, Any]:
    ds = api.dataset("a")
    return api.upload(ds["id"], ("notes.txt", b"some text"))[0]


def _chunks(doc: dict[str, Any], suffix: str = "") -> str:
    return f"/api/v1/datasets/{doc['dataset_id']}/documents/{doc['id']}/chunks{suffix}"


def test_add_list_update_delete(api: Api, doc: dict[str, Any]) -> None:
    first = api.add_chunk(doc["dataset_id"], doc["id"], "Alpha beta", important_keywords=["k"])
    assert first["id"] == chunk_id("Alpha beta", doc["id"])
    assert first["document_id"] == doc["id"] and first["dataset_id"] == doc["dataset_id"]
    assert first["important_keywords"] == ["k"] and first["questions"] == []
    second = api.add_chunk(doc["dataset_id"], doc["id"], "Gamma delta", questions=[" q? ", ""])
    assert second["questions"] == ["q?"]
    listed = api.ok("GET", _chunks(doc))
    assert listed["total"] == 2
    assert [c["id"] for c in listed["chunks"]] == [first["id"], second["id"]]
    assert listed["chunks"][0]["docnm_kwd"] == "notes.txt" and listed["chunks"][0]["available"]
    assert listed["doc"]["id"] == doc["id"] and listed["doc"]["chunk_count"] == 2
    assert api.ok("GET", _chunks(doc, "?page=2&page_size=1"))["chunks"][0]["id"] == second["id"]
    assert [c["id"] for c in api.ok("GET", _chunks(doc, "?keywords=GAMMA"))["chunks"]] == [
        second["id"]
    ]
    assert api.ok("GET", _chunks(doc, f"?id={first['id']}"))["chunks"][0]["content"] == "Alpha beta"

    api.ok(
        "PUT",
        _chunks(doc, f"/{first['id']}"),
        json={"content": "Alpha changed", "available": False, "positions": [[1, 2, 3, 4, 5]]},
    )
    changed = api.ok("GET", _chunks(doc, f"?id={first['id']}"))["chunks"][0]
    assert changed["content"] == "Alpha changed" and changed["available"] is False
    assert changed["positions"] == [[1, 2, 3, 4, 5]]

    assert api.call("DELETE", _chunks(doc), json={"chunk_ids": [first["id"]]}) == {"code": 0}
    assert api.ok("GET", _chunks(doc))["total"] == 1
    api.ok("DELETE", _chunks(doc), json={})
    assert api.ok("GET", _chunks(doc))["total"] == 0
    assert api.documents(doc["dataset_id"])["docs"][0]["chunk_count"] == 0


def test_counts_follow_the_chunks(api: Api, doc: dict[str, Any]) -> None:
    api.add_chunk(doc["dataset_id"], doc["id"], "one two three")
    listed = api.documents(doc["dataset_id"])["docs"][0]
    assert listed["chunk_count"] == 1 and listed["token_count"] > 0
    ds = api.ok("GET", f"/api/v1/datasets?id={doc['dataset_id']}")[0]
    assert ds["chunk_count"] == 1 and ds["token_num"] == listed["token_count"]


@pytest.mark.parametrize(
    ("payload", "code", "expected"),
    [
        ({}, 102, "`content` is required"),
        ({"content": "   "}, 102, "`content` is required"),
        ({"content": 5}, 101, "Field: <content> - Message: <Input should be a valid string>"),
        (
            {"content": "x", "important_keywords": "k"},
            102,
            "`important_keywords` is required to be a list",
        ),
        ({"content": "x", "questions": {}}, 102, "`questions` is required to be a list"),
    ],
)
def test_add_errors(
    api: Api, doc: dict[str, Any], payload: dict[str, Any], code: int, expected: str
) -> None:
    message = api.error(code, "POST", _chunks(doc), json=payload)
    assert message == expected if code == 102 else expected in message
    assert api.ok("GET", _chunks(doc))["total"] == 0


def test_a_word_longer_than_postgresqls_lexemes_is_stored_and_found(
    api: Api, doc: dict[str, Any]
) -> None:
    """PostgreSQL indexes at most 2,046 bytes of a word; both backends store and find it."""
    word = "x" * 3000
    added = api.add_chunk(doc["dataset_id"], doc["id"], f"{word} tail")
    found = api.ok("GET", _chunks(doc, f"?keywords={word}"))
    assert [c["id"] for c in found["chunks"]] == [added["id"]]
    assert found["chunks"][0]["content"] == f"{word} tail"


def test_adding_the_same_content_twice_overwrites_the_chunk(api: Api, doc: dict[str, Any]) -> None:
    first = api.add_chunk(doc["dataset_id"], doc["id"], "same", important_keywords=["k"])
    again = api.add_chunk(doc["dataset_id"], doc["id"], "same", questions=["q?"])
    assert again["id"] == first["id"]
    listed = api.ok("GET", _chunks(doc))
    assert listed["total"] == 1
    assert listed["chunks"][0]["important_keywords"] == []
    assert listed["chunks"][0]["questions"] == ["q?"]


def test_unknown_dataset_document_and_chunk(api: Api, doc: dict[str, Any]) -> None:
    other = uuid.uuid1().hex
    ds = doc["dataset_id"]
    assert (
        api.error(102, "GET", f"/api/v1/datasets/{other}/documents/{doc['id']}/chunks")
        == f"You don't own the dataset {other}."
    )
    assert (
        api.error(102, "GET", f"/api/v1/datasets/{ds}/documents/ghost/chunks")
        == "You don't own the document ghost."
    )
    assert api.error(404, "GET", _chunks(doc, "?id=ghost")) == f"Chunk not found: {ds}/ghost"
    assert (
        api.error(102, "PUT", _chunks(doc, "/ghost"), json={"content": "x"})
        == "Can't find this chunk ghost"
    )
    assert (
        api.error(102, "DELETE", f"/api/v1/datasets/{ds}/documents/ghost/chunks", json={})
        == "Can't find the document with ID ghost!"
    )
    assert (
        api.error(
            102, "POST", f"/api/v1/datasets/{ds}/documents/ghost/chunks", json={"content": "x"}
        )
        == "You don't own the document ghost."
    )


@pytest.mark.parametrize(
    ("payload", "code", "expected"),
    [
        ({"important_keywords": "x"}, 102, "`important_keywords` should be a list"),
        ({"questions": 1}, 102, "`questions` should be a list"),
        ({"content": 1}, 101, "Field: <content> - Message: <Input should be a valid string>"),
        ({"available": "yes"}, 101, "Field: <available>"),
        ({"positions": "x"}, 101, "Field: <positions> - Message: <Input should be a valid list>"),
    ],
)
def test_update_errors(
    api: Api, doc: dict[str, Any], payload: dict[str, Any], code: int, expected: str
) -> None:
    chunk = api.add_chunk(doc["dataset_id"], doc["id"], "original")
    assert expected in api.error(code, "PUT", _chunks(doc, f"/{chunk['id']}"), json=payload)
    assert api.ok("GET", _chunks(doc))["chunks"][0]["content"] == "original"


def test_qa_chunks_need_a_question_and_an_answer(api: Api) -> None:
    ds = api.dataset("qa", chunk_method="qa")
    doc = api.upload(ds["id"], ("faq.txt", b"x"))[0]
    chunk = api.add_chunk(ds["id"], doc["id"], "Q1\tA1")
    path = _chunks(doc, f"/{chunk['id']}")
    assert (
        api.error(102, "PUT", path, json={"content": "no tab"})
        == "Q&A must be separated by TAB/ENTER key."
    )
    api.ok("PUT", path, json={"content": "Question\nAnswer"})


def test_delete_mismatch_and_duplicates(api: Api, doc: dict[str, Any]) -> None:
    chunk = api.add_chunk(doc["dataset_id"], doc["id"], "x y")
    message = api.error(102, "DELETE", _chunks(doc), json={"chunk_ids": [chunk["id"], "ghost"]})
    assert message == "rm_chunk deleted chunks 1, expect 2"
    chunk = api.add_chunk(doc["dataset_id"], doc["id"], "x y")
    body = api.call("DELETE", _chunks(doc), json={"chunk_ids": [chunk["id"], chunk["id"]]})
    assert body["code"] == 0 and body["data"]["success_count"] == 1
    assert "Input should be a valid list" in api.error(
        101, "DELETE", _chunks(doc), json={"chunk_ids": "x"}
    )


# --- parse start/stop --------------------------------------------------------------------


def _parse(doc: dict[str, Any]) -> str:
    return f"/api/v1/datasets/{doc['dataset_id']}/chunks"


def _state(api: Api, doc: dict[str, Any]) -> dict[str, Any]:
    docs: list[dict[str, Any]] = api.documents(doc["dataset_id"], f"?id={doc['id']}")["docs"]
    return docs[0]


def test_parse_queues_a_task_and_resets_the_document(api: Api, doc: dict[str, Any]) -> None:
    api.add_chunk(doc["dataset_id"], doc["id"], "stale chunk")
    assert api.call("POST", _parse(doc), json={"document_ids": [doc["id"]]}) == {"code": 0}
    state = _state(api, doc)
    assert state["run"] == "RUNNING" and state["chunk_count"] == 0 and state["progress"] == 0
    assert state["process_begin_at"].endswith("GMT")
    tasks = api.backend.tasks
    assert tasks.depth()["queued"] == 1
    status = api.ok("GET", "/v1/system/status")
    assert status["queue"]["queued"] == 1


def test_a_claimed_and_completed_task_makes_the_document_done(
    api: Api, doc: dict[str, Any]
) -> None:
    api.ok("POST", _parse(doc), json={"document_ids": [doc["id"]]})
    tasks = api.backend.tasks
    task = tasks.claim("test-consumer", 30)
    assert task is not None and task.doc_id == doc["id"]
    assert tasks.complete(task, [{"content": "parsed text", "token_count": 2}])
    state = _state(api, doc)
    assert state["run"] == "DONE" and state["progress"] == 1.0
    assert state["chunk_count"] == 1 and state["token_count"] == 2
    assert "Task done (" in state["progress_msg"] and state["process_duration"] > 0
    hits = api.ok(
        "POST", "/api/v1/retrieval", json={"question": "parsed", "dataset_ids": [doc["dataset_id"]]}
    )
    assert [c["content"] for c in hits["chunks"]] == ["parsed text"]


def test_parsing_a_document_in_progress_is_refused(api: Api, doc: dict[str, Any]) -> None:
    api.ok("POST", _parse(doc), json={"document_ids": [doc["id"]]})
    tasks = api.backend.tasks
    task = tasks.claim("c", 30)
    assert task is not None and tasks.report_progress(task, 0.5, "halfway")
    message = api.error(102, "POST", _parse(doc), json={"document_ids": [doc["id"]]})
    assert message == "Can't parse document that is currently being processed"


def test_stop_cancels_queued_and_running_documents(api: Api, doc: dict[str, Any]) -> None:
    api.ok("POST", _parse(doc), json={"document_ids": [doc["id"]]})
    assert api.call("DELETE", _parse(doc), json={"document_ids": [doc["id"]]}) == {"code": 0}
    state = _state(api, doc)
    assert state["run"] == "CANCEL" and state["chunk_count"] == 0
    tasks = api.backend.tasks
    assert tasks.depth() == {"queued": 0, "running": 0, "expired": 0}


def test_stop_refuses_documents_at_progress_0_or_1(api: Api, doc: dict[str, Any]) -> None:
    message = api.error(102, "DELETE", _parse(doc), json={"document_ids": [doc["id"]]})
    assert message == "Can't stop parsing document with progress at 0 or 1"


@pytest.mark.parametrize(
    ("method", "payload", "expected"),
    [
        ("POST", {}, "`document_ids` is required"),
        ("POST", {"document_ids": []}, "`document_ids` is required"),
        ("POST", {"document_ids": ["ghost"]}, "Documents not found: ['ghost']"),
        ("DELETE", {}, "`document_ids` is required"),
        ("DELETE", {"document_ids": ["ghost"]}, "You don't own the document ghost."),
    ],
)
def test_parse_and_stop_errors(
    api: Api, doc: dict[str, Any], method: str, payload: dict[str, Any], expected: str
) -> None:
    assert api.error(102, method, _parse(doc), json=payload) == expected
    assert _state(api, doc)["run"] == "UNSTART"


def test_parse_with_an_unknown_id_still_queues_the_known_ones(
    api: Api, doc: dict[str, Any]
) -> None:
    message = api.error(102, "POST", _parse(doc), json={"document_ids": [doc["id"], "ghost"]})
    assert message == "Documents not found: ['ghost']"
    assert _state(api, doc)["run"] == "RUNNING"


def test_parse_duplicates_report_partial_success(api: Api, doc: dict[str, Any]) -> None:
    body = api.call("POST", _parse(doc), json={"document_ids": [doc["id"], doc["id"]]})
    assert body["code"] == 0
    assert body["data"] == {"success_count": 1, "errors": [f"Duplicate document ids: {doc['id']}"]}


def test_parse_in_an_unknown_dataset(api: Api) -> None:
    other = uuid.uuid1().hex
    assert (
        api.error(102, "POST", f"/api/v1/datasets/{other}/chunks", json={"document_ids": ["x"]})
        == f"You don't own the dataset {other}."
    )
