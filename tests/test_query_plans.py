"""Every SELECT the storage layer runs against the full-text index uses it once per query.

A chunk-list ``keywords`` filter written as a join (``chunks c JOIN chunks_fts f ON f.rowid =
c.seq WHERE ... MATCH ?``) let SQLite loop over the document's chunks and evaluate the
full-text query again for each of them: 1000 keywords on a 7,000-chunk document took minutes.
The statements are captured from the real storage calls (not copied here), then each one's
EXPLAIN QUERY PLAN is checked."""

from __future__ import annotations

import io
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.backends import SqliteStore

from api import storage
from api.storage import Page


@dataclass(frozen=True)
class PlanRow:
    id: int
    parent: int
    detail: str


def _plan(conn: sqlite3.Connection, sql: str) -> list[PlanRow]:
    return [PlanRow(r[0], r[1], r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]


def per_row_fts_scans(plan: list[PlanRow]) -> list[str]:
    """The plan lines where the FTS table is visited once per row of another loop: it is
    joined after another table's loop (a later sibling in the plan), constrained by an outer
    rowid (``=`` in FTS5's index string), or inside a correlated subquery."""
    by_id = {row.id: row for row in plan}
    bad = []
    for row in plan:
        if "VIRTUAL TABLE" not in row.detail:
            continue
        earlier = [
            r for r in plan if r.parent == row.parent and r.id < row.id and "TABLE" in r.detail
        ]
        constraint = row.detail.rsplit(":", 1)[-1] if ":" in row.detail else ""
        ancestors = []
        parent = by_id.get(row.parent)
        while parent is not None:
            ancestors.append(parent.detail)
            parent = by_id.get(parent.parent)
        if earlier or "=" in constraint or any("CORRELATED" in a for a in ancestors):
            bad.append(row.detail)
    return bad


@pytest.fixture(params=[False, True], ids=["fresh", "analyzed"])
def seeded(
    tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[SqliteStore, storage.DocumentRow]:
    store = SqliteStore(tmp_path)
    ds = store.create_dataset("t", {"name": "ds", "chunk_method": "naive", "parser_config": {}})
    doc = store.add_documents(ds, [storage.Upload("a.txt", "txt", "doc", io.BytesIO(b"x"))], "t")[0]
    words = ["alpha", "beta", "gamma", "delta", "epsilon"]
    chunks = [{"content": f"{words[i % 5]} {words[(i * 3) % 5]} chunk{i}"} for i in range(200)]
    store.replace_chunks(str(doc["id"]), chunks)
    if request.param:  # planner statistics change join orders; the plans must not depend on them
        store.conn.execute("ANALYZE")
    return store, doc


def test_the_checker_finds_the_old_per_row_join(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    doc = {"id": "d"}
    old = (
        "SELECT COUNT(*) FROM chunks c JOIN chunks_fts f ON f.rowid = c.seq"
        f" WHERE c.doc_id = '{doc['id']}' AND chunks_fts MATCH '\"alpha\" OR \"beta\"'"
    )
    assert per_row_fts_scans(_plan(store.conn, old))


def test_no_statement_scans_the_fts_table_per_row(
    seeded: tuple[SqliteStore, storage.DocumentRow],
) -> None:
    store, doc = seeded
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)  # expanded SQL: parameters inlined
    try:
        doc_id, dataset_id = str(doc["id"]), str(doc["dataset_id"])
        rows, total = store.list_chunks(doc_id, Page(1, 30), keywords="alpha beta")
        assert total == 120 and len(rows) == 30
        first = str(rows[0]["id"])
        rows, total = store.list_chunks(doc_id, Page(2, 5), keywords="gamma", chunk=first)
        assert total == 0
        assert store.search_chunks([dataset_id], [], ["alpha", "delta"], 50)
        assert store.search_chunks([dataset_id], [doc_id], ["beta"], 50)
    finally:
        store.conn.set_trace_callback(None)
    fts = [s for s in statements if "chunks_fts" in s and s.lstrip().upper().startswith("SELECT")]
    assert len(fts) >= 6, statements  # two per list_chunks (count + page), one per search
    for sql in fts:
        assert per_row_fts_scans(_plan(store.conn, sql)) == [], sql
