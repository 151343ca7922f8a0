"""Document endpoints: upload, list, update, download, delete, and their error paths."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

import pytest
from support.api_client import Api


def _docs_path(ds: dict[str, object]) -> str:
    return f"/api/v1/datasets/{ds['id']}/documents"


def test_upload_several_files_and_download_them_unchanged(api: Api) -> None:
    ds = api.dataset("a")
    blob = os.urandom(300_000)
    docs = api.upload(ds["id"], ("report.pdf", blob), ("notes.md", b"# T\n\ntext"))
    assert [d["name"] for d in docs] == ["report.pdf", "notes.md"]
    assert all(d["run"] == "UNSTART" and d["progress"] == 0 for d in docs)
    assert docs[0]["type"] == "pdf" and docs[1]["type"] == "doc"
    assert docs[0]["size"] == len(blob) and docs[0]["suffix"] == "pdf"
    assert docs[0]["dataset_id"] == ds["id"] and docs[0]["source_type"] == "local"
    response = api.raw("GET", f"{_docs_path(ds)}/{docs[0]['id']}")
    assert response.status_code == 200
    assert response.data == blob
    assert "attachment" in response.headers["Content-Disposition"]
    assert "report.pdf" in response.headers["Content-Disposition"]
    assert api.ok("GET", f"/api/v1/datasets?id={ds['id']}")[0]["document_count"] == 2


def test_upload_picks_the_chunk_method_by_type(api: Api) -> None:
    ds = api.dataset("a")
    docs = api.upload(ds["id"], ("p.pdf", b"x"), ("s.pptx", b"x"), ("m.eml", b"x"))
    assert [d["chunk_method"] for d in docs] == ["naive", "presentation", "email"]
    assert [d["type"] for d in docs] == ["pdf", "doc", "doc"]


def test_duplicate_names_get_a_number_before_the_extension(api: Api) -> None:
    ds = api.dataset("a")
    names = [d["name"] for d in api.upload(ds["id"], ("a.txt", b"1"), ("a.txt", b"2"))]
    names += [api.upload(ds["id"], ("a.txt", b"3"))[0]["name"]]
    assert names == ["a.txt", "a(1).txt", "a(2).txt"]


def test_empty_files_are_accepted_but_not_downloadable(api: Api) -> None:
    ds = api.dataset("a")
    doc = api.upload(ds["id"], ("empty.txt", b""))[0]
    assert doc["size"] == 0
    assert api.error(102, "GET", f"{_docs_path(ds)}/{doc['id']}") == "This file is empty."


def test_path_components_in_file_names_never_become_paths(api: Api) -> None:
    ds = api.dataset("a")
    docs = api.upload(ds["id"], ("../../etc/passwd.txt", b"x"), ("/abs/dir/win.ini", b"y"))
    assert [d["name"] for d in docs] == ["passwd.txt", "win.ini"]
    assert api.inspect.stored_files(ds["id"]) == sorted(d["id"] for d in docs)
    assert not (api.data_dir.parent / "etc").exists()


@pytest.mark.parametrize(
    ("part", "code", "expected"),
    [
        (("other", "a.txt"), 101, "No file part!"),
        (("file", ""), 101, "No file selected!"),
        (
            ("file", "a" * 252 + ".txt"),
            101,
            "File name must be 255 bytes or less.",
        ),
        (
            ("file", "é" * 127 + ".txt"),
            101,
            "File name must be 255 bytes or less.",
        ),
        (
            ("file", "bad\x00.txt"),
            101,
            "File name must not contain control characters (such as NUL).",
        ),
        (
            ("file", "prog.exe"),
            500,
            "prog.exe: This type of file has not been supported yet!",
        ),
        (
            ("file", "noext"),
            500,
            "noext: This type of file has not been supported yet!",
        ),
        (("file", "../.."), 101, "No file selected!"),
    ],
)
def test_upload_errors_store_nothing(
    api: Api, part: tuple[str, str], code: int, expected: str
) -> None:
    files = {part[0]: (io.BytesIO(b"x"), part[1])}  # a new stream for each backend's run
    ds = api.dataset("a")
    assert api.error(code, "POST", _docs_path(ds), data=files) == expected
    assert api.documents(ds["id"])["total"] == 0
    assert api.inspect.stored_files(ds["id"]) == []


def test_one_unsupported_file_rejects_the_whole_upload(api: Api) -> None:
    ds = api.dataset("a")
    files = {"file": [(io.BytesIO(b"ok"), "a.txt"), (io.BytesIO(b"x"), "b.exe")]}
    assert "b.exe" in api.error(500, "POST", _docs_path(ds), data=files)
    assert api.documents(ds["id"])["total"] == 0


def test_upload_to_an_unknown_dataset(api: Api) -> None:
    other = uuid.uuid1().hex
    message = api.error(
        102,
        "POST",
        f"/api/v1/datasets/{other}/documents",
        data={"file": (io.BytesIO(b"x"), "a.txt")},
    )
    assert message == f"Can't find the dataset with ID {other}!"


def test_oversized_requests_get_an_envelope_and_store_nothing(tmp_path: Path) -> None:
    small = Api(tmp_path / "data", MAX_CONTENT_LENGTH="2048")
    ds = small.dataset("a")
    message = small.error(
        100, "POST", _docs_path(ds), data={"file": (io.BytesIO(b"x" * 4096), "big.txt")}
    )
    assert message == "<RequestEntityTooLarge '413: Request Entity Too Large'>"
    assert small.documents(ds["id"])["total"] == 0


def test_oversized_json_bodies_get_an_envelope(tmp_path: Path) -> None:
    small = Api(tmp_path / "data", MAX_CONTENT_LENGTH="2048")
    message = small.error(
        101, "POST", "/api/v1/datasets", json={"name": "x", "description": "d" * 4096}
    )
    assert message.startswith("The request body is 4") and "bytes (MAX_CONTENT_LENGTH)" in message
    assert small.ok("GET", "/api/v1/datasets") == []


def test_list_filters_and_pages(api: Api) -> None:
    ds = api.dataset("a")
    docs = api.upload(ds["id"], ("Alpha.txt", b"1"), ("beta.md", b"2"), ("gamma.txt", b"3"))
    listed = api.documents(ds["id"], "?page=1&page_size=2")
    assert listed["total"] == 3 and len(listed["docs"]) == 2
    assert [d["name"] for d in api.documents(ds["id"], "?keywords=ALP")["docs"]] == ["Alpha.txt"]
    assert api.documents(ds["id"], "?keywords=%25")["total"] == 0
    assert {d["name"] for d in api.documents(ds["id"], "?suffix=txt")["docs"]} == {
        "Alpha.txt",
        "gamma.txt",
    }
    assert api.documents(ds["id"], f"?id={docs[1]['id']}")["docs"][0]["name"] == "beta.md"
    assert api.documents(ds["id"], "?name=gamma.txt")["total"] == 1
    assert api.documents(ds["id"], "?run=UNSTART")["total"] == 3
    assert api.documents(ds["id"], "?run=DONE")["total"] == 0
    ordered = api.documents(ds["id"], "?orderby=create_time&desc=false")["docs"]
    assert [d["id"] for d in ordered] == [d["id"] for d in docs]
    first, last = docs[0]["create_time"], docs[-1]["create_time"]
    assert api.documents(ds["id"], f"?create_time_from={first}&create_time_to={last}")["total"] == 3
    assert api.documents(ds["id"], f"?create_time_from={last + 1}")["total"] == 0
    assert api.documents(ds["id"], f"?create_time_to={first - 1}")["total"] == 0


@pytest.mark.parametrize(
    ("query", "code", "expected"),
    [
        ("?id=ghost", 102, "You don't own the document ghost."),
        ("?name=ghost.txt", 102, "You don't own the document ghost.txt."),
        ("?page=abc", 101, "Field: <page> - Message: <Input should be a valid integer"),
        ("?page_size=-1", 101, "greater than or equal to 0"),
        ("?page=-1", 101, "greater than or equal to 0"),
    ],
)
def test_list_errors(api: Api, query: str, code: int, expected: str) -> None:
    ds = api.dataset("a")
    assert expected in api.error(code, "GET", f"{_docs_path(ds)}{query}")


def test_list_unknown_dataset(api: Api) -> None:
    other = uuid.uuid1().hex
    assert (
        api.error(102, "GET", f"/api/v1/datasets/{other}/documents")
        == f"You don't own the dataset {other}. "
    )


def test_update_name_meta_and_enabled(api: Api) -> None:
    ds = api.dataset("a")
    doc = api.upload(ds["id"], ("a.txt", b"x"))[0]
    path = f"{_docs_path(ds)}/{doc['id']}"
    api.add_chunk(ds["id"], doc["id"], "findable words")
    data = api.ok("PUT", path, json={"name": "b.txt", "meta_fields": {"k": "v"}, "enabled": 0})
    assert data["name"] == "b.txt" and data["meta_fields"] == {"k": "v"} and data["status"] == "0"
    assert api.documents(ds["id"], "?name=b.txt")["total"] == 1
    hits = api.ok(
        "POST", "/api/v1/retrieval", json={"question": "findable", "dataset_ids": [ds["id"]]}
    )
    assert hits["chunks"] == []  # a disabled document's chunks are not retrieved
    api.ok("PUT", path, json={"enabled": 1})
    hits = api.ok(
        "POST", "/api/v1/retrieval", json={"question": "findable", "dataset_ids": [ds["id"]]}
    )
    assert [c["document_keyword"] for c in hits["chunks"]] == ["b.txt"]


def test_update_chunk_method_resets_the_document(api: Api) -> None:
    ds = api.dataset("a")
    doc = api.upload(ds["id"], ("a.txt", b"x"))[0]
    api.add_chunk(ds["id"], doc["id"], "some content")
    data = api.ok("PUT", f"{_docs_path(ds)}/{doc['id']}", json={"chunk_method": "manual"})
    assert data["chunk_method"] == "manual" and data["run"] == "UNSTART"
    assert data["chunk_count"] == 0 and data["token_count"] == 0
    # RAGFlow merges the new method's default into the document's config
    assert data["parser_config"] == {
        **ds["parser_config"],
        "raptor": {**ds["parser_config"]["raptor"], "use_raptor": False},
        "graphrag": {**ds["parser_config"]["graphrag"], "use_graphrag": False},
    }


def test_update_parser_config_is_merged(api: Api) -> None:
    ds = api.dataset("a")
    doc = api.upload(ds["id"], ("a.txt", b"x"))[0]
    data = api.ok(
        "PUT", f"{_docs_path(ds)}/{doc['id']}", json={"parser_config": {"chunk_token_num": 64}}
    )
    assert data["parser_config"]["chunk_token_num"] == 64
    assert data["parser_config"]["delimiter"] == "\n"


@pytest.mark.parametrize(
    ("payload", "code", "expected"),
    [
        ({"name": "b.pdf"}, 101, "The extension of file can't be changed"),
        ({"name": "taken.txt"}, 102, "Duplicated document name in the same dataset."),
        ({"name": "x" * 260 + ".txt"}, 101, "File name must be 255 bytes or less."),
        ({"chunk_count": 3}, 102, "Can't change `chunk_count`."),
        ({"token_count": 3}, 102, "Can't change `token_count`."),
        ({"progress": 0.5}, 102, "Can't change `progress`."),
        ({"meta_fields": []}, 102, "meta_fields must be a dictionary"),
        ({"chunk_method": "nope"}, 102, "`chunk_method` nope doesn't exist"),
        ({"enabled": 2}, 101, "Field: <enabled> - Message: <Input should be 0 or 1>"),
    ],
)
def test_update_errors(api: Api, payload: dict[str, object], code: int, expected: str) -> None:
    ds = api.dataset("a")
    doc, _ = api.upload(ds["id"], ("a.txt", b"x"), ("taken.txt", b"y"))
    assert expected in api.error(code, "PUT", f"{_docs_path(ds)}/{doc['id']}", json=payload)
    assert api.documents(ds["id"], f"?id={doc['id']}")["docs"][0]["name"] == "a.txt"


def test_update_and_download_of_unknown_documents(api: Api) -> None:
    ds = api.dataset("a")
    other = uuid.uuid1().hex
    assert (
        api.error(102, "PUT", f"{_docs_path(ds)}/ghost", json={"name": "x"})
        == "The dataset doesn't own the document."
    )
    assert (
        api.error(102, "PUT", f"/api/v1/datasets/{other}/documents/x", json={})
        == "You don't own the dataset."
    )
    assert (
        api.error(102, "GET", f"{_docs_path(ds)}/ghost")
        == "The dataset not own the document ghost."
    )
    assert (
        api.error(102, "GET", f"/api/v1/datasets/{other}/documents/x")
        == f"You do not own the dataset {other}."
    )


def test_presentations_cannot_change_chunk_method_e_mails_can(api: Api) -> None:
    ds = api.dataset("a")
    slides, mail = api.upload(ds["id"], ("deck.pptx", b"x"), ("note.eml", b"x"))
    assert (
        api.error(102, "PUT", f"{_docs_path(ds)}/{slides['id']}", json={"chunk_method": "naive"})
        == "Not supported yet!"
    )
    changed = api.ok("PUT", f"{_docs_path(ds)}/{mail['id']}", json={"chunk_method": "naive"})
    assert changed["chunk_method"] == "naive"


def test_delete_some_and_all(api: Api) -> None:
    ds = api.dataset("a")
    docs = api.upload(ds["id"], ("a.txt", b"1"), ("b.txt", b"2"), ("c.txt", b"3"))
    api.ok("DELETE", _docs_path(ds), json={"ids": [docs[0]["id"]]})
    assert api.documents(ds["id"])["total"] == 2
    assert docs[0]["id"] not in api.inspect.stored_files(ds["id"])
    api.ok("DELETE", _docs_path(ds), json={"ids": []})
    assert api.documents(ds["id"])["total"] == 0
    assert api.inspect.stored_files(ds["id"]) == []


def test_delete_without_body_deletes_everything(api: Api) -> None:
    ds = api.dataset("a")
    api.upload(ds["id"], ("a.txt", b"1"))
    api.ok("DELETE", _docs_path(ds))
    assert api.documents(ds["id"])["total"] == 0


def test_delete_unknown_ids_deletes_the_valid_ones_then_reports(api: Api) -> None:
    ds = api.dataset("a")
    docs = api.upload(ds["id"], ("a.txt", b"1"), ("b.txt", b"2"))
    message = api.error(102, "DELETE", _docs_path(ds), json={"ids": [docs[0]["id"], "ghost"]})
    assert message == "Documents not found: ['ghost']"
    assert [d["id"] for d in api.documents(ds["id"])["docs"]] == [docs[1]["id"]]


def test_delete_duplicates_reports_partial_success(api: Api) -> None:
    ds = api.dataset("a")
    doc = api.upload(ds["id"], ("a.txt", b"1"))[0]
    body = api.call("DELETE", _docs_path(ds), json={"ids": [doc["id"], doc["id"]]})
    assert body["code"] == 0
    assert body["data"] == {"success_count": 1, "errors": [f"Duplicate document ids: {doc['id']}"]}


def test_delete_errors(api: Api) -> None:
    ds = api.dataset("a")
    assert "Input should be a valid list" in api.error(
        101, "DELETE", _docs_path(ds), json={"ids": "x"}
    )
    other = uuid.uuid1().hex
    assert (
        api.error(102, "DELETE", f"/api/v1/datasets/{other}/documents", json={})
        == f"You don't own the dataset {other}. "
    )
