"""Ingest under supervisord with the REAL bundle (HTTP upload -> queue -> api.task_executor):
an executor SIGKILLed mid-task, and PID 1 SIGTERMed mid-ingest then started again. Tasks are kept
in flight with RAGFLOW_TEST_SECTION_DELAY (seconds per parsed section, by the test-only hook in
support/slow_sections)."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

from conftest import StartBundle
from support.ragflow_client import create_dataset, start_parsing, upload
from support.supervised import SupervisedRun
from support.waiting import wait_for

SECTIONS = 40


def _text(tag: str) -> bytes:
    return "\n".join(f"{tag} line {i} with some words" for i in range(SECTIONS)).encode()


def _db(run: SupervisedRun) -> sqlite3.Connection:
    path = Path(run.env["DATA_DIR"]) / "ragflow.db"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def _rows(run: SupervisedRun, sql: str, *args: Any) -> list[sqlite3.Row]:
    conn = _db(run)
    try:
        return list(conn.execute(sql, args).fetchall())
    finally:
        conn.close()


def _leased_mid_task(run: SupervisedRun) -> sqlite3.Row | None:
    rows = _rows(
        run,
        "SELECT t.lease_owner, t.doc_id FROM tasks t JOIN documents d ON d.id = t.doc_id "
        "WHERE t.state = 'leased' AND d.progress > 0.1",
    )
    return rows[0] if rows else None


def _all_done(run: SupervisedRun, docs: list[str]) -> bool:
    marks = ",".join("?" * len(docs))
    rows = _rows(run, f"SELECT run FROM documents WHERE id IN ({marks})", *docs)
    return len(rows) == len(docs) and all(r["run"] == "3" for r in rows)


def _lost_and_duplicates(run: SupervisedRun, docs: list[str]) -> tuple[int, int]:
    marks = ",".join("?" * len(docs))
    lost = _rows(run, f"SELECT id FROM documents WHERE id IN ({marks}) AND run != '3'", *docs)
    dup = _rows(
        run,
        f"SELECT COUNT(*) - COUNT(DISTINCT doc_id || content) AS n FROM chunks "
        f"WHERE doc_id IN ({marks})",
        *docs,
    )
    counts = _rows(
        run,
        f"SELECT d.id, d.chunk_count, (SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.id) AS n "
        f"FROM documents d WHERE d.id IN ({marks})",
        *docs,
    )
    mismatched = [r["id"] for r in counts if r["chunk_count"] != r["n"] or r["n"] == 0]
    assert mismatched == [], f"chunk_count differs from the stored chunks: {mismatched}"
    return len(lost), int(dup[0]["n"])


def test_executor_sigkilled_mid_task_loses_and_duplicates_nothing(
    start_bundle: StartBundle,
) -> None:
    run = start_bundle(WS="2", TASK_LEASE_SECONDS="5", RAGFLOW_TEST_SECTION_DELAY="0.05")
    dataset = create_dataset(run.port, {"chunk_token_num": 32})
    docs = upload(run.port, dataset, {f"doc{i}.txt": _text(f"doc{i}") for i in range(4)})
    start_parsing(run.port, dataset, docs)
    victim = wait_for(lambda: _leased_mid_task(run), 30, "a task mid-flight")
    number = int(str(victim["lease_owner"]).rsplit("_", 1)[1])
    program = f"task_executor:task_executor_{number:02d}"
    started = time.monotonic()
    os.kill(run.host_pid(program), signal.SIGKILL)
    wait_for(lambda: _all_done(run, docs), 90, "every document DONE")
    took = time.monotonic() - started
    lost, duplicates = _lost_and_duplicates(run, docs)
    attempts = _rows(run, "SELECT attempts FROM tasks WHERE doc_id = ?", victim["doc_id"])
    print(
        f"SIGKILL {program} mid-task: all {len(docs)} documents DONE {took:.2f} s later; "
        f"lost={lost}, duplicate chunks={duplicates}, attempts of the killed task="
        f"{[r['attempts'] for r in attempts]}"
    )
    assert (lost, duplicates) == (0, 0)
    assert f"exited: task_executor_{number:02d} (terminated by SIGKILL" in run.stdout()
    assert max(r["attempts"] for r in attempts) >= 2


def test_sigterm_pid1_mid_ingest_then_start_again_finishes_every_document(
    start_bundle: StartBundle,
) -> None:
    run = start_bundle(WS="1", TASK_LEASE_SECONDS="5", RAGFLOW_TEST_SECTION_DELAY="0.2")
    dataset = create_dataset(run.port, {"chunk_token_num": 32})
    docs = upload(run.port, dataset, {f"ingest{i}.txt": _text(f"ingest{i}") for i in range(3)})
    start_parsing(run.port, dataset, docs)
    wait_for(lambda: _leased_mid_task(run), 30, "a task mid-flight")
    started = time.monotonic()
    os.kill(run.pid1().pid, signal.SIGTERM)
    code = run.wait_exit(40)
    stopped_after = time.monotonic() - started
    assert code == 0, run.output()
    states = [r["state"] for r in _rows(run, "SELECT state FROM tasks")]
    again = start_bundle.again(run, RAGFLOW_TEST_SECTION_DELAY="0")  # type: ignore[attr-defined]
    wait_for(lambda: _all_done(again, docs), 60, "every accepted document DONE after the restart")
    lost, duplicates = _lost_and_duplicates(again, docs)
    print(
        f"SIGTERM PID 1 mid-ingest: exit {code} after {stopped_after:.2f} s, task states at "
        f"stop {sorted(states)}; after the restart lost={lost}, duplicate chunks={duplicates}"
    )
    assert "leased" not in states  # finished or handed back, never left leased
    assert (lost, duplicates) == (0, 0)
