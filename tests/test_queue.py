"""The task queue and heartbeats: every operation and its fencing, on every backend of
support.backends (the tests taking ``backend``/``tasks``/``inspect`` are parametrized over
them), and what is particular to the SQLite backend (the tests taking ``sqlite_tasks``/``conn``:
its writer lock, transactions, full-text index, query plans and migrations)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from support import statements
from support.backends import (
    BACKENDS,
    Inspector,
    SqliteInspector,
    add_documents,
    indexed_words,
)

from api import config, storage
from api.storage import document_state, queue_sql
from api.storage.sqlite import connections as sqlite_connection
from api.storage.sqlite import schema as sqlite_schema


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture(params=sorted(BACKENDS))
def under_test(request: pytest.FixtureRequest, data_dir: Path) -> tuple[storage.Backend, Inspector]:
    return BACKENDS[request.param](data_dir, lambda: request.getfixturevalue("pg_database"))


@pytest.fixture
def backend(under_test: tuple[storage.Backend, Inspector]) -> storage.Backend:
    return under_test[0]


@pytest.fixture
def tasks(backend: storage.Backend) -> storage.TaskQueue:
    return backend.tasks


@pytest.fixture
def inspect(under_test: tuple[storage.Backend, Inspector]) -> Inspector:
    return under_test[1]


def two_docs(backend: storage.Backend) -> tuple[str, list[str]]:
    return add_documents(backend.store, "tenant", ["a.txt", "b.md"], {"chunk_token_num": 64})


# the SQLite backend's own: its task queue and this thread's connection to inspect rows
@pytest.fixture
def sqlite_tasks(data_dir: Path) -> storage.TaskQueue:
    return storage.open_backend(data_dir).tasks


@pytest.fixture
def conn(data_dir: Path, sqlite_tasks: storage.TaskQueue) -> sqlite3.Connection:
    return sqlite_connection.connection(data_dir / "ragflow.db")


CHUNKS = [{"content": "first chunk", "token_count": 2}, {"content": "second", "token_count": 1}]


def test_enqueue_resets_the_document_and_supersedes_older_tasks(
    backend: storage.Backend, tasks: storage.TaskQueue, inspect: Inspector
) -> None:
    dataset_id, (doc, _) = two_docs(backend)
    backend.store.replace_chunks(doc, [{"content": "old"}])
    first = tasks.enqueue_parse(dataset_id, [doc])
    second = tasks.enqueue_parse(dataset_id, [doc])
    row = inspect.document(doc)
    assert (row["run"], row["progress"], row["chunk_count"], row["token_count"]) == ("1", 0, 0, 0)
    assert row["process_begin_at"] is not None
    assert inspect.chunks(doc) == []
    assert inspect.task(first[0])["state"] == "cancelled"
    assert inspect.task(second[0])["state"] == "queued"
    assert tasks.depth() == {"queued": 1, "running": 0, "expired": 0}


def test_enqueue_of_a_foreign_document_changes_nothing(
    backend: storage.Backend, tasks: storage.TaskQueue, inspect: Inspector
) -> None:
    dataset_id, (doc, _) = two_docs(backend)
    with pytest.raises(LookupError, match="not in dataset"):
        tasks.enqueue_parse(dataset_id, [doc, "nope"])
    assert inspect.document(doc)["run"] == "0"
    assert tasks.depth()["queued"] == 0


def test_claim_takes_the_oldest_task_once(
    backend: storage.Backend, tasks: storage.TaskQueue, inspect: Inspector
) -> None:
    dataset_id, docs = two_docs(backend)
    tasks.enqueue_parse(dataset_id, docs)
    first = tasks.claim("c_1", 30)
    second = tasks.claim("c_2", 30)
    assert first is not None and second is not None
    assert (first.doc_id, first.suffix, first.name, first.attempts) == (docs[0], "txt", "a.txt", 1)
    assert first.parser_config == {"chunk_token_num": 64}
    assert second.doc_id == docs[1]
    assert tasks.claim("c_3", 30) is None
    assert tasks.depth() == {"queued": 0, "running": 2, "expired": 0}


def test_complete_stores_chunks_and_marks_done(
    backend: storage.Backend, tasks: storage.TaskQueue, inspect: Inspector
) -> None:
    dataset_id, (doc, _) = two_docs(backend)
    tasks.enqueue_parse(dataset_id, [doc])
    task = tasks.claim("c_1", 30)
    assert task is not None
    assert tasks.report_progress(task, 0.5, "halfway")
    assert tasks.complete(task, CHUNKS)
    row = inspect.document(doc)
    assert (row["run"], row["progress"], row["chunk_count"], row["token_count"]) == ("3", 1.0, 2, 3)
    assert row["process_duration"] > 0
    assert "halfway" in row["progress_msg"]
    assert re.search(r"Task done \(\d+\.\d\ds\)$", row["progress_msg"])
    assert [c["content"] for c in inspect.chunks(doc)] == ["first chunk", "second"]
    assert inspect.task(task.id)["state"] == "done"
    assert not tasks.complete(task, CHUNKS)  # a duplicate completion is refused


def test_complete_and_claim_takes_the_writer_lock_once(
    data_dir: Path, conn: sqlite3.Connection, sqlite_tasks: storage.TaskQueue
) -> None:
    dataset_id, (first_doc, second_doc) = two_docs(storage.open_backend(data_dir))
    sqlite_tasks.enqueue_parse(dataset_id, [first_doc, second_doc])
    task = sqlite_tasks.claim("c_1", 30)
    assert task is not None
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    completed, following = sqlite_tasks.complete_and_claim(task, CHUNKS, 30)
    conn.set_trace_callback(None)
    assert completed and following is not None
    assert statements.count("BEGIN IMMEDIATE") == 1 and statements.count("COMMIT") == 1
    assert (following.doc_id, following.lease_owner, following.attempts) == (second_doc, "c_1", 1)
    assert SqliteInspector(data_dir).task(task.id)["state"] == "done"
    assert SqliteInspector(data_dir).task(following.id)["state"] == "leased"
    inspect = SqliteInspector(data_dir)
    assert [c["content"] for c in inspect.chunks(first_doc)] == [
        "first chunk",
        "second",
    ]
    # nothing left: completed, and no next task
    assert sqlite_tasks.complete_and_claim(following, CHUNKS, 30) == (True, None)


# Round trips of one document's storage path in an executor (reading its upload, then
# complete_and_claim), as measured: 16 on PostgreSQL (15 before its chunks' BM25 columns needed
# the index's mean length, read once per transaction), 27 before its statements were folded
# (bench.executor_steps); on SQLite, calls of execute, executemany and commit: 12, 22 before.
DOCUMENT_ROUND_TRIPS = {"sqlite": 12, "postgresql": 16}


def test_a_documents_storage_path_keeps_its_statements_folded(
    request: pytest.FixtureRequest, backend: storage.Backend, tasks: storage.TaskQueue
) -> None:
    dataset_id, docs = add_documents(backend.store, "t", ["a.txt", "b.txt", "c.txt"], {})
    tasks.enqueue_parse(dataset_id, docs)
    url = request.getfixturevalue("pg_database") if backend.name == "postgresql" else ""
    with statements.counting(backend.name, url) as counting:
        task = tasks.claim("c_1", 30)
        for _ in range(2):  # the first document opens the connections
            assert task is not None
            counting.take()
            with backend.store.local_copy({"id": task.doc_id, "dataset_id": task.dataset_id}):
                completed, task = tasks.complete_and_claim(task, CHUNKS, 30)
            assert completed
        sent = counting.take()
    assert task is not None and task.doc_id == docs[2]
    assert 0 < sent["round trips"] <= DOCUMENT_ROUND_TRIPS[backend.name], sent


def test_the_counts_are_those_of_the_chunks_stored_when_an_id_is_taken(
    monkeypatch: pytest.MonkeyPatch,
    backend: storage.Backend,
    tasks: storage.TaskQueue,
    inspect: Inspector,
) -> None:
    """Two documents' chunk ids collide (chunk ids hash content and document: as good as never);
    the chunk already stored under the id is kept, and the counts are recounted from what was
    stored, not taken from the chunks given."""
    monkeypatch.setattr(document_state, "chunk_id", lambda content, doc_id: content)
    dataset_id, (first_doc, second_doc) = two_docs(backend)
    tasks.enqueue_parse(dataset_id, [first_doc, second_doc])
    for doc in (first_doc, second_doc):
        task = tasks.claim("c_1", 30)
        assert task is not None and task.doc_id == doc
        chunks = CHUNKS if doc == first_doc else [*CHUNKS, {"content": "third", "token_count": 5}]
        assert tasks.complete(task, chunks)
    row = inspect.document(second_doc)
    assert [c["content"] for c in inspect.chunks(second_doc)] == ["third"]
    assert (row["chunk_count"], row["token_count"]) == (1, 5)
    assert "1 chunks, 5 tokens." in row["progress_msg"]


def test_a_refused_completion_claims_nothing(
    backend: storage.Backend, tasks: storage.TaskQueue, inspect: Inspector
) -> None:
    dataset_id, (first_doc, second_doc) = two_docs(backend)
    tasks.enqueue_parse(dataset_id, [first_doc])
    task = tasks.claim("c_1", 30)
    assert task is not None
    tasks.enqueue_parse(dataset_id, [first_doc, second_doc])  # supersedes the claim
    assert tasks.complete_and_claim(task, CHUNKS, 30) == (False, None)
    assert tasks.depth() == {"queued": 2, "running": 0, "expired": 0}
    assert inspect.chunks(first_doc) == []


def test_an_expired_lease_is_reclaimed_and_the_old_claim_is_fenced_off(
    backend: storage.Backend, tasks: storage.TaskQueue, inspect: Inspector
) -> None:
    dataset_id, (doc, _) = two_docs(backend)
    tasks.enqueue_parse(dataset_id, [doc])
    stale = tasks.claim("c_1", 30)
    assert stale is not None
    inspect.expire(stale.id)
    assert tasks.depth()["expired"] == 1
    fresh = tasks.claim("c_2", 30)
    assert fresh is not None and fresh.id == stale.id and fresh.attempts == 2
    assert "lease of c_1 expired" in (inspect.task(fresh.id)["last_error"] or "")
    assert not tasks.renew(stale, 30)
    assert not tasks.report_progress(stale, 0.4)
    assert not tasks.complete(stale, [{"content": "from the stale claim"}])
    assert not tasks.release(stale)
    assert not tasks.fail(stale, "stale")
    assert tasks.complete(fresh, CHUNKS)
    assert [c["content"] for c in inspect.chunks(doc)] == ["first chunk", "second"]


def test_the_same_consumer_reclaiming_is_fenced_by_the_attempt(
    backend: storage.Backend, tasks: storage.TaskQueue, inspect: Inspector
) -> None:
    dataset_id, (doc, _) = two_docs(backend)
    tasks.enqueue_parse(dataset_id, [doc])
    before = tasks.claim("c_1", 30)
    assert before is not None
    inspect.expire(before.id)
    after = tasks.claim("c_1", 30)  # restarted with the same consumer id
    assert after is not None
    assert not tasks.complete(before, CHUNKS)
    assert tasks.complete(after, CHUNKS)


def test_retries_are_capped_then_the_document_fails_with_the_reason(
    backend: storage.Backend, tasks: storage.TaskQueue, inspect: Inspector
) -> None:
    dataset_id, (doc, _) = two_docs(backend)
    tasks.enqueue_parse(dataset_id, [doc])
    for attempt in (1, 2, 3):
        task = tasks.claim(f"c_{attempt}", 30, max_attempts=3)
        assert task is not None and task.attempts == attempt
        inspect.expire(task.id)
    assert task is not None
    assert tasks.claim("c_4", 30, max_attempts=3) is None
    row = inspect.document(doc)
    assert (row["run"], row["progress"]) == ("4", -1)
    last = row["progress_msg"].splitlines()[-1]
    assert last.startswith("[ERROR] Task gave up after 3 attempts")
    assert "lease of c_3 expired" in last
    assert inspect.task(task.id)["state"] == "failed"


def test_release_hands_back_without_counting_the_attempt(
    backend: storage.Backend, tasks: storage.TaskQueue, inspect: Inspector
) -> None:
    dataset_id, (doc, _) = two_docs(backend)
    tasks.enqueue_parse(dataset_id, [doc])
    task = tasks.claim("c_1", 30)
    assert task is not None
    assert tasks.report_progress(task, 0.6)
    assert tasks.release(task, "executor stopping")
    row = inspect.document(doc)
    assert (row["run"], row["progress"]) == ("1", 0)
    assert "handed back by c_1: executor stopping" in row["progress_msg"]
    assert inspect.task(task.id)["attempts"] == 0
    again = tasks.claim("c_2", 30)
    assert again is not None and again.id == task.id and again.attempts == 1


def test_fail_marks_the_document_failed(
    backend: storage.Backend, tasks: storage.TaskQueue, inspect: Inspector
) -> None:
    dataset_id, (doc, _) = two_docs(backend)
    tasks.enqueue_parse(dataset_id, [doc])
    task = tasks.claim("c_1", 30)
    assert task is not None
    assert tasks.fail(task, "the PDF cannot be read")
    row = inspect.document(doc)
    assert (row["run"], row["progress"]) == ("4", -1)
    assert row["progress_msg"].splitlines()[-1] == "[ERROR] the PDF cannot be read"
    assert tasks.claim("c_2", 30) is None


def test_cancel_stops_the_claim_and_removes_chunks(
    backend: storage.Backend, tasks: storage.TaskQueue, inspect: Inspector
) -> None:
    dataset_id, (doc, other) = two_docs(backend)
    tasks.enqueue_parse(dataset_id, [doc, other])
    task = tasks.claim("c_1", 30)
    assert task is not None and task.doc_id == doc
    assert tasks.cancel_parse(dataset_id, [doc, "unknown"]) == 1
    assert not tasks.report_progress(task, 0.5)
    assert not tasks.renew(task, 30)
    assert not tasks.complete(task, CHUNKS)
    row = inspect.document(doc)
    assert (row["run"], row["chunk_count"]) == ("2", 0)
    assert inspect.chunks(doc) == []
    assert inspect.task(task.id)["state"] == "cancelled"
    nxt = tasks.claim("c_1", 30)
    assert nxt is not None and nxt.doc_id == other  # the other document is unaffected


def test_operations_join_the_callers_transaction(
    data_dir: Path, conn: sqlite3.Connection, sqlite_tasks: storage.TaskQueue
) -> None:
    dataset_id, (doc, _) = two_docs(storage.open_backend(data_dir))
    with pytest.raises(RuntimeError), sqlite_connection.transaction(conn):
        sqlite_tasks.enqueue_parse(dataset_id, [doc])
        raise RuntimeError("the caller's transaction fails")
    assert SqliteInspector(data_dir).document(doc)["run"] == "0"
    assert sqlite_tasks.depth()["queued"] == 0


def test_heartbeats_and_stale_executors(backend: storage.Backend, inspect: Inspector) -> None:
    for consumer, state in (("h_1", "busy"), ("h_2", "stopped"), ("h_3", "idle")):
        backend.heartbeats.beat(consumer, host="h", pid=1, started_at=1.0, state=state, done=2)
    inspect.silence_executors(100, but="h_3")
    listed = {e["consumer"]: e for e in backend.heartbeats.executors(15)}
    assert {c: e["stale"] for c, e in listed.items()} == {"h_1": True, "h_2": False, "h_3": False}
    assert listed["h_1"]["done"] == 2 and listed["h_1"]["state"] == "busy"
    backend.heartbeats.beat("h_1", host="h", pid=2, started_at=2.0, state="idle")
    assert not {e["consumer"]: e for e in backend.heartbeats.executors(15)}["h_1"]["stale"]


def test_task_settings_defaults_agree_with_the_renderer() -> None:
    from shared.settings import SETTINGS

    rendered = {s.name: s.default for s in SETTINGS}
    app = config.load_task_settings({})
    assert (app.lease_seconds, app.max_attempts, app.stop_timeout) == (
        rendered["TASK_LEASE_SECONDS"],
        rendered["TASK_MAX_ATTEMPTS"],
        rendered["TASK_STOP_TIMEOUT"],
    )


def test_task_settings_from_the_environment() -> None:
    loaded = config.load_task_settings(
        {"TASK_LEASE_SECONDS": "7", "EXECUTOR_HOST_ID": "box", "TASK_HEARTBEAT_SECONDS": "2"}
    )
    assert (loaded.lease_seconds, loaded.host_id, loaded.stale_after) == (7, "box", 6.0)
    with pytest.raises(config.ConfigError, match="TASK_MAX_ATTEMPTS='0': invalid; accepted: an"):
        config.load_task_settings({"TASK_MAX_ATTEMPTS": "0"})


def test_deleting_the_document_mid_parse_ends_the_claim(
    backend: storage.Backend, tasks: storage.TaskQueue, inspect: Inspector
) -> None:
    dataset_id, (doc_id,) = add_documents(backend.store, "tenant", ["gone.txt"], {})
    tasks.enqueue_parse(dataset_id, [doc_id])
    task = tasks.claim("c_1", 30)
    assert task is not None
    backend.store.delete_documents(dataset_id, [doc_id])
    assert not tasks.report_progress(task, 0.5)
    assert not tasks.complete(task, CHUNKS)
    assert tasks.depth() == {"queued": 0, "running": 0, "expired": 0}


def test_a_broken_parser_config_does_not_wedge_the_claim(
    backend: storage.Backend, tasks: storage.TaskQueue, inspect: Inspector
) -> None:
    dataset_id, (doc, _) = two_docs(backend)
    inspect.corrupt_parser_config(doc)
    tasks.enqueue_parse(dataset_id, [doc])
    task = tasks.claim("c_1", 30)
    assert task is not None and task.parser_config == {}


def test_claims_follow_enqueue_order_and_an_expired_lease_keeps_its_place(
    backend: storage.Backend, tasks: storage.TaskQueue, inspect: Inspector
) -> None:
    dataset_id, ids = add_documents(backend.store, "t", [f"d{i}.txt" for i in range(5)], {})
    tasks.enqueue_parse(dataset_id, ids[:2])  # enqueued first, same second
    tasks.enqueue_parse(dataset_id, ids[2:])
    first = tasks.claim("c_1", 30)
    assert first is not None and first.doc_id == ids[0]
    inspect.expire(first.id)  # the oldest task is ready again, ahead of every queued one
    order = [tasks.claim(f"c_{n}", 30) for n in range(2, 7)]
    assert [t.doc_id if t else None for t in order] == ids
    assert order[0] is not None and order[0].attempts == 2
    assert tasks.claim("c_9", 30) is None


def test_complete_indexes_the_chunks_for_search_like_a_plain_insert(
    data_dir: Path, conn: sqlite3.Connection, sqlite_tasks: storage.TaskQueue
) -> None:
    dataset_id, (doc, other) = two_docs(storage.open_backend(data_dir))
    sqlite_tasks.enqueue_parse(dataset_id, [doc])
    task = sqlite_tasks.claim("c_1", 30)
    assert task is not None
    chunks = [{"content": "Café Déjà-vu, ÉLAN 42"}, {"content": "second"}]
    assert sqlite_tasks.complete(task, chunks)  # words tokenised before the write lock
    storage.open_backend(data_dir).store.replace_chunks(other, chunks)  # the trigger alone
    words = indexed_words(conn)
    owners = conn.execute("SELECT seq, doc_id FROM chunks ORDER BY seq").fetchall()
    by_doc = {d: [words[seq][0] for seq, owner in owners if owner == d] for d in (doc, other)}
    assert by_doc[doc] == by_doc[other] == ["cafe deja vu elan 42", "second"]


# --- fairness across tenants -----------------------------------------------------------


def tenant_docs(backend: storage.Backend, tenant: str, count: int) -> tuple[str, list[str]]:
    return add_documents(backend.store, tenant, [f"{tenant}{i}.txt" for i in range(count)], {})


def claim_all(tasks: storage.TaskQueue, owners: dict[str, str]) -> list[str]:
    order = []
    while (task := tasks.claim("c_1", 30)) is not None:
        order.append(owners[task.doc_id])
    return order


def test_tenants_take_turns(
    backend: storage.Backend, tasks: storage.TaskQueue, inspect: Inspector
) -> None:
    owners = {}
    for tenant, count in (("a", 5), ("b", 3), ("c", 1)):
        dataset_id, ids = tenant_docs(backend, tenant, count)
        tasks.enqueue_parse(dataset_id, ids)
        owners.update(dict.fromkeys(ids, tenant))
    assert claim_all(tasks, owners) == ["a", "b", "c", "a", "b", "a", "b", "a", "a"]


def test_a_single_document_waits_for_one_of_a_large_backlog(
    backend: storage.Backend, tasks: storage.TaskQueue, inspect: Inspector
) -> None:
    big, big_ids = tenant_docs(backend, "big", 50)
    small, (small_id,) = tenant_docs(backend, "small", 1)
    tasks.enqueue_parse(big, big_ids)
    first = tasks.claim("c_1", 30)  # in progress when the small tenant asks
    assert first is not None and first.doc_id == big_ids[0]
    tasks.enqueue_parse(small, [small_id])
    order = [t.doc_id for t in iter(lambda: tasks.claim("c_1", 30), None)]
    assert order.index(small_id) == 1  # after one more of the backlog's, not 49
    assert [i for i in order if i != small_id] == big_ids[1:]  # the backlog keeps its order


def test_a_tenant_queueing_one_at_a_time_does_not_overtake(
    backend: storage.Backend, tasks: storage.TaskQueue, inspect: Inspector
) -> None:
    patient, patient_ids = tenant_docs(backend, "patient", 4)
    eager, eager_ids = tenant_docs(backend, "eager", 4)
    tasks.enqueue_parse(patient, patient_ids)
    order = []
    for doc_id in eager_ids:  # one new document before every pair of claims
        tasks.enqueue_parse(eager, [doc_id])
        for _ in range(2):
            task = tasks.claim("c_1", 30)
            assert task is not None
            order.append("patient" if task.doc_id in patient_ids else "eager")
    assert order == ["patient", "eager"] * 4


def test_a_handed_back_task_keeps_its_turn(
    backend: storage.Backend, tasks: storage.TaskQueue, inspect: Inspector
) -> None:
    a, a_ids = tenant_docs(backend, "a", 2)
    b, b_ids = tenant_docs(backend, "b", 2)
    tasks.enqueue_parse(a, a_ids)
    tasks.enqueue_parse(b, b_ids)
    first = tasks.claim("c_1", 30)
    assert first is not None and tasks.release(first, "stopping")
    order = [t.doc_id for t in iter(lambda: tasks.claim("c_2", 30), None)]
    assert order == [a_ids[0], b_ids[0], a_ids[1], b_ids[1]]


def test_claims_and_turns_are_index_look_ups(
    conn: sqlite3.Connection, sqlite_tasks: storage.TaskQueue
) -> None:
    for sql, args in [
        (queue_sql.candidate_queries("rowid")[0], ()),
        ("SELECT MAX(turn) FROM tasks WHERE tenant_id = ? AND state = 'queued'", ("t",)),
        (
            "SELECT turn FROM tasks WHERE state = 'queued' AND lease_expires IS NULL"
            " ORDER BY turn LIMIT 1",
            (),
        ),
    ]:
        plan = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]
        assert all(step.startswith("SEARCH tasks USING") for step in plan), (sql, plan)
    # a claim's one statement: both look-ups walk the index; each finds its document by key
    claim = queue_sql.claim_query("rowid")
    plan = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {claim}", (1,))]
    searches = [step for step in plan if step.startswith(("SEARCH", "SCAN"))]
    assert searches == [
        "SEARCH tasks USING INDEX tasks_fair (state=? AND lease_expires=?)",
        "SCAN queued",
        "SEARCH d USING INDEX sqlite_autoindex_documents_1 (id=?)",
        "SEARCH tasks USING INDEX tasks_fair (state=? AND lease_expires<?)",
        "SCAN expired",
        "SEARCH d USING INDEX sqlite_autoindex_documents_1 (id=?)",
    ], plan


def test_the_migration_gives_queued_tasks_their_tenant(
    data_dir: Path,
) -> None:
    data_dir.mkdir()
    old = sqlite3.connect(data_dir / "ragflow.db")
    for statement in sqlite_schema.statements(sqlite_schema.MIGRATIONS[0]):
        old.execute(statement)
    old.execute("PRAGMA user_version = 1")
    old.execute("INSERT INTO datasets (id, tenant_id, name, create_time, update_time)"
                " VALUES ('ds', 'owner', 'n', 0, 0)")  # fmt: skip
    old.execute(
        "INSERT INTO documents (id, dataset_id, name, suffix, type, size, location, created_by,"
        " chunk_method, create_time, update_time)"
        " VALUES ('doc', 'ds', 'a.txt', 'txt', 'doc', 1, 'a.txt', 'owner', 'naive', 0, 0)"
    )
    old.execute(
        "INSERT INTO tasks (id, doc_id, dataset_id, state, enqueued_at)"
        " VALUES ('t1', 'doc', 'ds', 'queued', 1.0)"
    )
    old.commit()
    old.close()
    conn = sqlite_connection.connection(data_dir / "ragflow.db")
    assert tuple(conn.execute("SELECT tenant_id, turn FROM tasks").fetchone()) == ("owner", 0)
    task = storage.open_backend(data_dir).tasks.claim("c_1", 30)
    assert task is not None and task.id == "t1"
