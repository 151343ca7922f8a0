"""The real bundle (supervisord, Gunicorn, executors) on PostgreSQL: the server goes down in the
middle of an ingest and comes back; requests during the outage get the error envelope with 503,
never a traceback, and service resumes without restarting the bundle: every accepted document
ends DONE, with one set of chunks."""

from __future__ import annotations

import http.client
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StartBundle
from support.backends import PostgresInspector
from support.postgres import PASSWORD, Cluster, start_cluster
from support.ragflow_client import API_KEY, create_dataset, start_parsing, upload
from support.waiting import wait_for

DOCS = 6


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def _get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {API_KEY}"})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def _text(tag: str) -> bytes:
    return "\n".join(f"{tag} line {i} with some words" for i in range(40)).encode()


def test_a_postgresql_restart_mid_ingest_loses_nothing(
    start_bundle: StartBundle, own_cluster: Cluster
) -> None:
    url = own_cluster.create_database()
    run = start_bundle(
        WS="2", DATABASE_URL=url, DB_CONNECT_TIMEOUT="2", RAGFLOW_TEST_SECTION_DELAY="0.05"
    )
    dataset = create_dataset(run.port, {"chunk_token_num": 32})
    docs = upload(run.port, dataset, {f"doc{i}.txt": _text(f"doc{i}") for i in range(DOCS)})
    start_parsing(run.port, dataset, docs)
    inspect = PostgresInspector(url)
    wait_for(
        lambda: any(inspect.document(d)["progress"] > 0.1 for d in docs), 30, "ingest under way"
    )
    inspect.conn.close()
    own_cluster.shut_down()
    during = [_get(run.port, f"/api/v1/datasets/{dataset}/documents") for _ in range(5)]
    own_cluster.start_again()
    for status, body in during:  # the outage: the envelope with 503, nothing else
        assert status == 503, body
        assert "Traceback" not in body and PASSWORD not in body
        assert json.loads(body)["code"] != 0
    inspect = PostgresInspector(url)
    wait_for(
        lambda: all(inspect.document(d)["run"] == "3" for d in docs), 120, "every document DONE"
    )
    for doc in docs:
        chunks = inspect.chunks(doc)
        contents = [c["content"] for c in chunks]
        assert chunks and len(contents) == len(set(contents)), doc
        assert inspect.document(doc)["chunk_count"] == len(chunks)
    status, body = _get(run.port, f"/api/v1/datasets/{dataset}/documents")
    assert status == 200 and json.loads(body)["data"]["total"] == DOCS
    logs = (
        run.stdout()
        + run.stderr()
        + "".join(
            p.read_text(errors="replace")
            for p in Path(run.env["LOG_DIR"]).rglob("*")
            if p.is_file()
        )
    )
    assert PASSWORD not in logs


def test_two_bundles_share_one_database_upload_on_one_parse_on_the_other(
    start_bundle: StartBundle, pg_database: str
) -> None:
    """Bundle A serves the API without executors (WS=0); bundle B, with its own DATA_DIR, only
    parses: B's executors read A's uploads from the database. One of B's executors is killed
    mid-task: the other finishes its task, nothing lost, no duplicate chunks."""
    web = start_bundle(WS="0", DATABASE_URL=pg_database, EXECUTOR_HOST_ID="a")
    workers = start_bundle(
        WS="2",
        DATABASE_URL=pg_database,
        EXECUTOR_HOST_ID="b",
        TASK_LEASE_SECONDS="5",
        RAGFLOW_TEST_SECTION_DELAY="0.05",
    )
    assert web.env["DATA_DIR"] != workers.env["DATA_DIR"]
    dataset = create_dataset(web.port, {"chunk_token_num": 32})
    docs = upload(web.port, dataset, {f"doc{i}.txt": _text(f"doc{i}") for i in range(DOCS)})
    start_parsing(web.port, dataset, docs)
    inspect = PostgresInspector(pg_database)

    def mid_task() -> dict[str, object] | None:
        for doc in docs:
            task = inspect.last_task(doc)
            if task["state"] == "leased" and inspect.document(doc)["progress"] > 0.1:
                return task
        return None

    victim = wait_for(mid_task, 60, "a task mid-flight on bundle B")
    number = int(str(victim["lease_owner"]).rsplit("_", 1)[1])
    os.kill(workers.host_pid(f"task_executor:task_executor_{number:02d}"), signal.SIGKILL)
    wait_for(
        lambda: all(inspect.document(d)["run"] == "3" for d in docs), 120, "every document DONE"
    )
    for doc in docs:
        row = inspect.document(doc)
        chunks = inspect.chunks(doc)
        contents = [c["content"] for c in chunks]
        assert chunks and len(contents) == len(set(contents)) == row["chunk_count"], doc
        assert "Task started by b_" in row["progress_msg"], row["progress_msg"]
    assert inspect.task(str(victim["id"]))["attempts"] >= 2
    listed = json.loads(_get(workers.port, f"/api/v1/datasets/{dataset}/documents")[1])
    assert listed["data"]["total"] == DOCS  # B's API sees what was uploaded through A
