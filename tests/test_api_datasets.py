"""Datasets endpoints through Werkzeug's test client: behaviour and every error path."""

from __future__ import annotations

import uuid

import pytest
from support.api_client import Api

PNG = "data:image/png;base64,iVBORw0KGgo="
MODEL = "text-embedding-3-small@OpenAI"  # one of RAGFlow's factory embedding models


def test_create_returns_the_dataset_with_defaults(api: Api) -> None:
    data = api.dataset("  Docs  ", description="d", avatar=PNG, embedding_model=MODEL)
    assert data["name"] == "Docs"
    assert uuid.UUID(data["id"]).version == 1
    assert data["chunk_method"] == "naive" and data["permission"] == "me"
    assert data["parser_config"]["chunk_token_num"] == 512
    assert data["parser_config"]["delimiter"] == "\n"
    assert data["document_count"] == 0 and data["chunk_count"] == 0
    assert data["avatar"] == PNG and data["embedding_model"] == MODEL
    assert isinstance(data["create_time"], int) and data["create_date"].endswith("GMT")


def test_create_merges_parser_config_over_the_method_default(api: Api) -> None:
    data = api.dataset("x", parser_config={"chunk_token_num": 128, "raptor": {"use_raptor": True}})
    assert data["parser_config"]["chunk_token_num"] == 128
    assert data["parser_config"]["raptor"]["use_raptor"] is True
    assert data["parser_config"]["raptor"]["max_token"] == 256
    # RAGFlow's model fills in its own delimiter default, a backslash and an n
    assert data["parser_config"]["delimiter"] == "\\n"


def test_duplicate_names_are_renamed_case_insensitively(api: Api) -> None:
    assert api.dataset("Dup")["name"] == "Dup"
    assert api.dataset("dup")["name"] == "dup(1)"
    assert api.dataset("DUP")["name"] == "DUP(2)"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({}, "Field: <name> - Message: <Field required> - Value: <{}>"),
        ({"name": ""}, "Field: <name> - Message: <String should have at least 1 character>"),
        ({"name": "   "}, "String should have at least 1 character"),
        ({"name": "x" * 129}, "String should have at most 128 characters"),
        ({"name": 5}, "Field: <name> - Message: <Input should be a valid string> - Value: <5>"),
        ({"name": "a", "bogus": 1}, "Field: <bogus> - Message: <Extra inputs are not permitted>"),
        ({"name": "a", "permission": "all"}, "Input should be 'me' or 'team'"),
        ({"name": "a", "chunk_method": "x"}, "Input should be 'naive', 'book', 'email'"),
        ({"name": "a", "embedding_model": "nope"}, "must follow <model_name>@<provider> format"),
        ({"name": "a", "avatar": "data:text/plain;base64,AA"}, "Unsupported MIME type"),
        ({"name": "a", "avatar": "abc"}, "Missing MIME prefix"),
        (
            {"name": "a", "parser_config": {"chunk_token_num": 0}},
            "Field: <parser_config.chunk_token_num> - Message: <Input should be greater than or "
            "equal to 1>",
        ),
        ({"name": "a", "parser_config": {"chunk_token_num": 2049}}, "less than or equal to 2048"),
        ({"name": "a", "parser_config": {"nope": 1}}, "<parser_config.nope> - Message: <Extra"),
        ({"name": "a", "parser_config": {"html4excel": "yes"}}, "Input should be a valid boolean"),
        (
            {"name": "a", "parser_config": {"auto_keywords": True}},
            "Input should be a valid integer",
        ),
    ],
)
def test_create_rejects_invalid_fields(api: Api, payload: dict[str, object], expected: str) -> None:
    assert expected in api.error(101, "POST", "/api/v1/datasets", json=payload)
    assert api.ok("GET", "/api/v1/datasets") == []


def test_several_errors_are_reported_one_per_line(api: Api) -> None:
    message = api.error(101, "POST", "/api/v1/datasets", json={"name": "", "x": 1})
    assert len(message.splitlines()) == 2


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (
            "{",
            "application/json",
            "Malformed JSON syntax: Missing commas/brackets or invalid encoding",
        ),
        (b"\xff\xfe", "application/json", "Malformed JSON syntax"),
        ("[1]", "application/json", "Invalid request payload: expected object, got list"),
        ('"s"', "application/json", "Invalid request payload: expected object, got str"),
        (
            "name=x",
            "text/plain",
            "Unsupported content type: Expected application/json, got text/plain",
        ),
    ],
)
def test_create_rejects_bad_bodies(
    api: Api, body: str | bytes, content_type: str, expected: str
) -> None:
    message = api.error(101, "POST", "/api/v1/datasets", data=body, content_type=content_type)
    assert message == expected or message.startswith(expected)


def test_list_pages_orders_and_counts(api: Api) -> None:
    ids = [api.dataset(f"d{i}")["id"] for i in range(5)]
    body = api.call("GET", "/api/v1/datasets?page=1&page_size=2")
    assert body["total_datasets"] == 5
    assert [d["id"] for d in body["data"]] == ids[::-1][:2]
    body = api.call("GET", "/api/v1/datasets?page=3&page_size=2&desc=false")
    assert [d["id"] for d in body["data"]] == ids[4:]
    asc = api.ok("GET", "/api/v1/datasets?orderby=update_time&desc=0")
    assert [d["id"] for d in asc] == ids
    assert [d["id"] for d in api.ok("GET", f"/api/v1/datasets?id={ids[2]}")] == [ids[2]]
    assert [d["name"] for d in api.ok("GET", "/api/v1/datasets?name=D3")] == ["d3"]


@pytest.mark.parametrize(
    ("query", "code", "expected"),
    [
        ("?id=nope", 101, "Field: <id> - Message: <Invalid UUID1 format> - Value: <nope>"),
        (f"?id={uuid.uuid4().hex}", 101, "Field: <id> - Message: <Invalid UUID1 format>"),
        (f"?id={uuid.uuid1().hex}", 108, "lacks permission for dataset"),
        ("?name=ghost", 108, "lacks permission for dataset 'ghost'"),
        ("?page=0", 101, "Field: <page> - Message: <Input should be greater than or equal to 1>"),
        ("?page_size=x", 101, "Field: <page_size> - Message: <Input should be a valid integer"),
        ("?orderby=name", 101, "Input should be 'create_time' or 'update_time'"),
        ("?desc=maybe", 101, "Input should be a valid boolean"),
        ("?color=red", 101, "Field: <color> - Message: <Extra inputs are not permitted>"),
    ],
)
def test_list_rejects_bad_queries(api: Api, query: str, code: int, expected: str) -> None:
    api.dataset("present")
    assert expected in api.error(code, "GET", f"/api/v1/datasets{query}")


def test_update_applies_only_sent_fields(api: Api) -> None:
    ds = api.dataset("a", description="keep")
    data = api.ok("PUT", f"/api/v1/datasets/{ds['id']}", json={"name": "b", "pagerank": 7})
    assert data["name"] == "b" and data["pagerank"] == 7 and data["description"] == "keep"
    assert data["update_time"] >= ds["update_time"]
    listed = api.ok("GET", f"/api/v1/datasets?id={ds['id']}")[0]
    assert listed["name"] == "b"


def test_update_merges_parser_config_and_resets_it_on_method_change(api: Api) -> None:
    ds = api.dataset("a", parser_config={"chunk_token_num": 100})
    path = f"/api/v1/datasets/{ds['id']}"
    data = api.ok("PUT", path, json={"parser_config": {"delimiter": ";"}})
    assert data["parser_config"]["chunk_token_num"] == 100
    assert data["parser_config"]["delimiter"] == ";"
    data = api.ok("PUT", path, json={"chunk_method": "qa"})
    assert data["chunk_method"] == "qa"
    assert data["parser_config"] == {
        "raptor": {"use_raptor": False},
        "graphrag": {"use_graphrag": False},
    }


def test_update_name_clash_and_case_change(api: Api) -> None:
    a, b = api.dataset("alpha"), api.dataset("beta")
    message = api.error(102, "PUT", f"/api/v1/datasets/{b['id']}", json={"name": "ALPHA"})
    assert message == "Dataset name 'ALPHA' already exists"
    assert api.ok("PUT", f"/api/v1/datasets/{a['id']}", json={"name": "Alpha"})["name"] == "Alpha"


@pytest.mark.parametrize(
    ("path_id", "payload", "code", "expected"),
    [
        ("valid", {}, 101, "No properties were modified"),
        ("nope", {"name": "x"}, 101, "Field: <dataset_id> - Message: <Invalid UUID1 format>"),
        ("other", {"name": "x"}, 108, "lacks permission for dataset"),
        ("valid", {"pagerank": 101}, 101, "Field: <pagerank> - Message: <Input should be less"),
        ("valid", {"name": None}, 101, "Field: <name> - Message: <Input should be a valid string>"),
        ("valid", {"id": "x"}, 101, "Field: <id> - Message: <Extra inputs are not permitted>"),
    ],
)
def test_update_errors(
    api: Api, path_id: str, payload: dict[str, object], code: int, expected: str
) -> None:
    ds = api.dataset("a")
    target = {"valid": ds["id"], "other": uuid.uuid1().hex}.get(path_id, path_id)
    assert expected in api.error(code, "PUT", f"/api/v1/datasets/{target}", json=payload)
    assert api.ok("GET", "/api/v1/datasets")[0]["name"] == "a"


def test_update_embedding_model_is_locked_once_chunks_exist(api: Api) -> None:
    ds = api.dataset("a", embedding_model=MODEL)
    doc = api.upload(ds["id"], ("a.txt", b"x"))[0]
    api.add_chunk(ds["id"], doc["id"], "some text")
    message = api.error(
        102,
        "PUT",
        f"/api/v1/datasets/{ds['id']}",
        json={"embedding_model": "text-embedding-3-large@OpenAI"},
    )
    assert message == f"When chunk_num (1) > 0, embedding_model must remain {MODEL}"


def test_delete_some_all_and_none(api: Api) -> None:
    ids = [api.dataset(f"d{i}")["id"] for i in range(3)]
    assert api.call("DELETE", "/api/v1/datasets", json={"ids": []}) == {"code": 0}
    assert len(api.ok("GET", "/api/v1/datasets")) == 3
    api.ok("DELETE", "/api/v1/datasets", json={"ids": [ids[0]]})
    assert {d["id"] for d in api.ok("GET", "/api/v1/datasets")} == set(ids[1:])
    api.ok("DELETE", "/api/v1/datasets", json={"ids": None})
    assert api.ok("GET", "/api/v1/datasets") == []


def test_delete_removes_documents_and_files(api: Api) -> None:
    ds = api.dataset("a")
    (doc,) = api.upload(ds["id"], ("a.txt", b"hello"))
    assert api.inspect.stored_files(ds["id"]) == [doc["id"]]
    api.ok("DELETE", "/api/v1/datasets", json={"ids": [ds["id"]]})
    assert api.inspect.stored_files(ds["id"]) == []
    assert not (api.data_dir / "files" / ds["id"]).exists()


@pytest.mark.parametrize(
    ("ids", "code", "expected"),
    [
        ("unknown", 108, "lacks permission for datasets: '"),
        (["nope"], 101, "Field: <ids> - Message: <Invalid UUID1 format> - Value: <['nope']>"),
        ("dup", 101, "Duplicate ids: '"),
        ("x", 101, "Field: <ids> - Message: <Input should be a valid list>"),
        ("missing", 101, "Field: <ids> - Message: <Field required>"),
    ],
)
def test_delete_errors_delete_nothing(api: Api, ids: object, code: int, expected: str) -> None:
    ds = api.dataset("a")
    payloads: dict[str, dict[str, object]] = {
        "unknown": {"ids": [ds["id"], uuid.uuid1().hex]},
        "dup": {"ids": [ds["id"], ds["id"]]},
        "missing": {},
    }
    payload = payloads.get(str(ids), {"ids": ids})
    assert expected in api.error(code, "DELETE", "/api/v1/datasets", json=payload)
    assert [d["id"] for d in api.ok("GET", "/api/v1/datasets")] == [ds["id"]]


def test_tenants_do_not_see_each_other(api: Api, tmp_path: object) -> None:
    from api import auth

    store = api.backend.store
    store.add_key(auth.hash_key("other-key"), "other-ke", "tenant-b", "b")
    mine = api.dataset("mine")
    assert api.ok("GET", "/api/v1/datasets", key="other-key") == []
    assert "lacks permission" in api.error(
        108, "PUT", f"/api/v1/datasets/{mine['id']}", json={"name": "x"}, key="other-key"
    )
    theirs = api.ok("POST", "/api/v1/datasets", json={"name": "mine"}, key="other-key")
    assert theirs["name"] == "mine" and theirs["tenant_id"] == "tenant-b"
