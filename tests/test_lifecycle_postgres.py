"""The real bundle (supervisord, Gunicorn, executors) on PostgreSQL: the server goes down in the
middle of an ingest and comes back; requests during the outage get the error envelope with 503,
never a traceback, and service resumes without restarting the bundle: every accepted document
ends DONE, with one set of chunks.

Fleets on loopback: bundles with their own DATA_DIR and supervisord share one database. A
ROLE=web bundle and a ROLE=executor bundle split the work; two ROLE=all bundles survive a web
restart, a whole bundle's SIGTERM and a frozen (SIGSTOPped) executor inside a transaction, and
every accepted document ends DONE exactly once."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
import psycopg
from conftest import StartBundle
from support.backends import PostgresInspector
from support.fleet import bundle_connections
from support.http_load import LoadGenerator
from support.postgres import PASSWORD, Cluster
from support.ragflow_client import API_KEY, create_dataset, start_parsing, upload
from support.supervised import SupervisedRun
from support.waiting import wait_for

from renderer.cli import machine_host
from shared.settings import resolve

DOCS = 6


def _get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {API_KEY}"})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def _text(tag: str, lines: int = 40) -> bytes:
    return "\n".join(f"{tag} line {i} with some words" for i in range(lines)).encode()


def _all_done_once(inspect: PostgresInspector, docs: list[str], timeout: float = 120) -> None:
    """Every document ends DONE, with one set of chunks (none lost, none twice)."""
    wait_for(
        lambda: all(inspect.document(d)["run"] == "3" for d in docs), timeout, "every document DONE"
    )
    for doc in docs:
        chunks = inspect.chunks(doc)
        contents = [c["content"] for c in chunks]
        assert chunks and len(contents) == len(set(contents)), doc
        assert inspect.document(doc)["chunk_count"] == len(chunks), doc


def _mid_task(inspect: PostgresInspector, docs: list[str], owner: str) -> dict[str, Any] | None:
    """A task of ``docs`` leased by an executor named ``owner``_N, with its document under way."""
    for doc in docs:
        task = inspect.last_task(doc)
        if (
            task["state"] == "leased"
            and str(task["lease_owner"]).startswith(f"{owner}_")
            and inspect.document(doc)["progress"] > 0.05
        ):
            return task
    return None


def _executor_pid(run: SupervisedRun, consumer: object) -> int:
    """Host pid of the executor whose consumer name is ``consumer`` (<host id>_<N>)."""
    number = int(str(consumer).rsplit("_", 1)[1])
    return run.host_pid(f"task_executor:task_executor_{number:02d}")


def _last_starter(progress_msg: str) -> str:
    """The consumer named by the document's last "Task started by <consumer>" line."""
    marker = "Task started by "
    return progress_msg.rsplit(marker, 1)[1].split(" ", 1)[0]


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
    _all_done_once(inspect, docs)
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


def test_a_web_bundle_and_an_executor_bundle_share_one_database(
    start_bundle: StartBundle, pg_database: str
) -> None:
    """ROLE=web serves the API and runs no executor; ROLE=executor, with its own DATA_DIR, runs
    only the executors and no HTTP port: it parses what was uploaded through the web bundle. One
    of its executors is killed mid-task: the other finishes the task, nothing lost, no duplicate
    chunks."""
    web = start_bundle(ROLE="web", DATABASE_URL=pg_database)
    workers = start_bundle(
        ROLE="executor",
        WS="2",
        DATABASE_URL=pg_database,
        EXECUTOR_HOST_ID="b",
        TASK_LEASE_SECONDS="5",
        RAGFLOW_TEST_SECTION_DELAY="0.05",
    )
    assert web.env["DATA_DIR"] != workers.env["DATA_DIR"]
    assert not any(name.startswith("task_executor") for name in web.states())
    assert set(workers.states()) == {"task_executor:task_executor_00",
                                     "task_executor:task_executor_01"}  # fmt: skip
    # no HTTP port on the executor bundle: no socket holder ever bound one and wrote it down
    assert workers.port_file is not None and not workers.port_file.exists()
    dataset = create_dataset(web.port, {"chunk_token_num": 32})
    docs = upload(web.port, dataset, {f"doc{i}.txt": _text(f"doc{i}") for i in range(DOCS)})
    start_parsing(web.port, dataset, docs)
    inspect = PostgresInspector(pg_database)
    victim = wait_for(lambda: _mid_task(inspect, docs, "b"), 60, "a task mid-flight on bundle B")
    os.kill(_executor_pid(workers, victim["lease_owner"]), signal.SIGKILL)
    _all_done_once(inspect, docs)
    for doc in docs:
        assert "Task started by b_" in inspect.document(doc)["progress_msg"]
    assert inspect.task(str(victim["id"]))["attempts"] >= 2
    listed = json.loads(_get(web.port, f"/api/v1/datasets/{dataset}/documents")[1])
    assert listed["data"]["total"] == DOCS
    # the executor bundle's probe (docs/fleet.md): supervisorctl status, 3 once one has stopped
    wait_for(lambda: workers.ctl("status").returncode == 0, 30, "every executor RUNNING again")
    assert workers.ctl("stop", "task_executor:task_executor_01").returncode == 0
    probe = workers.ctl("status")
    assert probe.returncode == 3 and "STOPPED" in probe.stdout, probe.stdout


def _wait_for_requests(load: LoadGenerator, requests: int) -> None:
    target = load.ok_count() + requests
    wait_for(lambda: load.ok_count() >= target, 60, f"{requests} more successful requests")


def test_restart_web_on_one_of_two_bundles_under_load_fails_no_request(
    start_bundle: StartBundle, pg_database: str
) -> None:
    """Two ROLE=all bundles ingest from one database while bundle A's API, under a bounded load
    of database reads, has its web program restarted: no request fails, every document ends
    DONE once."""
    a = start_bundle(DATABASE_URL=pg_database, EXECUTOR_HOST_ID="a", DB_POOL_SIZE="2")
    b = start_bundle(DATABASE_URL=pg_database, EXECUTOR_HOST_ID="b", DB_POOL_SIZE="2",
                     RAGFLOW_TEST_SECTION_DELAY="0.02")  # fmt: skip
    connections = ConnectionSampler(pg_database)
    dataset = create_dataset(b.port, {"chunk_token_num": 32})
    docs = upload(b.port, dataset, {f"doc{i}.txt": _text(f"doc{i}") for i in range(DOCS)})
    start_parsing(b.port, dataset, docs)
    path = f"/api/v1/datasets/{dataset}/documents"
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with LoadGenerator(a.port, path=path, clients=4, max_seconds=120, headers=auth) as load:
        _wait_for_requests(load, 100)
        result = a.ctl("restart", "web")
        _wait_for_requests(load, 100)
        outcome = load.stop()
    print(f"restart web on A: {outcome.failed} failed of {outcome.total} requests "
          f"errors={outcome.errors[:3]}")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "web: stopped" in result.stdout and "web: started" in result.stdout
    assert outcome.failed == 0, outcome.errors
    _all_done_once(PostgresInspector(pg_database), docs)
    # the sizing formula of docs/fleet.md bounds what the two bundles really opened
    most = connections.stop()
    bound = sum(bundle_connections(_values(run)) for run in (a, b))
    print(f"two bundles: at most {most} connections seen; the formula allows {bound}")
    assert 0 < most <= bound


def _values(run: SupervisedRun) -> Mapping[str, Any]:
    """The resolved settings of a running test bundle (its environment, as rendered)."""
    return resolve(run.env, {}, {"RAGFLOW_MODE": "production"}, machine_host(), lambda p: "").values


class ConnectionSampler:
    """Counts the database's client connections (other than its own) from a thread, every
    0.1 s, for at most ``max_seconds``; ``stop`` returns the highest count seen."""

    def __init__(self, url: str, max_seconds: float = 300) -> None:
        self.url = url
        self.most = 0
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND application_name LIKE 'ragflow-bundle%'"
                ).fetchone()
                self.most = max(self.most, int(row[0]) if row else 0)
                self._stop.wait(0.1)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(10)
        return self.most


def test_sigterm_to_one_of_two_bundles_mid_ingest_leaves_every_document_done(
    start_bundle: StartBundle, pg_database: str
) -> None:
    """Bundle B is stopped as a whole (SIGTERM to its PID 1) while its executors hold tasks:
    they hand them back within TASK_STOP_TIMEOUT, B exits 0, and bundle A's executors finish
    them. Every document accepted through B ends DONE once."""
    slow = {"DATABASE_URL": pg_database, "WS": "2", "RAGFLOW_TEST_SECTION_DELAY": "0.05"}
    start_bundle(EXECUTOR_HOST_ID="a", **slow)
    b = start_bundle(EXECUTOR_HOST_ID="b", TASK_STOP_TIMEOUT="1", **slow)
    dataset = create_dataset(b.port, {"chunk_token_num": 32})
    files = {f"doc{i}.txt": _text(f"doc{i}", lines=100) for i in range(DOCS)}
    docs = upload(b.port, dataset, files)
    start_parsing(b.port, dataset, docs)
    inspect = PostgresInspector(pg_database)
    wait_for(lambda: _mid_task(inspect, docs, "b"), 60, "a task mid-flight on bundle B")
    held = [
        d
        for d in docs
        if inspect.last_task(d)["state"] == "leased"
        and str(inspect.last_task(d)["lease_owner"]).startswith("b_")
        and inspect.document(d)["run"] == "1"
    ]
    b.pid1().send_signal(signal.SIGTERM)
    assert b.wait_exit(60) == 0, b.output()
    _all_done_once(inspect, docs)
    finished_by_a = [d for d in held if _last_starter(inspect.document(d)["progress_msg"])
                     .startswith("a_")]  # fmt: skip
    print(f"held by B at SIGTERM: {len(held)}; finished by A: {len(finished_by_a)}")
    assert held and finished_by_a, [inspect.document(d)["progress_msg"] for d in held]


def _backend_state(inspect: PostgresInspector, pid: int) -> str | None:
    row = inspect.conn.execute(
        "SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)
    ).fetchone()
    return None if row is None else str(row["state"])


def test_an_executor_frozen_inside_a_transaction_does_not_stop_the_others(
    start_bundle: StartBundle, pg_database: str
) -> None:
    """An executor is SIGSTOPped inside a write transaction (its progress update, held on a row
    lock the test takes, then let through): its session sits idle in transaction, holding that
    document's row. The other executors keep completing their tasks meanwhile; after SIGCONT
    every document ends DONE once."""
    run = start_bundle(DATABASE_URL=pg_database, WS="3", EXECUTOR_HOST_ID="a",
                       RAGFLOW_TEST_SECTION_DELAY="0.05")  # fmt: skip
    dataset = create_dataset(run.port, {"chunk_token_num": 32})
    (long_doc,) = upload(run.port, dataset, {"long.txt": _text("long", lines=400)})
    start_parsing(run.port, dataset, [long_doc])
    inspect = PostgresInspector(pg_database)
    task = wait_for(lambda: _mid_task(inspect, [long_doc], "a"), 60, "the long document under way")
    victim = psutil.Process(_executor_pid(run, task["lease_owner"]))
    others = upload(
        run.port, dataset, {f"short{i}.txt": _text(f"s{i}", lines=10) for i in range(8)}
    )
    start_parsing(run.port, dataset, others)
    with psycopg.connect(pg_database) as lock:  # a transaction holding the document's row
        lock.execute("SELECT id FROM documents WHERE id = %s FOR UPDATE", (long_doc,))
        blocked = wait_for(
            lambda: inspect.conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                (lock.info.backend_pid,),
            ).fetchone(),
            8,  # under the session's lock_timeout: the update is still waiting
            "the executor's progress update to wait for the row lock",
        )["pid"]
        victim.send_signal(signal.SIGSTOP)
    try:
        # the update went through, and the frozen client cannot commit: idle in transaction
        wait_for(lambda: _backend_state(inspect, blocked) == "idle in transaction", 5,
                 "the frozen executor's session idle in transaction")  # fmt: skip
        done_while_open = 0

        def others_done() -> bool:
            nonlocal done_while_open
            done = sum(1 for row in inspect.documents(others).values() if row["run"] == "3")
            if _backend_state(inspect, blocked) == "idle in transaction":
                done_while_open = max(done_while_open, done)
            return done == len(others)

        wait_for(others_done, 90, "the other executors to finish the short documents")
        assert victim.status() == psutil.STATUS_STOPPED
        print(f"documents finished while the frozen transaction was open: {done_while_open}")
        assert done_while_open >= 1
    finally:
        victim.send_signal(signal.SIGCONT)
    _all_done_once(inspect, [long_doc, *others])


def test_an_executor_bundle_exits_1_when_every_executor_is_fatal(
    start_bundle: StartBundle, pg_database: str
) -> None:
    """ROLE=executor: the executors are the whole bundle, so when all of them are FATAL the
    launcher says so in one line and exits 1 (an orchestrator restarts or reports it)."""
    run = start_bundle(
        wait=False,
        ROLE="executor",
        WS="2",
        DATABASE_URL=pg_database,
        edit=lambda text: text.replace('TASK_MAX_ATTEMPTS="3"', 'TASK_MAX_ATTEMPTS="many"'),
    )
    assert run.wait_exit(90) == 1, run.output()
    fatal = [line for line in run.stdout().splitlines() if "is FATAL" in line]
    assert len(fatal) == 1 and "task_executor is FATAL" in fatal[0], run.output()
    assert "TASK_MAX_ATTEMPTS" in fatal[0]
