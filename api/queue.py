"""Durable parse-task queue with leases, plus task-executor heartbeats.

Every operation runs in one SQLite transaction on the ``tasks``, ``documents``
and ``executors`` tables that ``api.storage`` creates (docs/architecture.md).
A task is claimed with a lease (visibility timeout). The claimer renews it
while working; when the lease runs out (the executor died), any executor may
claim the task again. Tenants take turns (see _next_turn), so one tenant's
backlog cannot hold back another's documents. ``(lease_owner, attempts)`` is the
fencing token: only the claim that is still current may report progress,
complete, fail or release, so a retried or duplicated task leaves exactly one set
of chunks.

Each function takes an optional ``conn``; without it the calling thread's own
storage connection (``api.storage.get_connection()``) is used. Functions that
write run in ``api.storage.transaction`` (BEGIN IMMEDIATE, or a savepoint when
the caller already has a transaction open).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from api import storage

# documents.run values (RAGFlow's TaskStatus)
RUN_UNSTART = "0"
RUN_RUNNING = "1"
RUN_CANCEL = "2"
RUN_DONE = "3"
RUN_FAIL = "4"


@dataclass(frozen=True)
class Task:
    """A claimed task plus what the executor needs to parse its document."""

    id: str
    doc_id: str
    dataset_id: str
    attempts: int
    lease_owner: str
    lease_expires: float
    name: str
    suffix: str
    chunk_method: str
    parser_config: dict[str, Any]


def _connection(conn: sqlite3.Connection | None) -> sqlite3.Connection:
    return conn if conn is not None else storage.get_connection()


def _remove_chunks(conn: sqlite3.Connection, doc_id: str) -> None:
    storage.replace_document_chunks(conn, doc_id, [])


def _append_msg(old: str, line: str) -> str:
    return f"{old}\n{line}" if old else line


def _doc_msg(conn: sqlite3.Connection, doc_id: str) -> str:
    row = conn.execute("SELECT progress_msg FROM documents WHERE id = ?", (doc_id,)).fetchone()
    return str(row[0] or "") if row else ""


def _stamp(now: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(now))


def enqueue_parse(
    dataset_id: str, doc_ids: Sequence[str], *, conn: sqlite3.Connection | None = None
) -> list[str]:
    """Reset each document (RUNNING, progress 0, counts 0, chunks removed), cancel
    its older tasks and queue one new task. Returns the new task ids, in order.
    Documents not in ``dataset_id`` raise ``LookupError`` and nothing changes."""
    c = _connection(conn)
    now = time.time()
    task_ids: list[str] = []
    with storage.transaction(c):
        owner = c.execute("SELECT tenant_id FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
        tenant_id = str(owner[0]) if owner is not None else ""
        for doc_id in doc_ids:
            found = c.execute(
                "SELECT 1 FROM documents WHERE id = ? AND dataset_id = ?", (doc_id, dataset_id)
            ).fetchone()
            if found is None:
                raise LookupError(f"Document {doc_id} is not in dataset {dataset_id}")
            c.execute(
                "UPDATE tasks SET state = 'cancelled', finished_at = ?, lease_owner = NULL,"
                " lease_expires = NULL, last_error = 'superseded by a new parse request'"
                " WHERE doc_id = ? AND state IN ('queued', 'leased')",
                (now, doc_id),
            )
            _remove_chunks(c, doc_id)
            c.execute(
                "UPDATE documents SET run = ?, progress = 0, progress_msg = ?,"
                " process_begin_at = ?, process_duration = 0, chunk_count = 0, token_count = 0,"
                " update_time = ? WHERE id = ?",
                (RUN_RUNNING, f"{_stamp(now)} Task queued.", now, int(now * 1000), doc_id),
            )
            task_id = uuid.uuid1().hex
            c.execute(
                "INSERT INTO tasks (id, doc_id, dataset_id, tenant_id, turn, state, attempts,"
                " enqueued_at) VALUES (?, ?, ?, ?, ?, 'queued', 0, ?)",
                (task_id, doc_id, dataset_id, tenant_id, _next_turn(c, tenant_id), now),
            )
            task_ids.append(task_id)
    return task_ids


def _next_turn(c: sqlite3.Connection, tenant_id: str) -> int:
    """The turn of a task the tenant queues now: one after its last queued task, and never
    before the lowest turn still queued. Claims take the lowest turn first (ties: the oldest
    first), so a tenant with one document waits for at most one queued document of each
    other tenant, however many they have queued; and a tenant that keeps queueing one
    document at a time alternates with the others instead of overtaking them. Two index
    look-ups (tasks_tenant_turn, tasks_fair)."""
    last = c.execute(
        "SELECT MAX(turn) FROM tasks WHERE tenant_id = ? AND state = 'queued'", (tenant_id,)
    ).fetchone()[0]
    lowest = c.execute(
        "SELECT turn FROM tasks WHERE state = 'queued' AND lease_expires IS NULL"
        " ORDER BY turn LIMIT 1"
    ).fetchone()
    return max(int(last or 0) + 1, int(lowest[0]) if lowest is not None else 1)


def cancel_parse(
    dataset_id: str, doc_ids: Sequence[str], *, conn: sqlite3.Connection | None = None
) -> int:
    """Cancel parsing: documents become CANCEL with no chunks, their open tasks
    are cancelled (a running executor notices at its next check). Returns the
    number of documents changed."""
    c = _connection(conn)
    now = time.time()
    changed = 0
    with storage.transaction(c):
        for doc_id in doc_ids:
            found = c.execute(
                "SELECT progress_msg FROM documents WHERE id = ? AND dataset_id = ?",
                (doc_id, dataset_id),
            ).fetchone()
            if found is None:
                continue
            c.execute(
                "UPDATE tasks SET state = 'cancelled', finished_at = ?, lease_owner = NULL,"
                " lease_expires = NULL, last_error = 'cancelled'"
                " WHERE doc_id = ? AND state IN ('queued', 'leased')",
                (now, doc_id),
            )
            _remove_chunks(c, doc_id)
            c.execute(
                "UPDATE documents SET run = ?, progress = 0, chunk_count = 0, token_count = 0,"
                " progress_msg = ?, update_time = ? WHERE id = ?",
                (
                    RUN_CANCEL,
                    _append_msg(str(found[0] or ""), f"{_stamp(now)} Task cancelled."),
                    int(now * 1000),
                    doc_id,
                ),
            )
            changed += 1
    return changed


def _give_up(c: sqlite3.Connection, row: tuple[Any, ...], now: float) -> None:
    task_id, doc_id, attempts, last_error = row[0], row[1], row[3], row[4]
    reason = (
        f"gave up after {attempts - 1} attempts"
        f" (last: {last_error or 'the executor stopped before finishing'})"
    )
    c.execute(
        "UPDATE tasks SET state = 'failed', attempts = ?, lease_owner = NULL,"
        " lease_expires = NULL, finished_at = ?, last_error = ? WHERE id = ?",
        (attempts - 1, now, reason, task_id),
    )
    _remove_chunks(c, doc_id)
    c.execute(
        "UPDATE documents SET run = ?, progress = -1, progress_msg = ?, update_time = ?"
        " WHERE id = ?",
        (
            RUN_FAIL,
            _append_msg(_doc_msg(c, doc_id), f"[ERROR] Task {reason}"),
            int(now * 1000),
            doc_id,
        ),
    )


_READY = "(state = 'queued' OR (state = 'leased' AND lease_expires < ?))"
_CANDIDATE = (
    "SELECT id, doc_id, dataset_id, attempts + 1, last_error, state, lease_owner,"
    " enqueued_at, rowid, turn FROM tasks"
)
# A queued task never has a lease_expires (every path that queues one clears it), so the
# queued look-up walks the tasks_fair index in (turn, enqueued_at, rowid) order and stops
# at the first row: a claim costs the same with 10 or 10,000 tasks queued (one OR query
# sorted the whole queue each time, inside the write lock). Leased tasks with an expired
# lease are few (one per executor that died) and sorted.
_FIRST_QUEUED = (
    f"{_CANDIDATE} WHERE state = 'queued' AND lease_expires IS NULL"
    " ORDER BY turn, enqueued_at, rowid LIMIT 1"
)
_FIRST_EXPIRED = (
    f"{_CANDIDATE} WHERE state = 'leased' AND lease_expires < ?"
    " ORDER BY turn, enqueued_at, rowid LIMIT 1"
)


def _next_ready(c: sqlite3.Connection, now: float) -> Any:
    """The task to claim next (queued, or leased with the lease run out): the lowest turn,
    then the oldest (see _next_turn)."""
    found = [
        row
        for row in (
            c.execute(_FIRST_QUEUED).fetchone(),
            c.execute(_FIRST_EXPIRED, (now,)).fetchone(),
        )
        if row is not None
    ]
    return min(found, key=lambda row: (row[9], row[7], row[8])) if found else None


def claim(
    consumer: str,
    lease_seconds: float,
    *,
    max_attempts: int = 3,
    conn: sqlite3.Connection | None = None,
) -> Task | None:
    """Lease the next ready task (queued, or leased with its lease expired): tenants take
    turns, each tenant's tasks in the order they were queued (_next_turn).

    The claim counts as an attempt; a task whose next attempt would exceed
    ``max_attempts`` is failed instead (document FAIL with the reason) and the
    next candidate is tried. Returns None when nothing is ready."""
    c = _connection(conn)
    now = time.time()
    ready = c.execute(f"SELECT 1 FROM tasks WHERE {_READY} LIMIT 1", (now,)).fetchone()
    if ready is None:  # the idle poll stays a cheap read: no write lock taken
        return None
    with storage.transaction(c):
        while True:
            row = _next_ready(c, now)
            if row is None:
                return None
            if row[5] == "leased":
                row = (*row[:4], f"the lease of {row[6]} expired before it finished")
            if row[3] > max_attempts:
                _give_up(c, row, now)
                continue
            task_id, doc_id, dataset_id, attempts = row[0], row[1], row[2], row[3]
            expires = now + lease_seconds
            c.execute(
                "UPDATE tasks SET state = 'leased', attempts = ?, lease_owner = ?,"
                " lease_expires = ?, started_at = ?, last_error = ? WHERE id = ?",
                (attempts, consumer, expires, now, row[4], task_id),
            )
            doc = c.execute(
                "SELECT name, suffix, chunk_method, parser_config, progress_msg FROM documents"
                " WHERE id = ?",
                (doc_id,),
            ).fetchone()
            c.execute(
                "UPDATE documents SET run = ?, progress = 0, progress_msg = ?,"
                " process_begin_at = COALESCE(process_begin_at, ?) WHERE id = ?",
                (
                    RUN_RUNNING,
                    _append_msg(
                        str(doc[4] or ""),
                        f"{_stamp(now)} Task started by {consumer} (attempt {attempts}).",
                    ),
                    now,
                    doc_id,
                ),
            )
            try:
                config = json.loads(doc[3]) if doc[3] else {}
            except ValueError:  # a broken config must not wedge the claim loop
                config = {}
            return Task(
                id=task_id,
                doc_id=doc_id,
                dataset_id=dataset_id,
                attempts=attempts,
                lease_owner=consumer,
                lease_expires=expires,
                name=str(doc[0] or ""),
                suffix=str(doc[1] or ""),
                chunk_method=str(doc[2] or "naive"),
                parser_config=config if isinstance(config, dict) else {},
            )


_OWNED = "id = ? AND state = 'leased' AND lease_owner = ? AND attempts = ?"


def _owned(task: Task) -> tuple[str, str, int]:
    return (task.id, task.lease_owner, task.attempts)


def renew(task: Task, lease_seconds: float, *, conn: sqlite3.Connection | None = None) -> bool:
    """Extend the lease. False when the claim is no longer current (cancelled,
    superseded, or reclaimed by another executor after the lease ran out)."""
    c = _connection(conn)
    with storage.transaction(c):
        cur = c.execute(
            f"UPDATE tasks SET lease_expires = ? WHERE {_OWNED}",
            (time.time() + lease_seconds, *_owned(task)),
        )
        return cur.rowcount == 1


def report_progress(
    task: Task, progress: float, message: str = "", *, conn: sqlite3.Connection | None = None
) -> bool:
    """Set the document's progress (0..1) and append ``message`` to its
    progress_msg, only while the claim is current. False means stop working."""
    c = _connection(conn)
    with storage.transaction(c):
        if c.execute(f"SELECT 1 FROM tasks WHERE {_OWNED}", _owned(task)).fetchone() is None:
            return False
        if message:
            msg = _append_msg(_doc_msg(c, task.doc_id), f"{_stamp(time.time())} {message}")
            c.execute(
                "UPDATE documents SET progress = ?, progress_msg = ? WHERE id = ?",
                (progress, msg, task.doc_id),
            )
        else:
            c.execute("UPDATE documents SET progress = ? WHERE id = ?", (progress, task.doc_id))
        return True


def complete(
    task: Task,
    chunks: Sequence[Mapping[str, Any]],
    *,
    conn: sqlite3.Connection | None = None,
) -> bool:
    """Atomically replace the document's chunks with ``chunks`` and mark it DONE
    (progress 1.0, process_duration, ``Task done (X.XXs)``). False, with nothing
    changed, when the claim is no longer current."""
    c = _connection(conn)
    now = time.time()
    contents = [str(chunk.get("content", "")) for chunk in chunks]
    with storage.words_prepared(contents), storage.transaction(c):
        row = c.execute(f"SELECT started_at FROM tasks WHERE {_OWNED}", _owned(task)).fetchone()
        if row is None:
            return False
        begin = c.execute(
            "SELECT process_begin_at FROM documents WHERE id = ?", (task.doc_id,)
        ).fetchone()
        chunk_count, token_count = storage.replace_document_chunks(c, task.doc_id, chunks)
        duration = max(now - float(row[0] or now), 0.0)
        total = max(now - float(begin[0] if begin and begin[0] is not None else row[0] or now), 0)
        msg = _append_msg(
            _doc_msg(c, task.doc_id),
            f"{_stamp(now)} {chunk_count} chunks, {token_count} tokens."
            f" Task done ({duration:.2f}s)",
        )
        c.execute(
            "UPDATE documents SET run = ?, progress = 1.0, progress_msg = ?,"
            " process_duration = ?, chunk_count = ?, token_count = ?, update_time = ?"
            " WHERE id = ?",
            (
                RUN_DONE,
                msg,
                max(total, 0.001),
                chunk_count,
                token_count,
                int(now * 1000),
                task.doc_id,
            ),
        )
        c.execute(
            "UPDATE tasks SET state = 'done', finished_at = ?, lease_owner = NULL,"
            " lease_expires = NULL WHERE id = ?",
            (now, task.id),
        )
        return True


def complete_and_claim(
    task: Task,
    chunks: Sequence[Mapping[str, Any]],
    lease_seconds: float,
    *,
    max_attempts: int = 3,
    conn: sqlite3.Connection | None = None,
) -> tuple[bool, Task | None]:
    """``complete(task)``, then ``claim()`` the next task for the same consumer in the same
    write transaction: a busy executor takes the writer lock once per document, not twice.

    Returns (completed, next task or None). Nothing is claimed when the completion is
    refused, and a failing claim never undoes the completion (it rolls back to a savepoint
    and the caller claims again the usual way)."""
    c = _connection(conn)
    contents = [str(chunk.get("content", "")) for chunk in chunks]
    with storage.words_prepared(contents), storage.transaction(c):
        if not complete(task, chunks, conn=c):
            return False, None
        try:
            return True, claim(task.lease_owner, lease_seconds, max_attempts=max_attempts, conn=c)
        except sqlite3.Error:
            return True, None


def fail(task: Task, error: str, *, conn: sqlite3.Connection | None = None) -> bool:
    """End the task for good: the document becomes FAIL, progress -1, with
    ``[ERROR] <error>`` appended. False when the claim is no longer current."""
    c = _connection(conn)
    now = time.time()
    with storage.transaction(c):
        cur = c.execute(
            "UPDATE tasks SET state = 'failed', finished_at = ?, lease_owner = NULL,"
            f" lease_expires = NULL, last_error = ? WHERE {_OWNED}",
            (now, error, *_owned(task)),
        )
        if cur.rowcount != 1:
            return False
        _remove_chunks(c, task.doc_id)
        c.execute(
            "UPDATE documents SET run = ?, progress = -1, progress_msg = ?, chunk_count = 0,"
            " token_count = 0, update_time = ? WHERE id = ?",
            (
                RUN_FAIL,
                _append_msg(_doc_msg(c, task.doc_id), f"[ERROR] {error}"),
                int(now * 1000),
                task.doc_id,
            ),
        )
        return True


def release(
    task: Task,
    reason: str = "",
    *,
    count_attempt: bool = False,
    conn: sqlite3.Connection | None = None,
) -> bool:
    """Hand the task back (executor stopping): queued again, lease cleared, the
    attempt not counted (``count_attempt``: counted, for a task that may be the reason the
    executor has to stop), document progress reset. False when no longer ours."""
    c = _connection(conn)
    now = time.time()
    attempts = "attempts" if count_attempt else "MAX(attempts - 1, 0)"
    with storage.transaction(c):
        cur = c.execute(
            "UPDATE tasks SET state = 'queued', lease_owner = NULL, lease_expires = NULL,"
            f" attempts = {attempts} WHERE {_OWNED}",
            _owned(task),
        )
        if cur.rowcount != 1:
            return False
        note = f"Task handed back by {task.lease_owner}" + (f": {reason}" if reason else ".")
        c.execute(
            "UPDATE documents SET progress = 0, progress_msg = ? WHERE id = ?",
            (_append_msg(_doc_msg(c, task.doc_id), f"{_stamp(now)} {note}"), task.doc_id),
        )
        return True


def heartbeat(
    consumer: str,
    *,
    host: str,
    pid: int,
    started_at: float,
    state: str,
    current_task: str | None = None,
    done: int = 0,
    failed: int = 0,
    conn: sqlite3.Connection | None = None,
) -> None:
    """Record an executor's liveness (upsert into ``executors``)."""
    c = _connection(conn)
    with storage.transaction(c):
        c.execute(
            "INSERT INTO executors"
            " (consumer, host, pid, current_task, done, failed, started_at, last_beat, state)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (consumer) DO UPDATE SET host = excluded.host, pid = excluded.pid,"
            " current_task = excluded.current_task, done = excluded.done,"
            " failed = excluded.failed, started_at = excluded.started_at,"
            " last_beat = excluded.last_beat, state = excluded.state",
            (consumer, host, pid, current_task, done, failed, started_at, time.time(), state),
        )


def queue_depth(*, conn: sqlite3.Connection | None = None) -> dict[str, int]:
    """Counts of open tasks: ``queued`` (waiting), ``running`` (leased, lease
    valid) and ``expired`` (leased, lease ran out: waiting for another executor)."""
    c = _connection(conn)
    now = time.time()
    row = c.execute(
        "SELECT"
        " COALESCE(SUM(state = 'queued'), 0),"
        " COALESCE(SUM(state = 'leased' AND lease_expires >= ?), 0),"
        " COALESCE(SUM(state = 'leased' AND lease_expires < ?), 0)"
        " FROM tasks WHERE state IN ('queued', 'leased')",
        (now, now),
    ).fetchone()
    return {"queued": int(row[0]), "running": int(row[1]), "expired": int(row[2])}


def oldest_pending_age(*, conn: sqlite3.Connection | None = None) -> float:
    """Seconds the oldest task waiting for an executor (queued, or leased with its lease run
    out) has waited since it was enqueued; 0 when none waits."""
    c = _connection(conn)
    now = time.time()
    row = c.execute(f"SELECT MIN(enqueued_at) FROM tasks WHERE {_READY}", (now,)).fetchone()
    return max(0.0, now - float(row[0])) if row and row[0] is not None else 0.0


def list_executors(
    stale_after: float = 15.0, *, conn: sqlite3.Connection | None = None
) -> list[dict[str, Any]]:
    """Every executor that ever beat, with ``stale`` true when a running one has
    not beaten for ``stale_after`` seconds (dead or hung). A cleanly stopped
    executor has state ``stopped`` and is not stale."""
    c = _connection(conn)
    now = time.time()
    rows = c.execute(
        "SELECT consumer, host, pid, current_task, done, failed, started_at, last_beat, state"
        " FROM executors ORDER BY consumer"
    ).fetchall()
    keys = ("consumer", "host", "pid", "current_task", "done", "failed", "started_at")
    result: list[dict[str, Any]] = []
    for r in rows:
        item = dict(zip((*keys, "last_beat", "state"), tuple(r), strict=True))
        item["stale"] = item["state"] != "stopped" and now - float(r[7]) > stale_after
        result.append(item)
    return result
