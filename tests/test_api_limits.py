"""Abusive request shapes get a quick 101 naming the limit, never code 100 and a traceback.

One test per input that used to take the service down or crash a request: a 1 MB retrieval
question, 1000 chunk-list keywords, 260,000 document ids, 100,000-deep JSON, a lone surrogate
in a name, invalid UTF-8, an oversized JSON body, bidirectional control characters in names.
The limits come from api.limits, so each test follows a change of a limit."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from support.api_client import KEY, Api
from werkzeug.test import EnvironBuilder, run_wsgi_app

from api import limits
from api.limits import (
    CHUNK_CHARS,
    JSON_BODY_BYTES,
    JSON_DEPTH,
    LIST_ITEMS,
    META_FIELDS_BYTES,
    PAGE_SIZE,
    QUERY_CHARS,
    QUERY_TERMS,
    STRING_CHARS,
    TOP_K,
)

RETRIEVAL = "/api/v1/retrieval"
JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(autouse=True)
def no_unexpected_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fails a test whose requests logged an unexpected error (code 100 with a traceback)."""
    with caplog.at_level(logging.ERROR, logger="api.app"):
        yield
    assert [r.getMessage() for r in caplog.records if r.name == "api.app"] == []


@pytest.fixture
def doc(api: Api) -> dict[str, Any]:
    ds = api.dataset("a")
    return api.upload(ds["id"], ("notes.txt", b"some text"))[0]


def _words(count: int) -> str:
    return " ".join(f"w{i}" for i in range(count))


def _raw(api: Api, method: str, path: str, body: bytes) -> dict[str, Any]:
    return api.call(method, path, data=body, headers=JSON_HEADERS)


# --- retrieval question and chunk-list keywords ----------------------------------------


@pytest.mark.parametrize(
    "size", [QUERY_CHARS.value + 1, 100 * 1024, 1024 * 1024], ids=["over", "100KB", "1MB"]
)
def test_a_huge_question_is_refused_by_length(api: Api, doc: dict[str, Any], size: int) -> None:
    question = ("lorem ipsum " * (size // 12 + 1))[:size]
    message = api.error(
        101, "POST", RETRIEVAL, json={"question": question, "dataset_ids": [doc["dataset_id"]]}
    )
    # a question over any JSON string's limit is refused as the body is read
    limit = QUERY_CHARS if size <= STRING_CHARS.value else STRING_CHARS
    assert f"<question> is {size} characters long" in message
    assert f"at most {limit.value}" in message and limit.name in message


def test_a_question_with_too_many_terms_is_refused(api: Api, doc: dict[str, Any]) -> None:
    ds = [doc["dataset_id"]]
    at_limit = _words(QUERY_TERMS.value) + " the and of"  # stopwords are not counted
    assert api.ok("POST", RETRIEVAL, json={"question": at_limit, "dataset_ids": ds})["total"] == 0
    over = _words(QUERY_TERMS.value + 1)
    message = api.error(101, "POST", RETRIEVAL, json={"question": over, "dataset_ids": ds})
    assert f"has {QUERY_TERMS.value + 1} distinct search terms" in message
    assert f"at most {QUERY_TERMS.value}" in message and QUERY_TERMS.name in message


def test_a_thousand_chunk_list_keywords_are_refused(api: Api, doc: dict[str, Any]) -> None:
    url = f"/api/v1/datasets/{doc['dataset_id']}/documents/{doc['id']}/chunks"
    api.add_chunk(doc["dataset_id"], doc["id"], "w3 and more")
    found = api.ok("GET", url, query_string={"keywords": _words(QUERY_TERMS.value)})
    assert found["total"] == 1
    message = api.error(101, "GET", url, query_string={"keywords": _words(1000)})
    assert "<keywords> has 1000 distinct search terms" in message
    long = "x" * (QUERY_CHARS.value + 1)
    message = api.error(101, "GET", url, query_string={"keywords": long})
    assert f"<keywords> is {QUERY_CHARS.value + 1} characters long" in message


# --- lists, nesting, body size, encoding -------------------------------------------------


def test_260000_document_ids_are_refused(api: Api, doc: dict[str, Any]) -> None:
    ids = [str(i) for i in range(260_000)]  # short ids: the body stays under JSON_BODY_BYTES
    ds = doc["dataset_id"]
    for method, path, body in [
        ("POST", RETRIEVAL, {"question": "x", "dataset_ids": [ds], "document_ids": ids}),
        ("POST", f"/api/v1/datasets/{ds}/chunks", {"document_ids": ids}),
        ("DELETE", f"/api/v1/datasets/{ds}/chunks", {"document_ids": ids}),
        ("DELETE", f"/api/v1/datasets/{ds}/documents", {"ids": ids}),
        ("DELETE", "/api/v1/datasets", {"ids": ids}),
    ]:
        message = api.error(101, method, path, json=body)
        assert f"has {len(ids)} items; at most {LIST_ITEMS.value}" in message, (path, message)
        assert LIST_ITEMS.name in message
    assert api.documents(ds)["total"] == 1  # nothing was deleted


def test_repeated_query_arguments_are_counted(api: Api, doc: dict[str, Any]) -> None:
    url = f"/api/v1/datasets/{doc['dataset_id']}/documents"
    at_limit = "&".join(["suffix=txt"] * LIST_ITEMS.value)
    assert api.ok("GET", f"{url}?{at_limit}")["total"] == 1
    message = api.error(101, "GET", f"{url}?{at_limit}&suffix=md")
    assert f"<suffix> has {LIST_ITEMS.value + 1} items" in message


def test_lists_at_the_limit_are_accepted(api: Api, doc: dict[str, Any]) -> None:
    ids = [doc["id"]] * LIST_ITEMS.value
    body = {"question": "text", "dataset_ids": [doc["dataset_id"]], "document_ids": ids}
    assert api.ok("POST", RETRIEVAL, json=body)["total"] == 0
    api.add_chunk(doc["dataset_id"], doc["id"], "some text")
    same = {**body, "dataset_ids": [doc["dataset_id"]] * LIST_ITEMS.value}  # looked up once
    assert api.ok("POST", RETRIEVAL, json=same)["total"] == 1


def test_a_nested_list_is_counted_where_it_is(api: Api, doc: dict[str, Any]) -> None:
    url = f"/api/v1/datasets/{doc['dataset_id']}/documents/{doc['id']}/chunks"
    chunk = api.add_chunk(doc["dataset_id"], doc["id"], "content")
    positions = [[1, 2, 3, 4, 5]] * (LIST_ITEMS.value + 1)
    message = api.error(101, "PUT", f"{url}/{chunk['id']}", json={"positions": positions})
    assert f"<positions> has {LIST_ITEMS.value + 1} items" in message


@pytest.mark.parametrize("depth", [JSON_DEPTH.value + 1, 100_000])
def test_deeply_nested_json_is_refused(api: Api, depth: int) -> None:
    body = ('{"name": "a", "parser_config": ' + "[" * depth + "]" * depth + "}").encode()
    message = _raw(api, "POST", "/api/v1/datasets", body)
    assert message["code"] == 101, message
    assert f"nested deeper than {JSON_DEPTH.value} levels ({JSON_DEPTH.name})" in message["message"]


def test_json_at_the_depth_limit_reaches_the_field_checks(api: Api) -> None:
    depth = JSON_DEPTH.value - 1  # the body object is the first level
    body = ('{"name": "a", "parser_config": ' + "[" * depth + "]" * depth + "}").encode()
    reply = _raw(api, "POST", "/api/v1/datasets", body)
    assert reply["code"] == 101 and "<parser_config>" in reply["message"], reply
    assert "nested deeper" not in reply["message"]


@pytest.mark.parametrize(
    ("where", "body"),
    [
        ("name", b'{"name": "\\ud800"}'),
        ("name", b'{"name": "ok \\udfff end"}'),
        ("description", b'{"name": "n", "description": "\\ud83d"}'),
        ("parser_config.<key>", b'{"name": "n", "parser_config": {"\\ud800": 1}}'),
    ],
)
def test_a_lone_surrogate_is_a_validation_error(api: Api, where: str, body: bytes) -> None:
    reply = _raw(api, "POST", "/api/v1/datasets", body)
    assert reply["code"] == 101, reply
    assert f"Field: <{where}>" in reply["message"] and "lone surrogate" in reply["message"]


def test_a_valid_surrogate_pair_is_a_character(api: Api) -> None:
    reply = _raw(api, "POST", "/api/v1/datasets", b'{"name": "rocket \\ud83d\\ude80"}')
    assert reply["code"] == 0 and reply["data"]["name"] == "rocket \U0001f680", reply


def test_a_lone_surrogate_in_a_retrieval_question(api: Api, doc: dict[str, Any]) -> None:
    body = json.dumps({"question": "a \ud800 b", "dataset_ids": [doc["dataset_id"]]}).encode()
    reply = _raw(api, "POST", RETRIEVAL, body)
    assert reply["code"] == 101 and "Field: <question>" in reply["message"], reply


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"name": "\xff\xfe"}', "invalid encoding"),
        (b'{"name": "caf\xe9"}', "invalid encoding"),
        (b'{"name": "\xed\xa0\x80"}', "lone surrogate U+D800"),  # UTF-8 of a surrogate
    ],
)
def test_invalid_utf8_is_a_validation_error(api: Api, body: bytes, expected: str) -> None:
    reply = _raw(api, "POST", "/api/v1/datasets", body)
    assert reply["code"] == 101 and expected in reply["message"], reply


def test_query_and_path_bytes_that_are_not_utf8(api: Api, doc: dict[str, Any]) -> None:
    url = f"/api/v1/datasets/{doc['dataset_id']}/documents/{doc['id']}/chunks"
    assert api.ok("GET", f"{url}?keywords=%ED%A0%80%FF")["total"] == 0
    assert api.call("GET", "/api/v1/datasets/%ED%A0%80/documents")["code"] == 102


def test_an_oversized_json_body_is_refused_before_it_is_read(api: Api) -> None:
    size = JSON_BODY_BYTES.value + 1
    body = b'{"name": "' + b"x" * (size - 12) + b'"}'
    assert len(body) == size
    reply = _raw(api, "POST", "/api/v1/datasets", body)
    assert reply["code"] == 101, reply
    assert f"The request body is {size} bytes" in reply["message"]
    assert f"at most {JSON_BODY_BYTES.value} bytes ({JSON_BODY_BYTES.name})" in reply["message"]


def test_an_oversized_json_body_without_a_length_is_refused(api: Api) -> None:
    """A chunked body (no Content-Length, as Gunicorn passes it on) is cut at the limit."""
    body = b'{"name": "' + b"x" * JSON_BODY_BYTES.value + b'"}'
    environ = EnvironBuilder(
        "/api/v1/datasets",
        method="POST",
        input_stream=io.BytesIO(body),
        headers=[*JSON_HEADERS.items(), ("Authorization", f"Bearer {KEY}")],
    ).get_environ()
    del environ["CONTENT_LENGTH"]
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input_terminated"] = True
    app_iter, status, _ = run_wsgi_app(api.app, environ, buffered=True)
    reply = json.loads(b"".join(app_iter))
    assert status == "200 OK" and reply["code"] == 101, reply
    assert "The request body is larger" in reply["message"]
    assert JSON_BODY_BYTES.name in reply["message"]


# --- names -------------------------------------------------------------------------------

BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"]


@pytest.mark.parametrize("char", BIDI, ids=[f"U+{ord(c):04X}" for c in BIDI])
def test_bidi_controls_are_refused_in_dataset_names(api: Api, char: str) -> None:
    message = api.error(101, "POST", "/api/v1/datasets", json={"name": f"invoice{char}fdp.exe"})
    assert f"bidirectional control characters (U+{ord(char):04X})" in message
    ds = api.dataset("plain")
    message = api.error(101, "PUT", f"/api/v1/datasets/{ds['id']}", json={"name": f"x{char}"})
    assert "bidirectional control characters" in message


@pytest.mark.parametrize("char", BIDI, ids=[f"U+{ord(c):04X}" for c in BIDI])
def test_bidi_controls_are_refused_in_document_names(
    api: Api, doc: dict[str, Any], char: str
) -> None:
    ds = doc["dataset_id"]
    message = api.error(
        101,
        "POST",
        f"/api/v1/datasets/{ds}/documents",
        data={"file": [(io.BytesIO(b"x"), f"report{char}txt.exe.txt")]},
    )
    assert f"bidirectional control characters (U+{ord(char):04X})" in message
    message = api.error(
        101, "PUT", f"/api/v1/datasets/{ds}/documents/{doc['id']}", json={"name": f"a{char}.txt"}
    )
    assert "bidirectional control characters" in message
    assert [d["name"] for d in api.documents(ds)["docs"]] == ["notes.txt"]


# --- one source for the limits -----------------------------------------------------------


def test_the_docs_table_is_generated_from_the_limits() -> None:
    document = limits.DOCS_TABLE.path.read_text(encoding="utf-8")
    assert limits.DOCS_TABLE.markdown() in document, "run: python -m api.limits --update-docs"
    assert limits.DOCS_TABLE.applied(document) == document


def test_the_openapi_document_carries_the_limits(api: Api) -> None:
    spec = api.client.get("/api/v1/openapi.json").get_json()
    retrieval = spec["paths"]["/api/v1/retrieval"]["post"]["requestBody"]["content"]
    props = retrieval["application/json"]["schema"]["properties"]
    assert props["question"]["maxLength"] == QUERY_CHARS.value
    assert props["document_ids"]["maxItems"] == LIST_ITEMS.value
    assert props["top_k"]["maximum"] == TOP_K.value
    assert props["page_size"]["maximum"] == PAGE_SIZE.value


@pytest.mark.parametrize(("field", "limit"), [("top_k", TOP_K), ("page_size", PAGE_SIZE)])
def test_retrieval_top_k_and_page_size_are_capped(
    api: Api, doc: dict[str, Any], field: str, limit: limits.Limit
) -> None:
    base = {"question": "text", "dataset_ids": [doc["dataset_id"]]}
    assert api.ok("POST", RETRIEVAL, json={**base, field: limit.value})["total"] == 0
    message = api.error(101, "POST", RETRIEVAL, json={**base, field: limit.value + 1})
    assert f"<{field}> - Message: <Input should be less than or equal to {limit.value}>" in message


def test_list_page_sizes_are_capped(api: Api, doc: dict[str, Any]) -> None:
    ds = doc["dataset_id"]
    for path in [
        "/api/v1/datasets",
        f"/api/v1/datasets/{ds}/documents",
        f"/api/v1/datasets/{ds}/documents/{doc['id']}/chunks",
    ]:
        api.ok("GET", f"{path}?page_size={PAGE_SIZE.value}")
        message = api.error(101, "GET", f"{path}?page_size={PAGE_SIZE.value + 1}")
        assert f"less than or equal to {PAGE_SIZE.value}" in message, path


@pytest.mark.parametrize("field", ["content", "important_keywords", "questions"])
def test_chunk_text_is_capped(api: Api, doc: dict[str, Any], field: str) -> None:
    url = f"/api/v1/datasets/{doc['dataset_id']}/documents/{doc['id']}/chunks"
    at_limit: Any = "x" * CHUNK_CHARS.value
    over: Any = at_limit + "y"
    if field != "content":
        at_limit, over = [at_limit[:8], at_limit[8:]], [at_limit, "y"]
    base = {} if field == "content" else {"content": "short"}
    chunk = api.ok("POST", url, json={**base, field: at_limit})["chunk"]
    message = api.error(101, "POST", url, json={**base, "content": "other", field: over})
    assert f"<{field}> is {CHUNK_CHARS.value + 1} characters long" in message
    assert CHUNK_CHARS.name in message
    message = api.error(101, "PUT", f"{url}/{chunk['id']}", json={field: over})
    assert f"at most {CHUNK_CHARS.value} are accepted" in message


def test_every_json_string_is_capped(api: Api) -> None:
    long = "x" * (STRING_CHARS.value + 1)
    for body, where in [
        ({"name": "a", "parser_config": {"delimiter": long}}, "parser_config.delimiter"),
        ({"name": "a", "parser_config": {long: 1}}, "parser_config.<key>"),
        ({"name": "a", "parser_config": {"graphrag": {"entity_types": [long]}}},
         "parser_config.graphrag.entity_types.0"),
    ]:  # fmt: skip
        message = api.error(101, "POST", "/api/v1/datasets", json=body)
        assert f"Field: <{where}> is {STRING_CHARS.value + 1} characters long" in message
        assert STRING_CHARS.name in message


def test_meta_fields_are_capped(api: Api, doc: dict[str, Any]) -> None:
    url = f"/api/v1/datasets/{doc['dataset_id']}/documents/{doc['id']}"
    fits = {f"k{i}": "v" * 1000 for i in range(60)}
    assert api.ok("PUT", url, json={"meta_fields": fits})["meta_fields"] == fits
    over = {f"k{i}": "v" * 1000 for i in range(70)}
    message = api.error(101, "PUT", url, json={"meta_fields": over})
    assert f"at most {META_FIELDS_BYTES.value} are accepted ({META_FIELDS_BYTES.name})" in message
