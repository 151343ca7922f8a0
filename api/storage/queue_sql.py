"""The durable parse-task queue and executor heartbeats, in SQL both backends run (their
differences behind api.storage.dialect).

Every operation runs in one transaction on the ``tasks``, ``documents`` and ``executors``
tables (docs/architecture.md). A task is claimed with a lease (visibility timeout). The
claimer renews it while working; when the lease runs out (the executor died), any executor
may claim the task again. Tenants take turns (see _next_turn), so one tenant's backlog cannot
hold back another's documents. ``(lease_owner, attempts)`` is the fencing token: only the
claim that is still current may report progress, complete, fail or release, so a retried or
duplicated task leaves exactly one set of chunks.

Writes run in the dialect's transaction: SQLite's single writer (BEGIN IMMEDIATE after the
writer lock), or PostgreSQL's, whose claims lock the candidate row with ``FOR UPDATE SKIP
LOCKED`` so that executors on many machines claim different tasks at once. Inside a thread's
open transaction (as ``complete_and_claim`` does) an operation is a savepoint.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from api.storage import codec
from api.storage.dialect import Dialect, Session, seam
from api.storage.document_state import (
    CHUNK_DOCUMENT_FIELDS,
    cancel_open_tasks,
    replace_document_chunks,
    store_chunks,
)
from api.storage.errors import NotFound, StorageError
from api.storage.rows import (
    RUN_CANCEL,
    RUN_DONE,
    RUN_FAIL,
    RUN_RUNNING,
    ExecutorStatus,
    QueueDepth,
    Task,
)


def _remove_chunks(db: Dialect, c: Session, doc_id: str) -> None:
    replace_document_chunks(db, c, doc_id, [])


def _doc_msg(c: Session, doc_id: str) -> str:
    row = c.execute("SELECT progress_msg FROM documents WHERE id = ?", (doc_id,)).fetchone()
    return str(row[0] or "") if row else ""


def _next_turn(c: Session, tenant_id: str) -> int:
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


def _give_up(db: Dialect, c: Session, row: tuple[Any, ...], now: float) -> None:
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
    _remove_chunks(db, c, doc_id)
    c.execute(
        "UPDATE documents SET run = ?, progress = -1, progress_msg = ?, update_time = ?"
        " WHERE id = ?",
        (
            RUN_FAIL,
            codec.append_msg(_doc_msg(c, doc_id), f"[ERROR] Task {reason}"),
            int(now * 1000),
            doc_id,
        ),
    )


_READY = "(state = 'queued' OR (state = 'leased' AND lease_expires < ?))"


def candidate_queries(rowid: str) -> tuple[str, str]:
    """The look-ups of the next queued task and of the next task whose lease ran out.

    A queued task never has a lease_expires (every path that queues one clears it), so the
    queued look-up walks the tasks_fair index in (turn, enqueued_at, insertion) order and stops
    at the first row: a claim costs the same with 10 or 10,000 tasks queued (one OR query
    sorted the whole queue each time, inside the write lock). Leased tasks with an expired
    lease are few (one per executor that died) and sorted."""
    select = (
        "SELECT id, doc_id, dataset_id, attempts + 1, last_error, state, lease_owner,"
        f" enqueued_at, {rowid}, turn FROM tasks"
    )
    order = f" ORDER BY turn, enqueued_at, {rowid} LIMIT 1"
    return (
        f"{select} WHERE state = 'queued' AND lease_expires IS NULL{order}",
        f"{select} WHERE state = 'leased' AND lease_expires < ?{order}",
    )


# The claimed document's fields a Task carries (with its progress_msg, appended to).
_CLAIMED_DOCUMENT = "d.name, d.suffix, d.chunk_method, d.parser_config, d.progress_msg"


def claim_query(rowid: str, skip_locked: str = "") -> str:
    """Both candidates of a claim (candidate_queries: each its own index walk, each locked with
    ``skip_locked``) in one statement, each with its document's _CLAIMED_DOCUMENT fields after
    the task's. Its one argument: now."""
    queued, expired = candidate_queries(rowid)
    return (
        f"WITH queued AS ({queued}{skip_locked}), expired AS ({expired}{skip_locked})"
        f" SELECT candidate.*, {_CLAIMED_DOCUMENT} FROM"
        " (SELECT * FROM queued UNION ALL SELECT * FROM expired) AS candidate"
        " JOIN documents d ON d.id = candidate.doc_id"
    )


def _next_ready(db: Dialect, c: Session, now: float) -> Any:
    """The task to claim next (queued, or leased with the lease run out): the lowest turn,
    then the oldest (see _next_turn); with its document's fields (claim_query)."""
    rows = c.execute(claim_query(db.rowid, db.skip_locked), (now,)).fetchall()
    return min(rows, key=lambda row: (row[9], row[7], row[8])) if rows else None


_OWNED = "id = ? AND state = 'leased' AND lease_owner = ? AND attempts = ?"
_ATTEMPT_UNCOUNTED = "CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END"


def _parser_config(raw: Any) -> dict[str, Any]:
    try:
        config = json.loads(raw) if raw else {}
    except ValueError:  # a broken config must not wedge the claim loop
        config = {}
    return config if isinstance(config, dict) else {}


@seam
class SqlTaskQueue:
    """The TaskQueue seam on the tasks and documents tables."""

    def __init__(self, db: Dialect) -> None:
        self.db = db

    def enqueue_parse(self, dataset_id: str, doc_ids: Sequence[str]) -> list[str]:
        """Reset each document (RUNNING, progress 0, counts 0, chunks removed), cancel
        its older tasks and queue one new task. Returns the new task ids, in order.
        Documents not in ``dataset_id`` raise ``LookupError`` and nothing changes."""
        now = time.time()
        task_ids: list[str] = []
        with self.db.write() as c:
            owner = c.execute("SELECT tenant_id FROM datasets WHERE id = ?", (dataset_id,))
            found_owner = owner.fetchone()
            tenant_id = str(found_owner[0]) if found_owner is not None else ""
            for doc_id in doc_ids:
                found = c.execute(
                    "SELECT 1 FROM documents WHERE id = ? AND dataset_id = ?", (doc_id, dataset_id)
                ).fetchone()
                if found is None:
                    raise LookupError(f"Document {doc_id} is not in dataset {dataset_id}")
                cancel_open_tasks(c, doc_id, "superseded by a new parse request", now)
                _remove_chunks(self.db, c, doc_id)
                c.execute(
                    "UPDATE documents SET run = ?, progress = 0, progress_msg = ?,"
                    " process_begin_at = ?, process_duration = 0, chunk_count = 0, token_count = 0,"
                    " update_time = ? WHERE id = ?",
                    (RUN_RUNNING, f"{codec.stamp(now)} Task queued.", now, int(now * 1000), doc_id),
                )
                task_id = uuid.uuid1().hex
                c.execute(
                    "INSERT INTO tasks (id, doc_id, dataset_id, tenant_id, turn, state, attempts,"
                    " enqueued_at) VALUES (?, ?, ?, ?, ?, 'queued', 0, ?)",
                    (task_id, doc_id, dataset_id, tenant_id, _next_turn(c, tenant_id), now),
                )
                task_ids.append(task_id)
            if task_ids:
                self.db.notify_enqueued(c)
        return task_ids

    def cancel_parse(self, dataset_id: str, doc_ids: Sequence[str]) -> int:
        """Cancel parsing: documents become CANCEL with no chunks, their open tasks
        are cancelled (a running executor notices at its next check). Returns the
        number of documents changed."""
        now = time.time()
        changed = 0
        with self.db.write() as c:
            for doc_id in doc_ids:
                found = c.execute(
                    "SELECT progress_msg FROM documents WHERE id = ? AND dataset_id = ?",
                    (doc_id, dataset_id),
                ).fetchone()
                if found is None:
                    continue
                cancel_open_tasks(c, doc_id, "cancelled", now)
                _remove_chunks(self.db, c, doc_id)
                c.execute(
                    "UPDATE documents SET run = ?, progress = 0, chunk_count = 0, token_count = 0,"
                    " progress_msg = ?, update_time = ? WHERE id = ?",
                    (
                        RUN_CANCEL,
                        codec.append_msg(
                            str(found[0] or ""), f"{codec.stamp(now)} Task cancelled."
                        ),
                        int(now * 1000),
                        doc_id,
                    ),
                )
                changed += 1
        return changed

    def claim(
        self,
        consumer: str,
        lease_seconds: float,
        *,
        max_attempts: int = 3,
    ) -> Task | None:
        """Lease the next ready task (queued, or leased with its lease expired): tenants take
        turns, each tenant's tasks in the order they were queued (_next_turn).

        The claim counts as an attempt; a task whose next attempt would exceed
        ``max_attempts`` is failed instead (document FAIL with the reason) and the
        next candidate is tried. Returns None when nothing is ready."""
        now = time.time()
        with self.db.read() as c:
            ready = c.execute(f"SELECT 1 FROM tasks WHERE {_READY} LIMIT 1", (now,)).fetchone()
        if ready is None:  # the idle poll stays a cheap read: no lock taken
            return None
        with self.db.write() as c:
            return self._claim(c, consumer, lease_seconds, max_attempts, now)

    def _claim(
        self, c: Session, consumer: str, lease_seconds: float, max_attempts: int, now: float
    ) -> Task | None:
        """claim() inside the caller's write transaction."""
        while True:
            row = _next_ready(self.db, c, now)
            if row is None:
                return None
            task = tuple(row[:5])
            if row[5] == "leased":
                task = (*task[:4], f"the lease of {row[6]} expired before it finished")
            if task[3] > max_attempts:
                _give_up(self.db, c, task, now)
                continue
            task_id, doc_id, dataset_id, attempts, last_error = task
            doc = row[10:]  # _CLAIMED_DOCUMENT
            expires = now + lease_seconds
            c.execute(
                "UPDATE tasks SET state = 'leased', attempts = ?, lease_owner = ?,"
                " lease_expires = ?, started_at = ?, last_error = ? WHERE id = ?",
                (attempts, consumer, expires, now, last_error, task_id),
            )
            c.execute(
                "UPDATE documents SET run = ?, progress = 0, progress_msg = ?,"
                " process_begin_at = COALESCE(process_begin_at, ?) WHERE id = ?",
                (
                    RUN_RUNNING,
                    codec.append_msg(
                        str(doc[4] or ""),
                        f"{codec.stamp(now)} Task started by {consumer} (attempt {attempts}).",
                    ),
                    now,
                    doc_id,
                ),
            )
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
                parser_config=_parser_config(doc[3]),
            )

    def renew(self, task: Task, lease_seconds: float) -> bool:
        """Extend the lease. False when the claim is no longer current (cancelled,
        superseded, or reclaimed by another executor after the lease ran out)."""
        with self.db.write() as c:
            cur = c.execute(
                f"UPDATE tasks SET lease_expires = ? WHERE {_OWNED}",
                (time.time() + lease_seconds, *codec.owned(task)),
            )
            return cur.rowcount == 1

    def report_progress(self, task: Task, progress: float, message: str = "") -> bool:
        """Set the document's progress (0..1) and append ``message`` to its
        progress_msg, only while the claim is current. False means stop working."""
        with self.db.write() as c:
            if (
                c.execute(f"SELECT 1 FROM tasks WHERE {_OWNED}", codec.owned(task)).fetchone()
                is None
            ):
                return False
            if message:
                msg = codec.append_msg(
                    _doc_msg(c, task.doc_id), f"{codec.stamp(time.time())} {message}"
                )
                c.execute(
                    "UPDATE documents SET progress = ?, progress_msg = ? WHERE id = ?",
                    (progress, msg, task.doc_id),
                )
            else:
                c.execute("UPDATE documents SET progress = ? WHERE id = ?", (progress, task.doc_id))
            return True

    def complete(
        self,
        task: Task,
        chunks: Sequence[Mapping[str, Any]],
    ) -> bool:
        """Atomically replace the document's chunks with ``chunks`` and mark it DONE
        (progress 1.0, process_duration, ``Task done (X.XXs)``). False, with nothing
        changed, when the claim is no longer current."""
        contents = [str(chunk.get("content", "")) for chunk in chunks]
        with self.db.prepared(contents), self.db.write() as c:
            return self._complete(c, task, chunks)

    def _complete(self, c: Session, task: Task, chunks: Sequence[Mapping[str, Any]]) -> bool:
        """complete() inside the caller's write transaction: five statements. The task is
        ended first, fenced (its row returns only while the claim is current); the document's
        fields are read once; its counts are those of the chunks stored (store_chunks), written
        with its final state."""
        now = time.time()
        ended = c.execute(
            "UPDATE tasks SET state = 'done', finished_at = ?, lease_owner = NULL,"
            f" lease_expires = NULL WHERE {_OWNED} RETURNING started_at",
            (now, *codec.owned(task)),
        ).fetchall()
        if not ended:
            return False
        started = float(ended[0][0] or now)
        doc = c.execute(
            f"SELECT {CHUNK_DOCUMENT_FIELDS}, process_begin_at, progress_msg FROM documents"
            " WHERE id = ?",
            (task.doc_id,),
        ).fetchone()
        if doc is None:  # raising rolls the task's end back with the caller's transaction
            raise NotFound(f"Document {task.doc_id} does not exist")
        chunk_count, token_count = store_chunks(self.db, c, task.doc_id, doc, chunks)
        duration = max(now - started, 0.0)
        total = max(now - float(doc[3] if doc[3] is not None else started), 0)
        msg = codec.append_msg(
            str(doc[4] or ""),
            f"{codec.stamp(now)} {chunk_count} chunks, {token_count} tokens."
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
        return True

    def complete_and_claim(
        self,
        task: Task,
        chunks: Sequence[Mapping[str, Any]],
        lease_seconds: float,
        *,
        max_attempts: int = 3,
    ) -> tuple[bool, Task | None]:
        """``complete(task)``, then ``claim()`` the next task for the same consumer in the same
        write transaction: a busy executor takes the writer lock once per document, not twice.

        Returns (completed, next task or None). Nothing is claimed when the completion is
        refused, and a failing claim never undoes the completion (it rolls back to a savepoint
        and the caller claims again the usual way). The claim skips claim()'s read probe: the
        write transaction is open already."""
        contents = [str(chunk.get("content", "")) for chunk in chunks]
        with self.db.prepared(contents), self.db.write() as c:
            if not self._complete(c, task, chunks):
                return False, None
            try:
                with self.db.write() as claiming:
                    claimed = self._claim(
                        claiming, task.lease_owner, lease_seconds, max_attempts, time.time()
                    )
            except StorageError:
                return True, None
            except self.db.driver_errors:  # the seam translates only at its public methods
                return True, None
            return True, claimed

    def fail(self, task: Task, error: str) -> bool:
        """End the task for good: the document becomes FAIL, progress -1, with
        ``[ERROR] <error>`` appended. False when the claim is no longer current."""
        now = time.time()
        with self.db.write() as c:
            cur = c.execute(
                "UPDATE tasks SET state = 'failed', finished_at = ?, lease_owner = NULL,"
                f" lease_expires = NULL, last_error = ? WHERE {_OWNED}",
                (now, error, *codec.owned(task)),
            )
            if cur.rowcount != 1:
                return False
            _remove_chunks(self.db, c, task.doc_id)
            c.execute(
                "UPDATE documents SET run = ?, progress = -1, progress_msg = ?, chunk_count = 0,"
                " token_count = 0, update_time = ? WHERE id = ?",
                (
                    RUN_FAIL,
                    codec.append_msg(_doc_msg(c, task.doc_id), f"[ERROR] {error}"),
                    int(now * 1000),
                    task.doc_id,
                ),
            )
            return True

    def release(self, task: Task, reason: str = "", *, count_attempt: bool = False) -> bool:
        """Hand the task back (executor stopping): queued again, lease cleared, the
        attempt not counted (``count_attempt``: counted, for a task that may be the reason the
        executor has to stop), document progress reset. False when no longer ours."""
        now = time.time()
        attempts = (
            "attempts" if count_attempt else "CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END"
        )
        with self.db.write() as c:
            cur = c.execute(
                "UPDATE tasks SET state = 'queued', lease_owner = NULL, lease_expires = NULL,"
                f" attempts = {attempts} WHERE {_OWNED}",
                codec.owned(task),
            )
            if cur.rowcount != 1:
                return False
            note = f"Task handed back by {task.lease_owner}" + (f": {reason}" if reason else ".")
            c.execute(
                "UPDATE documents SET progress = 0, progress_msg = ? WHERE id = ?",
                (
                    codec.append_msg(_doc_msg(c, task.doc_id), f"{codec.stamp(now)} {note}"),
                    task.doc_id,
                ),
            )
            return True

    def oldest_pending_age(self) -> float:
        """Seconds the oldest task waiting for an executor (queued, or leased with its lease run
        out) has waited since it was enqueued; 0 when none waits."""
        now = time.time()
        with self.db.read() as c:
            row = c.execute(f"SELECT MIN(enqueued_at) FROM tasks WHERE {_READY}", (now,)).fetchone()
        return max(0.0, now - float(row[0])) if row and row[0] is not None else 0.0

    def depth(self, *, tenant_id: str | None = None) -> QueueDepth:
        """Counts of open tasks: ``queued`` (waiting), ``running`` (leased, lease
        valid) and ``expired`` (leased, lease ran out: waiting for another executor);
        with ``tenant_id``, only that tenant's tasks."""
        now = time.time()
        scope = ""
        args: list[Any] = [now, now]
        if tenant_id is not None:
            scope = " AND dataset_id IN (SELECT id FROM datasets WHERE tenant_id = ?)"
            args.append(tenant_id)
        with self.db.read() as c:
            row = c.execute(
                "SELECT"
                " COUNT(*) FILTER (WHERE state = 'queued'),"
                " COUNT(*) FILTER (WHERE state = 'leased' AND lease_expires >= ?),"
                " COUNT(*) FILTER (WHERE state = 'leased' AND lease_expires < ?)"
                f" FROM tasks WHERE state IN ('queued', 'leased'){scope}",
                args,
            ).fetchone()
        return QueueDepth(queued=int(row[0]), running=int(row[1]), expired=int(row[2]))

    def wait_for_work(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds; True as soon as a task was queued meanwhile
        (PostgreSQL's LISTEN), False when the time ran out (SQLite: always; it polls)."""
        return self.db.wait_for_work(timeout)


@seam
class SqlHeartbeats:
    """The Heartbeats seam on the executors table."""

    def __init__(self, db: Dialect) -> None:
        self.db = db

    def beat(
        self,
        consumer: str,
        *,
        host: str,
        pid: int,
        started_at: float,
        state: str,
        current_task: str | None = None,
        done: int = 0,
        failed: int = 0,
    ) -> None:
        """Record an executor's liveness (upsert into ``executors``)."""
        with self.db.write() as c:
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

    def executors(self, stale_after: float = 15.0) -> list[ExecutorStatus]:
        """Every executor that ever beat, with ``stale`` true when a running one has
        not beaten for ``stale_after`` seconds (dead or hung). A cleanly stopped
        executor has state ``stopped`` and is not stale."""
        now = time.time()
        with self.db.read() as c:
            rows = c.execute(
                "SELECT consumer, host, pid, current_task, done, failed, started_at, last_beat,"
                " state FROM executors ORDER BY consumer"
            ).fetchall()
        return [
            ExecutorStatus(
                consumer=str(consumer),
                host=str(host),
                pid=int(pid),
                current_task=None if current is None else str(current),
                done=int(done),
                failed=int(failed),
                started_at=float(started),
                last_beat=float(last_beat),
                state=str(state),
                stale=state != "stopped" and now - float(last_beat) > stale_after,
            )
            for consumer, host, pid, current, done, failed, started, last_beat, state in rows
        ]
