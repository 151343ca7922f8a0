"""The file-type registry (api.filetypes) is the one source: upload acceptance, parser
dispatch, the error messages, the OpenAPI description and docs/file-types.md agree
with it; every accepted suffix parses to DONE with the expected chunks through real
Gunicorn and real task executor processes."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from support.api_client import Api
from support.executors import ROOT, executor_env, executors
from support.gunicorn_server import rendered_gunicorn
from support.sample_files import SAMPLES
from support.waiting import wait_for

from api import filetypes
from api.parsing.parsers import UnsupportedType

KEY = "file-types-test-key-0001"
SUFFIXES = filetypes.accepted_suffixes()
# RAGFlow v0.22.1 accepts these at upload; this server has no parser for them.
UNPARSEABLE = ("doc", "ppt", "rtf", "wps", "msg", "pages", "numbers", "key", "hlp",
               "png", "jpg", "mp3", "wav", "mp4", "exe", "noext")  # fmt: skip


def _file_name(suffix: str) -> str:
    return "noext" if suffix == "noext" else f"sample.{suffix}"


# -- the registry and everything derived from it --------------------------------------


def test_each_suffix_belongs_to_one_type_and_each_type_has_a_sample() -> None:
    suffixes = [s for t in filetypes.FILE_TYPES for s in t.suffixes]
    assert len(suffixes) == len(set(suffixes)), "a suffix is registered twice"
    assert all(s == s.lower() and "." not in s for s in suffixes)
    assert [t.name for t in filetypes.FILE_TYPES] == list(SAMPLES), (
        "tests/support/sample_files.py SAMPLES must have one sample per file type, in order"
    )
    assert all(t.parsed_into for t in filetypes.FILE_TYPES), "a parser without a docstring"


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_accepted_if_and_only_if_parseable(suffix: str) -> None:
    file_type = filetypes.for_name(f"Report.{suffix.upper()}")
    assert file_type is not None and suffix in file_type.suffixes
    assert filetypes.parser_for(suffix) is file_type.parser
    assert filetypes.parser_for(f".{suffix.upper()}") is file_type.parser


@pytest.mark.parametrize("suffix", UNPARSEABLE)
def test_unparseable_types_are_refused(suffix: str) -> None:
    assert filetypes.for_name(_file_name(suffix)) is None
    with pytest.raises(UnsupportedType) as raised:
        filetypes.parser_for(suffix)
    assert f"parsing .{suffix} files is not supported" in str(raised.value)
    assert f"(supported: {', '.join(SUFFIXES)})" in str(raised.value)


def test_the_upload_accepts_every_registered_suffix_in_one_request(api: Api) -> None:
    ds = api.dataset("all", chunk_method="naive")
    docs = api.upload(ds["id"], *((f"sample.{s}", b"x") for s in SUFFIXES))
    by_suffix = {d["name"].rsplit(".", 1)[1]: d for d in docs}
    assert sorted(by_suffix) == SUFFIXES
    for suffix, doc in by_suffix.items():
        file_type = filetypes.for_suffix(suffix)
        assert file_type is not None
        assert doc["type"] == file_type.ragflow_type, suffix
        assert doc["chunk_method"] == (file_type.chunk_method or "naive"), suffix
    assert by_suffix["pdf"]["type"] == "pdf" and by_suffix["txt"]["type"] == "doc"
    assert by_suffix["pptx"]["chunk_method"] == "presentation"
    assert by_suffix["eml"]["chunk_method"] == "email"


@pytest.mark.parametrize("suffix", UNPARSEABLE)
def test_the_upload_refuses_what_cannot_be_parsed_with_ragflows_message(
    api: Api, suffix: str
) -> None:
    ds = api.dataset("refused")
    name = _file_name(suffix)
    files = {"file": [(io.BytesIO(b"ok"), "fine.txt"), (io.BytesIO(b"x"), name)]}
    message = api.error(500, "POST", f"/api/v1/datasets/{ds['id']}/documents", data=files)
    assert message == f"{name}: This type of file has not been supported yet!"
    assert api.documents(ds["id"])["total"] == 0


def test_the_openapi_description_names_every_suffix() -> None:
    schema = filetypes.openapi_file_schema()
    assert schema["type"] == "string" and schema["format"] == "binary"
    for file_type in filetypes.FILE_TYPES:
        assert f"{file_type.name} ({', '.join(file_type.suffixes)})" in schema["description"]
    from api.openapi import document
    from api.routes.table import ROUTES

    upload = document(ROUTES)["paths"]["/api/v1/datasets/{dataset_id}/documents"]["post"]
    form = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["file"] == schema  # the served document uses the registry


def test_the_web_app_does_not_load_the_parsing_libraries() -> None:
    """The registry names the parsers; only the executors import their libraries."""
    code = (
        "import sys, api.wsgi; from api import filetypes; filetypes.for_name('a.xlsx');"
        " print(sorted(m for m in ('docx', 'openpyxl', 'pptx', 'pypdf', 'xlrd', 'PIL')"
        " if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


def test_docs_file_types_md_is_generated_from_the_registry() -> None:
    document = filetypes.DOCS_TABLE.path.read_text(encoding="utf-8")
    assert filetypes.DOCS_TABLE.applied(document) == document, (
        "docs/file-types.md is stale: run `python -m api.filetypes --update-docs`"
    )
    for suffix in SUFFIXES:
        assert f"`.{suffix}`" in document


# -- every accepted suffix, through real Gunicorn and real executors ----------------------


def _get(base: str, path: str, **params: Any) -> Any:
    response = requests.get(
        f"{base}{path}", params=params, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    )
    body = response.json()
    assert response.status_code == 200 and body["code"] == 0, body
    return body["data"]


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    """One sample file per accepted suffix, uploaded in one request and parsed by two
    executors; per suffix its final document row and its chunks' contents."""
    tmp = tmp_path_factory.mktemp("file_types")
    data_dir = tmp / "data"
    env = executor_env(data_dir, HOST_IP="127.0.0.1", HOST_PORT="0", RAGFLOW_API_KEY=KEY)
    auth = {"Authorization": f"Bearer {KEY}"}
    with executors(data_dir, [1, 2], tmp, RAGFLOW_API_KEY=KEY), rendered_gunicorn(env, tmp) as base:
        ds = requests.post(
            f"{base}/api/v1/datasets", json={"name": "file-types"}, headers=auth, timeout=10
        ).json()["data"]
        files = []
        for suffix in SUFFIXES:
            file_type = filetypes.for_suffix(suffix)
            assert file_type is not None
            files.append(("file", (f"sample.{suffix}", SAMPLES[file_type.name].data)))
        uploaded = requests.post(
            f"{base}/api/v1/datasets/{ds['id']}/documents", files=files, headers=auth, timeout=30
        ).json()
        assert uploaded["code"] == 0, uploaded
        ids = [d["id"] for d in uploaded["data"]]
        started = requests.post(
            f"{base}/api/v1/datasets/{ds['id']}/chunks",
            json={"document_ids": ids},
            headers=auth,
            timeout=10,
        ).json()
        assert started["code"] == 0, started

        def all_finished() -> list[dict[str, Any]] | None:
            docs = _get(base, f"/api/v1/datasets/{ds['id']}/documents", page_size=len(ids))
            done = all(d["run"] in ("DONE", "FAIL", "CANCEL") for d in docs["docs"])
            return docs["docs"] if done and len(docs["docs"]) == len(ids) else None

        docs = wait_for(all_finished, 120, f"{len(ids)} documents to finish parsing")
        result: dict[str, dict[str, Any]] = {}
        for doc in docs:
            chunks = _get(
                base, f"/api/v1/datasets/{ds['id']}/documents/{doc['id']}/chunks", page_size=100
            )["chunks"]
            result[doc["name"].rsplit(".", 1)[1]] = {
                "doc": doc,
                "chunks": [c["content"] for c in chunks],
            }
        yield result


@pytest.mark.timeout(300)
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_every_accepted_suffix_parses_to_done_with_the_expected_chunks(
    parsed: dict[str, dict[str, Any]], suffix: str
) -> None:
    file_type = filetypes.for_suffix(suffix)
    assert file_type is not None
    doc, chunks = parsed[suffix]["doc"], parsed[suffix]["chunks"]
    assert doc["run"] == "DONE", doc["progress_msg"]
    assert chunks == SAMPLES[file_type.name].chunks
    assert doc["chunk_count"] == len(chunks) and doc["token_count"] > 0
