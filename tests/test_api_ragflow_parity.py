"""RAGFlow v0.22.1 behaviours of the dataset, document, chunk and retrieval endpoints, one
test per behaviour (api/apps/sdk/dataset.py, doc.py and api/utils/validation_utils.py), and
the deliberate differences of docs/ragflow-differences.md where RAGFlow crashes."""

from __future__ import annotations

import dataclasses
import io
import uuid
from typing import Any

import pytest
from support.api_client import Api

from api import embedding_models, limits

DATASETS = "/api/v1/datasets"
PROMPT = (
    "Please summarize the following paragraphs. Be careful with the numbers, do not make things"
    " up. Paragraphs as following:\n      {cluster_content}\nThe above is the content you need"
    " to summarize."
)
ENTITY_TYPES = ["organization", "person", "geo", "event", "category"]


@pytest.fixture
def doc(api: Api) -> dict[str, Any]:
    ds = api.dataset("a")
    return api.upload(ds["id"], ("zebra.txt", b"some text"))[0]


def _chunks(doc: dict[str, Any]) -> str:
    return f"{DATASETS}/{doc['dataset_id']}/documents/{doc['id']}/chunks"


# --- defaults ------------------------------------------------------------------------------


def test_naive_default_parser_config_is_ragflows_get_parser_config(api: Api) -> None:
    assert api.dataset("a")["parser_config"] == {
        "layout_recognize": "DeepDOC",
        "chunk_token_num": 512,
        "delimiter": "\n",
        "auto_keywords": 0,
        "auto_questions": 0,
        "html4excel": False,
        "topn_tags": 3,
        "raptor": {
            "use_raptor": True,
            "prompt": PROMPT,
            "max_token": 256,
            "threshold": 0.1,
            "max_cluster": 64,
            "random_seed": 0,
        },
        "graphrag": {"use_graphrag": True, "entity_types": ENTITY_TYPES, "method": "light"},
    }


def test_partial_parser_config_is_filled_by_ragflows_model_then_merged(api: Api) -> None:
    config = api.dataset("a", parser_config={"chunk_token_num": 128})["parser_config"]
    assert config == {
        "layout_recognize": "DeepDOC",
        "chunk_token_num": 128,
        "delimiter": "\\n",
        "auto_keywords": 0,
        "auto_questions": 0,
        "html4excel": False,
        "topn_tags": 1,
        "raptor": {
            "use_raptor": False,
            "prompt": PROMPT,
            "max_token": 256,
            "threshold": 0.1,
            "max_cluster": 64,
            "random_seed": 0,
        },
        "graphrag": {
            "use_graphrag": False,
            "entity_types": ENTITY_TYPES,
            "method": "light",
            "community": False,
            "resolution": False,
        },
        "tag_kb_ids": [],
        "filename_embd_weight": 0.1,
        "task_page_size": None,
        "pages": None,
    }


def test_partial_raptor_block_is_filled_in(api: Api) -> None:
    config = api.dataset("a", parser_config={"raptor": {"use_raptor": True}})["parser_config"]
    assert config["raptor"] == {
        "use_raptor": True,
        "prompt": PROMPT,
        "max_token": 256,
        "threshold": 0.1,
        "max_cluster": 64,
        "random_seed": 0,
    }


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("table", {}),
        ("qa", {"raptor": {"use_raptor": False}, "graphrag": {"use_graphrag": False}}),
    ],
)
def test_other_methods_default_parser_config(api: Api, method: str, expected: Any) -> None:
    assert api.dataset("a", chunk_method=method)["parser_config"] == expected


def test_avatar_defaults_to_null(api: Api) -> None:
    assert api.dataset("a")["avatar"] is None


# --- embedding models ----------------------------------------------------------------------


def test_embedding_model_defaults_to_ragflows_builtin_default(api: Api) -> None:
    assert api.dataset("a")["embedding_model"] == "BAAI/bge-small-en-v1.5@Builtin"
    assert embedding_models.default() == "BAAI/bge-small-en-v1.5@Builtin"


@pytest.mark.parametrize(
    "model",
    ["text-embedding-3-small@OpenAI", "BAAI/bge-m3@Builtin", "embedding-3@ZHIPU-AI"],
)
def test_listed_embedding_models_are_accepted(api: Api, model: str) -> None:
    assert api.dataset("a", embedding_model=model)["embedding_model"] == model


@pytest.mark.parametrize(
    "model", ["nope@OpenAI", "text-embedding-3-small@Nowhere", "gpt-4o@OpenAI"]
)
def test_unknown_embedding_model_is_101_unsupported_model(api: Api, model: str) -> None:
    message = api.error(101, "POST", DATASETS, json={"name": "a", "embedding_model": model})
    assert message == f"Unsupported model: <{model}>"
    ds = api.dataset("b")
    assert api.error(101, "PUT", f"{DATASETS}/{ds['id']}", json={"embedding_model": model}) == (
        f"Unsupported model: <{model}>"
    )


def test_embedding_model_is_stripped_before_its_checks(api: Api) -> None:
    stripped = api.dataset("a", embedding_model="  text-embedding-3-small@OpenAI \t")
    assert stripped["embedding_model"] == "text-embedding-3-small@OpenAI"
    message = api.error(101, "POST", DATASETS, json={"name": "a", "embedding_model": "  @OpenAI"})
    assert "Both model_name and provider must be non-empty strings" in message


# --- validation order and messages ---------------------------------------------------------


def test_uuid_other_than_uuid1_is_invalid_uuid1_format(api: Api) -> None:
    v4 = uuid.uuid4().hex
    message = api.error(101, "PUT", f"{DATASETS}/{v4}", json={"name": "x"})
    assert message == f"Field: <dataset_id> - Message: <Invalid UUID1 format> - Value: <{v4}>"
    message = api.error(101, "DELETE", DATASETS, json={"ids": [v4]})
    assert "Message: <Invalid UUID1 format>" in message


@pytest.mark.parametrize(
    ("avatar", "expected"),
    [
        ("data:image/png;base64", "Missing MIME prefix. Expected format: data:<mime>;base64,"),
        ("image/png;base64,AA", "Invalid MIME prefix format. Must start with 'data:'"),
        ("data:image/gif;base64,AA", "Unsupported MIME type. Allowed: ['image/jpeg', 'image/png']"),
    ],
)
def test_avatar_checks_run_in_ragflows_order(api: Api, avatar: str, expected: str) -> None:
    assert expected in api.error(101, "POST", DATASETS, json={"name": "a", "avatar": avatar})


def test_raptor_prompt_of_spaces_is_rejected(api: Api) -> None:
    payload = {"name": "a", "parser_config": {"raptor": {"prompt": "   "}}}
    message = api.error(101, "POST", DATASETS, json=payload)
    assert "Field: <parser_config.raptor.prompt> - Message: <String should have at least 1" in (
        message
    )


def test_dataset_body_content_type_is_checked_before_its_emptiness(api: Api) -> None:
    assert (
        api.error(101, "POST", DATASETS)
        == "Unsupported content type: Expected application/json, got None"
    )
    assert api.error(101, "POST", DATASETS, data="", content_type="text/plain") == (
        "Unsupported content type: Expected application/json, got text/plain"
    )
    assert api.error(101, "POST", DATASETS, data="", content_type="application/json") == (
        "Malformed JSON syntax: Missing commas/brackets or invalid encoding"
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?id=", "Field: <id> - Message: <Invalid UUID1 format> - Value: <>"),
        ("?orderby=", "Field: <orderby> - Message: <Input should be 'create_time' or"),
        ("?page=", "Field: <page> - Message: <Input should be a valid integer"),
        ("?desc=", "Field: <desc> - Message: <Input should be a valid boolean"),
    ],
)
def test_empty_dataset_list_arguments_are_errors(api: Api, query: str, expected: str) -> None:
    assert expected in api.error(101, "GET", f"{DATASETS}{query}")


def test_update_chunk_through_another_document_is_you_dont_own_the_document(
    api: Api, doc: dict[str, Any]
) -> None:
    chunk = api.add_chunk(doc["dataset_id"], doc["id"], "hello")
    other = api.upload(api.dataset("b")["id"], ("b.txt", b"x"))[0]
    path = f"{DATASETS}/{doc['dataset_id']}/documents/{other['id']}/chunks/{chunk['id']}"
    assert (
        api.error(102, "PUT", path, json={"content": "x"})
        == f"You don't own the document {other['id']}."
    )


def test_empty_document_name_gets_the_extension_message(api: Api, doc: dict[str, Any]) -> None:
    path = f"{DATASETS}/{doc['dataset_id']}/documents/{doc['id']}"
    assert (
        api.error(101, "PUT", path, json={"name": ""}) == "The extension of file can't be changed"
    )


# --- bounds --------------------------------------------------------------------------------


def test_documents_page_zero_is_the_first_page_and_page_size_zero_is_empty(api: Api) -> None:
    ds = api.dataset("a")
    api.upload(ds["id"], ("a.txt", b"a"), ("b.txt", b"b"), ("c.txt", b"c"))
    first = api.documents(ds["id"], "?page=0&page_size=2")
    assert first["total"] == 3 and len(first["docs"]) == 2
    assert first["docs"] == api.documents(ds["id"], "?page=1&page_size=2")["docs"]
    assert api.documents(ds["id"], "?page_size=0") == {"total": 3, "docs": []}


def test_chunks_page_size_zero_lists_every_chunk(api: Api, doc: dict[str, Any]) -> None:
    for n in range(35):  # more than the default page of 30
        api.add_chunk(doc["dataset_id"], doc["id"], f"chunk number {n}")
    listed = api.ok("GET", f"{_chunks(doc)}?page_size=0")
    assert listed["total"] == 35 and len(listed["chunks"]) == 35


def test_chunks_page_size_zero_stays_within_page_size_limit(
    api: Api, doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(7):
        api.add_chunk(doc["dataset_id"], doc["id"], f"chunk number {n}")
    monkeypatch.setattr(limits, "PAGE_SIZE", dataclasses.replace(limits.PAGE_SIZE, value=5))
    listed = api.ok("GET", f"{_chunks(doc)}?page_size=0")
    assert listed["total"] == 7 and len(listed["chunks"]) == 5


def test_upload_has_no_file_count_cap(api: Api) -> None:
    ds = api.dataset("a")
    files = [(f"f{n}.txt", b"x") for n in range(257)]
    assert len(api.upload(ds["id"], *files)) == 257


def test_retrieval_reads_numbers_as_ragflow_and_ignores_unknown_keys(
    api: Api, doc: dict[str, Any]
) -> None:
    for n in range(3):
        api.add_chunk(doc["dataset_id"], doc["id"], f"apples and pears {n}")
    payload = {
        "question": "apples",
        "dataset_ids": [doc["dataset_id"]],
        "page": "3",
        "page_size": "1",
        "vector_similarity_weight": 1.5,
        "similarity_threshold": "0.1",
        "top_k": "10",
        "unknown_key": {"anything": True},
    }
    pages = [
        api.ok("POST", "/api/v1/retrieval", json={**payload, "page": str(n)}) for n in (1, 2, 3)
    ]
    assert pages[2] == api.ok("POST", "/api/v1/retrieval", json=payload)
    assert [(p["total"], len(p["chunks"])) for p in pages] == [(1, 1)] * 3  # the page's count
    assert len({p["chunks"][0]["id"] for p in pages}) == 3


def test_retrieval_total_and_doc_aggs_count_the_requested_page(api: Api) -> None:
    """RAGFlow's dealer cuts the page out of its re-ranking window, then counts the page's
    chunks above the threshold as total and aggregates them per document."""
    ds = api.dataset("a")
    fruit, nuts = api.upload(ds["id"], ("fruit.txt", b"x"), ("nuts.txt", b"y"))
    for n in range(3):
        api.add_chunk(ds["id"], fruit["id"], f"apples and pears {n}")
        api.add_chunk(ds["id"], nuts["id"], f"apples and walnuts {n}")
    base = {"question": "apples", "dataset_ids": [ds["id"]], "page_size": 4}
    first = api.ok("POST", "/api/v1/retrieval", json=base)
    assert first["total"] == len(first["chunks"]) == 4
    assert sum(a["count"] for a in first["doc_aggs"]) == 4
    second = api.ok("POST", "/api/v1/retrieval", json={**base, "page": 2})
    assert second["total"] == len(second["chunks"]) == 2
    assert sum(a["count"] for a in second["doc_aggs"]) == 2
    seen = [c["id"] for c in first["chunks"] + second["chunks"]]
    assert len(set(seen)) == 6  # the pages do not overlap (see the differences table)
    beyond = api.ok("POST", "/api/v1/retrieval", json={**base, "page": 3})
    assert beyond == {"chunks": [], "doc_aggs": [], "total": 0}


# the keys of a retrieved chunk in RAGFlow v0.22.1 (Dealer.retrieval, renamed by retrieval_test;
# "vector" popped)
RAGFLOW_RETRIEVAL_KEYS = {
    "id",
    "content_ltks",
    "content",
    "document_id",
    "document_keyword",
    "dataset_id",
    "important_keywords",
    "image_id",
    "similarity",
    "vector_similarity",
    "term_similarity",
    "positions",
    "doc_type_kwd",
    "highlight",
}


def test_retrieved_chunks_have_ragflows_keys(api: Api, doc: dict[str, Any]) -> None:
    api.add_chunk(doc["dataset_id"], doc["id"], "apples and pears")
    body = {"question": "apples", "dataset_ids": [doc["dataset_id"]]}
    (chunk,) = api.ok("POST", "/api/v1/retrieval", json=body)["chunks"]
    assert set(chunk) - {"questions"} == RAGFLOW_RETRIEVAL_KEYS  # questions: the table
    assert chunk["doc_type_kwd"] == "" and chunk["image_id"] == ""


@pytest.mark.parametrize(
    ("highlight", "highlighted"),
    [
        (None, True),
        (True, True),
        (False, True),
        (0, True),
        ("no", True),
        ("false", False),
        ("False", False),
    ],
)
def test_retrieval_highlight_is_off_only_for_the_strings_false(
    api: Api, doc: dict[str, Any], highlight: Any, highlighted: bool
) -> None:
    api.add_chunk(doc["dataset_id"], doc["id"], "apples and pears")
    body = {"question": "apples", "dataset_ids": [doc["dataset_id"]]}
    if highlight is not None:
        body["highlight"] = highlight
    chunk = api.ok("POST", "/api/v1/retrieval", json=body)["chunks"][0]
    if highlighted:
        assert chunk["highlight"] == "<em>apples</em> and pears"
    else:
        assert "highlight" not in chunk


def test_important_keywords_are_kept_as_given(api: Api, doc: dict[str, Any]) -> None:
    added = api.add_chunk(doc["dataset_id"], doc["id"], "c", important_keywords=["", " k "])
    assert added["important_keywords"] == ["", " k "]
    listed = api.ok("GET", _chunks(doc))["chunks"][0]
    assert listed["important_keywords"] == ["", " k "]


def test_chunk_keywords_filter_matches_content_not_document_name(
    api: Api, doc: dict[str, Any]
) -> None:
    api.add_chunk(doc["dataset_id"], doc["id"], "apples")
    assert api.ok("GET", f"{_chunks(doc)}?keywords=zebra")["total"] == 0
    found = api.ok("GET", f"{_chunks(doc)}?keywords=apples")
    assert found["total"] == 1
    assert found["chunks"][0]["content"] == "apples"  # the stored content: see the table


def test_a_chunk_added_to_a_disabled_document_is_retrieved_once_enabled(
    api: Api, doc: dict[str, Any]
) -> None:
    path = f"{DATASETS}/{doc['dataset_id']}/documents/{doc['id']}"
    api.ok("PUT", path, json={"enabled": 0})
    api.add_chunk(doc["dataset_id"], doc["id"], "apples")
    body = {"question": "apples", "dataset_ids": [doc["dataset_id"]]}
    assert api.ok("POST", "/api/v1/retrieval", json=body)["total"] == 0
    api.ok("PUT", path, json={"enabled": 1})
    assert api.ok("POST", "/api/v1/retrieval", json=body)["total"] == 1


def test_adding_existing_content_replaces_the_chunk_and_counts_one_more(
    api: Api, doc: dict[str, Any]
) -> None:
    """RAGFlow's add_chunk overwrites the chunk (same id) and still calls
    increment_chunk_num(1); rm_chunk decrements by the number deleted."""
    first = api.add_chunk(doc["dataset_id"], doc["id"], "same", important_keywords=["k"])
    other = api.add_chunk(doc["dataset_id"], doc["id"], "other")
    again = api.add_chunk(doc["dataset_id"], doc["id"], "same", questions=["q?"])
    assert again["id"] == first["id"] and again["questions"] == ["q?"]
    listed = api.ok("GET", _chunks(doc))
    assert [c["id"] for c in listed["chunks"]] == [first["id"], other["id"]]
    assert listed["total"] == 2 and listed["doc"]["chunk_count"] == 3
    assert listed["chunks"][0]["important_keywords"] == []
    dataset = api.ok("GET", f"{DATASETS}?id={doc['dataset_id']}")[0]
    assert dataset["chunk_count"] == 3
    api.ok("DELETE", _chunks(doc), json={"chunk_ids": [other["id"]]})
    assert api.documents(doc["dataset_id"])["docs"][0]["chunk_count"] == 2
    api.ok("DELETE", _chunks(doc), json={"chunk_ids": None})
    assert api.documents(doc["dataset_id"])["docs"][0]["chunk_count"] == 1
    assert api.ok("GET", _chunks(doc))["total"] == 0


def test_chunk_update_keeps_the_count(api: Api, doc: dict[str, Any]) -> None:
    chunk = api.add_chunk(doc["dataset_id"], doc["id"], "same")
    api.add_chunk(doc["dataset_id"], doc["id"], "same")
    api.ok("PUT", _chunks(doc) + f"/{chunk['id']}", json={"content": "new words here"})
    state = api.documents(doc["dataset_id"])["docs"][0]
    assert state["chunk_count"] == 2 and state["token_count"] == 3


def test_parsing_counts_the_chunks_anew(api: Api, doc: dict[str, Any]) -> None:
    for _ in range(2):
        api.add_chunk(doc["dataset_id"], doc["id"], "same")
    assert api.documents(doc["dataset_id"])["docs"][0]["chunk_count"] == 2
    api.ok("POST", f"{DATASETS}/{doc['dataset_id']}/chunks", json={"document_ids": [doc["id"]]})
    assert api.documents(doc["dataset_id"])["docs"][0]["chunk_count"] == 0


# --- keys a handler does not read ----------------------------------------------------------


def test_unknown_keys_in_chunk_bodies_are_ignored(api: Api, doc: dict[str, Any]) -> None:
    added = api.ok("POST", _chunks(doc), json={"content": "apples", "color": "red", "id": "x"})
    chunk = added["chunk"]
    assert chunk["content"] == "apples" and chunk["id"] != "x"
    path = _chunks(doc) + f"/{chunk['id']}"
    assert api.ok("PUT", path, json={"content": "pears", "bogus": [1]}) is None
    assert api.ok("GET", _chunks(doc))["chunks"][0]["content"] == "pears"
    api.ok("DELETE", _chunks(doc), json={"chunk_ids": [chunk["id"]], "all": True})
    assert api.ok("GET", _chunks(doc))["total"] == 0


def test_unknown_keys_do_not_hide_a_known_fields_error(api: Api, doc: dict[str, Any]) -> None:
    body = {"content": "x", "questions": "q", "color": "red"}
    assert api.error(102, "POST", _chunks(doc), json=body) == "`questions` is required to be a list"
    path = f"{DATASETS}/{doc['dataset_id']}/documents/{doc['id']}"
    message = api.error(101, "PUT", path, json={"enabled": 2, "color": "red"})
    assert message.startswith("Field: <enabled> - Message: <Input should be 0 or 1>")
    assert "color" not in message


def test_unknown_keys_in_document_bodies_are_ignored(api: Api, doc: dict[str, Any]) -> None:
    ds = doc["dataset_id"]
    path = f"{DATASETS}/{ds}/documents/{doc['id']}"
    updated = api.ok("PUT", path, json={"name": "renamed.txt", "size": 1, "run": "DONE"})
    assert updated["name"] == "renamed.txt" and updated["size"] == doc["size"]
    assert updated["run"] == "UNSTART"
    parse = {"document_ids": [doc["id"]], "priority": 1}
    assert api.ok("POST", f"{DATASETS}/{ds}/chunks", json=parse) is None
    api.ok("DELETE", f"{DATASETS}/{ds}/documents", json={"ids": [doc["id"]], "force": True})
    assert api.documents(ds)["total"] == 0


# --- updates -------------------------------------------------------------------------------


@pytest.mark.parametrize("empty", [{}, None])
def test_dataset_chunk_method_change_with_empty_parser_config_resets_it(
    api: Api, empty: Any
) -> None:
    ds = api.dataset("a", parser_config={"chunk_token_num": 128})
    path = f"{DATASETS}/{ds['id']}"
    qa = api.ok("PUT", path, json={"chunk_method": "qa", "parser_config": empty})
    assert qa["parser_config"] == {
        "raptor": {"use_raptor": False},
        "graphrag": {"use_graphrag": False},
    }
    table = api.ok("PUT", path, json={"chunk_method": "table", "parser_config": empty})
    assert table["parser_config"] == {}


def test_document_parser_config_is_stored_as_given(api: Api, doc: dict[str, Any]) -> None:
    path = f"{DATASETS}/{doc['dataset_id']}/documents/{doc['id']}"
    update = {"delimiter": "", "chunk_token_num": 64, "graphrag": {"use_graphrag": False}}
    config = api.ok("PUT", path, json={"parser_config": update})["parser_config"]
    assert config["delimiter"] == "" and config["chunk_token_num"] == 64
    assert config["graphrag"]["use_graphrag"] is False
    assert "raptor" not in config  # RAGFlow drops raptor when an update has none
    assert api.documents(doc["dataset_id"])["docs"][0]["parser_config"] == config


def test_document_parser_config_that_is_not_an_object_is_a_validation_error(
    api: Api, doc: dict[str, Any]
) -> None:
    path = f"{DATASETS}/{doc['dataset_id']}/documents/{doc['id']}"
    message = api.error(101, "PUT", path, json={"parser_config": [1]})
    assert message == "Field: <parser_config> - Message: <Input should be a valid dictionary>" + (
        " - Value: <[1]>"
    )


# --- where RAGFlow crashes (code 100 with exception text): a proper error instead ----------


def test_dataset_name_over_128_bytes_is_ragflows_data_error(api: Api) -> None:
    name = "é" * 65  # 65 characters, 130 bytes
    message = api.error(102, "POST", DATASETS, json={"name": name})
    assert message == "Dataset name length is 65 which is larger than 128"


def test_upload_to_an_unknown_dataset_is_a_data_error_not_a_crash(api: Api) -> None:
    other = uuid.uuid1().hex
    message = api.error(
        102, "POST", f"{DATASETS}/{other}/documents", data={"file": (io.BytesIO(b"x"), "a.txt")}
    )
    assert message == f"Can't find the dataset with ID {other}!"


def test_chunk_content_that_is_not_a_string_is_a_validation_error(
    api: Api, doc: dict[str, Any]
) -> None:
    message = api.error(101, "POST", _chunks(doc), json={"content": 123})
    assert message == "Field: <content> - Message: <Input should be a valid string> - Value: <123>"


def test_dataset_update_lists_body_and_path_id_problems_together(api: Api) -> None:
    message = api.error(101, "PUT", f"{DATASETS}/not-an-id", json={"permission": "all"})
    assert message.splitlines() == [
        "Field: <permission> - Message: <Input should be 'me' or 'team'> - Value: <all>",
        "Field: <dataset_id> - Message: <Invalid UUID1 format> - Value: <not-an-id>",
    ]


# --- retrieval metadata_condition (RAGFlow's meta_filter) ----------------------------------


@pytest.fixture
def authored(api: Api) -> dict[str, Any]:
    ds = api.dataset("meta")
    ann, bob = api.upload(ds["id"], ("ann.txt", b"x"), ("bob.txt", b"x"))
    for doc, meta in (
        (ann, {"author": "Ann", "year": 2020}),
        (bob, {"author": "Bob", "year": "2021"}),
    ):
        api.ok("PUT", f"{DATASETS}/{ds['id']}/documents/{doc['id']}", json={"meta_fields": meta})
        api.add_chunk(ds["id"], doc["id"], f"apples from {doc['name']}")
    return {"ds": ds["id"], "ann": ann["id"], "bob": bob["id"]}


def _found(api: Api, authored: dict[str, Any], *conditions: dict[str, Any]) -> list[str]:
    payload = {
        "question": "apples",
        "dataset_ids": [authored["ds"]],
        "metadata_condition": {"conditions": list(conditions)},
    }
    found = api.ok("POST", "/api/v1/retrieval", json=payload)
    names = {authored["ann"]: "ann", authored["bob"]: "bob"}
    return sorted(names[c["document_id"]] for c in found["chunks"])


def test_retrieval_metadata_condition_selects_documents(api: Api, authored: dict[str, Any]) -> None:
    def cond(op: str, value: Any, name: str = "author") -> dict[str, Any]:
        return {"name": name, "comparison_operator": op, "value": value}

    assert _found(api, authored) == ["ann", "bob"]
    assert _found(api, authored, cond("is", "Ann")) == ["ann"]
    assert _found(api, authored, cond("not is", "Ann")) == ["bob"]
    assert _found(api, authored, cond("contains", "o")) == ["bob"]
    assert _found(api, authored, cond("start with", "a")) == ["ann"]
    assert _found(api, authored, cond(">", "2020.5", "year")) == ["bob"]  # numbers compared
    assert _found(api, authored, cond("≤", 2021, "year")) == ["ann", "bob"]
    assert _found(api, authored, cond("not empty", None)) == ["ann", "bob"]
    # a key no document has is skipped, as in RAGFlow
    assert _found(api, authored, cond("is", "x", "nokey"), cond("is", "Bob")) == ["bob"]


def test_retrieval_metadata_condition_matching_nothing_finds_nothing(
    api: Api, authored: dict[str, Any]
) -> None:
    nothing = {"name": "author", "comparison_operator": "is", "value": "Zed"}
    assert _found(api, authored, nothing) == []


def test_retrieval_metadata_condition_with_an_unknown_operator_is_a_validation_error(
    api: Api, authored: dict[str, Any]
) -> None:
    payload = {
        "question": "apples",
        "dataset_ids": [authored["ds"]],
        "metadata_condition": {"conditions": [{"name": "a", "comparison_operator": "like"}]},
    }
    message = api.error(101, "POST", "/api/v1/retrieval", json=payload)
    assert message.startswith(
        "Field: <metadata_condition.conditions.0.comparison_operator> - Message: <Input should"
    )


def test_retrieval_with_an_empty_question_finds_nothing_at_once(
    api: Api, authored: dict[str, Any]
) -> None:
    payload = {"question": "", "dataset_ids": [authored["ds"]]}
    assert api.ok("POST", "/api/v1/retrieval", json=payload) == {
        "total": 0,
        "chunks": [],
        "doc_aggs": {},
    }


def test_document_list_with_an_unknown_orderby_is_a_validation_error(api: Api) -> None:
    ds = api.dataset("a")
    message = api.error(101, "GET", f"{DATASETS}/{ds['id']}/documents?orderby=bogus")
    assert message == (
        "Field: <orderby> - Message: <Input should be 'create_time', 'update_time', 'name'"
        " or 'size'> - Value: <bogus>"
    )
    assert api.documents(ds["id"], "?orderby=name")["total"] == 0


def test_retrieval_compares_embedding_models_without_their_factory(api: Api) -> None:
    a = api.dataset("a", embedding_model="BAAI/bge-m3@Builtin")
    b = api.dataset("b", embedding_model="BAAI/bge-m3@SILICONFLOW")
    c = api.dataset("c", embedding_model="BAAI/bge-small-en-v1.5@Builtin")
    same = {"question": "x", "dataset_ids": [a["id"], b["id"]]}
    assert api.ok("POST", "/api/v1/retrieval", json=same)["total"] == 0
    different = {"question": "x", "dataset_ids": [a["id"], c["id"]]}
    message = api.error(102, "POST", "/api/v1/retrieval", json=different)
    assert message == 'Datasets use different embedding models."'


def test_embedding_model_data_holds_ragflows_factories_and_a_known_default() -> None:
    factories = embedding_models.factories()
    assert {"Builtin", "OpenAI", "Jina", "Cohere"} <= set(factories)
    assert all(models for models in factories.values())
    assert embedding_models.is_known(embedding_models.default())
    assert embedding_models.model_name("BAAI/bge-m3@Builtin") == "BAAI/bge-m3"
    assert embedding_models.model_name("local@Nowhere") == "local@Nowhere"
