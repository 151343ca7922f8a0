"""End to end: real Gunicorn (the rendered gunicorn.conf.py) on a free loopback port, driven
by RAGFlow's own client, ragflow-sdk 0.22.1, unchanged."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ragflow_sdk import RAGFlow
from support.backends import BACKENDS
from support.executors import DATABASES, executors, use_database
from support.gunicorn_server import rendered_gunicorn
from support.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
KEY = "e2e-test-key-000001"


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def server_env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The server's and its executors' environment, on each backend (PostgreSQL: a fresh
    database of the session's cluster)."""
    tmp = tmp_path_factory.mktemp("e2e")
    database = {}
    if request.param != "sqlite":
        database["DATABASE_URL"] = request.getfixturevalue("pg_cluster").create_database()
        use_database(tmp / "data", database["DATABASE_URL"])
    yield {
        **os.environ,
        **database,
        "HOST_IP": "127.0.0.1",
        "HOST_PORT": "0",
        "DATA_DIR": str(tmp / "data"),
        "GUNICORN_WORKERS": "2",
        "RAGFLOW_API_KEY": KEY,
        "PYTHONPATH": str(ROOT),
        "E2E_TMP": str(tmp),
    }
    DATABASES.pop(tmp / "data", None)


@pytest.fixture(scope="module")
def server(server_env: dict[str, str]) -> Iterator[str]:
    with rendered_gunicorn(server_env, Path(server_env["E2E_TMP"])) as base:
        yield base


@pytest.fixture
def rag(server: str) -> RAGFlow:
    return RAGFlow(api_key=KEY, base_url=server)


def test_datasets(rag: RAGFlow) -> None:
    created = rag.create_dataset(name="e2e datasets", description="first")
    assert created.id and created.name == "e2e datasets" and created.chunk_method == "naive"
    assert created.parser_config.chunk_token_num == 512
    again = rag.create_dataset(name="E2E datasets")
    assert again.name == "E2E datasets(1)"
    listed = rag.list_datasets(page_size=100)
    assert {created.id, again.id} <= {d.id for d in listed}
    assert rag.get_dataset(name="e2e datasets").id == created.id
    assert [d.id for d in rag.list_datasets(id=created.id)] == [created.id]
    created.update({"name": "renamed", "description": "second", "chunk_method": "manual"})
    assert created.name == "renamed" and created.chunk_method == "manual"
    fresh = rag.list_datasets(id=created.id)[0]
    assert fresh.name == "renamed" and fresh.description == "second"
    with pytest.raises(Exception, match="already exists"):
        again.update({"name": "RENAMED"})
    with pytest.raises(Exception, match="lacks permission"):
        rag.list_datasets(name="no such dataset")
    rag.delete_datasets(ids=[created.id, again.id])
    assert not {created.id, again.id} & {d.id for d in rag.list_datasets(page_size=100)}


def test_bad_key_is_refused(server: str) -> None:
    with pytest.raises(Exception, match="API key is invalid"):
        RAGFlow(api_key="wrong", base_url=server).list_datasets()


def test_documents_chunks_and_retrieval(rag: RAGFlow) -> None:
    ds = rag.create_dataset(name="e2e documents")
    blob = os.urandom(200_000)
    docs = ds.upload_documents(
        [
            {"display_name": "guide.txt", "blob": b"Solar panels convert sunlight."},
            {"display_name": "data.pdf", "blob": blob},
        ]
    )
    assert [d.name for d in docs] == ["guide.txt", "data.pdf"]
    assert all(d.run == "UNSTART" for d in docs)
    guide, pdf = docs
    assert pdf.download() == blob
    assert guide.download() == b"Solar panels convert sunlight."
    assert {d.id for d in ds.list_documents()} == {guide.id, pdf.id}
    assert [d.id for d in ds.list_documents(keywords="GUIDE")] == [guide.id]
    guide.update({"name": "manual.txt", "meta_fields": {"team": "energy"}})
    assert guide.name == "manual.txt"
    listed = ds.list_documents(id=guide.id)[0]
    assert listed.name == "manual.txt" and listed.meta_fields.team == "energy"

    first = guide.add_chunk(
        content="Wind turbines spin in the breeze.", important_keywords=["wind"]
    )
    second = guide.add_chunk(content="Solar panels convert sunlight to power.")
    assert {c.id for c in guide.list_chunks()} == {first.id, second.id}
    assert [c.id for c in guide.list_chunks(keywords="turbines")] == [first.id]
    first.update({"content": "Wind turbines turn in strong wind.", "available": True})
    assert guide.list_chunks(id=first.id)[0].content == "Wind turbines turn in strong wind."

    hits = rag.retrieve(dataset_ids=[ds.id], question="solar sunlight")
    assert [c.id for c in hits] == [second.id]
    assert 0.2 <= hits[0].similarity <= 1 and hits[0].document_id == guide.id
    assert rag.retrieve(dataset_ids=[ds.id], document_ids=[pdf.id], question="solar") == []

    guide.delete_chunks(ids=[first.id])
    assert [c.id for c in guide.list_chunks()] == [second.id]
    guide.delete_chunks()
    assert guide.list_chunks() == []
    ds.delete_documents(ids=[pdf.id])
    assert [d.id for d in ds.list_documents()] == [guide.id]
    ds.delete_documents()
    assert ds.list_documents() == []
    rag.delete_datasets(ids=[ds.id])


def test_content_added_again_counts_and_unread_keys_are_ignored(rag: RAGFlow) -> None:
    """RAGFlow's add_chunk replaces a chunk of the same content and still counts one more;
    its update handlers ignore keys they do not read (the SDK sends update dicts as given)."""
    ds = rag.create_dataset(name="e2e counts")
    (doc,) = ds.upload_documents([{"display_name": "notes.txt", "blob": b"notes"}])
    first = doc.add_chunk(content="Tides follow the moon.", important_keywords=["tide"])
    again = doc.add_chunk(content="Tides follow the moon.")
    assert again.id == first.id and again.important_keywords == []
    assert [c.id for c in doc.list_chunks()] == [first.id]
    assert ds.list_documents(id=doc.id)[0].chunk_count == 2
    assert rag.list_datasets(id=ds.id)[0].chunk_count == 2
    again.update({"content": "Tides follow the moon and the sun.", "color": "blue"})
    assert doc.list_chunks()[0].content == "Tides follow the moon and the sun."
    doc.update({"name": "tides.txt", "color": "blue"})
    assert doc.name == "tides.txt" and ds.list_documents(id=doc.id)[0].name == "tides.txt"
    doc.delete_chunks(ids=[first.id])
    assert doc.list_chunks() == [] and ds.list_documents(id=doc.id)[0].chunk_count == 1
    rag.delete_datasets(ids=[ds.id])


def test_parse_start_and_stop(rag: RAGFlow) -> None:
    ds = rag.create_dataset(name="e2e parse")
    (doc,) = ds.upload_documents([{"display_name": "p.txt", "blob": b"one\ntwo\nthree"}])
    ds.async_parse_documents([doc.id])
    assert ds.list_documents(id=doc.id)[0].run == "RUNNING"  # no executor runs in this test
    ds.async_cancel_parse_documents([doc.id])
    assert ds.list_documents(id=doc.id)[0].run == "CANCEL"
    rag.delete_datasets(ids=[ds.id])


@pytest.fixture
def executor(server: str, server_env: dict[str, str]) -> Iterator[None]:
    """One real task executor process on the server's DATA_DIR, for this test only."""
    tmp = Path(server_env["E2E_TMP"])
    with executors(Path(server_env["DATA_DIR"]), [0], tmp, RAGFLOW_API_KEY=KEY):
        yield
    assert "Traceback" not in (tmp / "executor_0.log").read_text(errors="replace")


def test_parse_round_trip(rag: RAGFlow, executor: None) -> None:
    ds = rag.create_dataset(name="e2e round trip", parser_config=None)
    text = b"Tidal power uses the rise and fall of the sea.\nGeothermal heat comes from the earth."
    (doc,) = ds.upload_documents([{"display_name": "energy.txt", "blob": text}])
    ds.async_parse_documents([doc.id])

    def finished() -> Any:
        state = ds.list_documents(id=doc.id)[0]
        return state if state.run in ("DONE", "FAIL", "CANCEL") else None

    state = wait_for(finished, timeout=60, what="the executor to parse the document")
    assert state.run == "DONE", state.progress_msg
    assert state.progress == 1.0 and state.chunk_count >= 1 and state.token_count > 0
    assert "Task done (" in state.progress_msg and state.process_duration > 0
    contents = " ".join(c.content for c in doc.list_chunks())
    assert "Tidal power" in contents and "Geothermal" in contents
    hits = rag.retrieve(dataset_ids=[ds.id], question="tidal sea")
    assert hits and hits[0].document_id == doc.id
    assert rag.list_datasets(id=ds.id)[0].chunk_count == state.chunk_count
    rag.delete_datasets(ids=[ds.id])
