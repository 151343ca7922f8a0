"""The durable parse-task queue and executor heartbeats on PostgreSQL (the SQLite backend's
rules, in PostgreSQL's dialect).

Every operation runs in one transaction on the ``tasks``, ``documents`` and ``executors``
tables (docs/architecture.md). A task is claimed with a lease (visibility timeout). The
claimer renews it while working; when the lease runs out (the executor died), any executor
may claim the task again. Tenants take turns (see _next_turn), so one tenant's backlog cannot
hold back another's documents. ``(lease_owner, attempts)`` is the fencing token: only the
claim that is still current may report progress, complete, fail or release, so a retried or
duplicated task leaves exactly one set of chunks.

Claims lock the candidate row with ``FOR UPDATE SKIP LOCKED``: executors on many machines
claim different tasks at once, none waits for another's transaction. Each method runs in one
transaction from the process's pool, or a savepoint inside the thread's open one (as
``complete_and_claim`` does). Every enqueue NOTIFYs channel ``ragflow_tasks``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from api.storage import codec
from api.storage.base import PoolSettings
from api.storage.errors import StorageError
from api.storage.postgres.connections import (
    connection,
    drop_listener,
    listener,
    seam,
    transaction,
)
from api.storage.postgres.document_state import cancel_open_tasks, replace_document_chunks
from api.storage.rows import (
    RUN_CANCEL,
    RUN_DONE,
    RUN_FAIL,
    RUN_RUNNING,
    ExecutorStatus,
    QueueDepth,
    Task,
)


class _Rows:
    """A connection whose statements return plain tuples (this module reads by position)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, query: str, args: Sequence[Any] = ()) -> Any:
        return self.conn.cursor(row_factory=tuple_row).execute(query, args)


def _remove_chunks(c: _Rows, doc_id: str) -> None:
    replace_document_chunks(c.conn, doc_id, [])


def _doc_msg(conn: _Rows, doc_id: str) -> str:
    row = conn.execute("SELECT progress_msg FROM documents WHERE id = %s", (doc_id,)).fetchone()
    return str(row[0] or "") if row else ""


def _next_turn(c: _Rows, tenant_id: str) -> int:
    """The turn of a task the tenant queues now: one after its last queued task, and never
    before the lowest turn still queued. Claims take the lowest turn first (ties: the oldest
    first), so a tenant with one document waits for at most one queued document of each
    other tenant, however many they have queued; and a tenant that keeps queueing one
    document at a time alternates with the others instead of overtaking them. Two index
    look-ups (tasks_tenant_turn, tasks_fair)."""
    last = c.execute(
        "SELECT MAX(turn) FROM tasks WHERE tenant_id = %s AND state = 'queued'", (tenant_id,)
    ).fetchone()[0]
    lowest = c.execute(
        "SELECT turn FROM tasks WHERE state = 'queued' AND lease_expires IS NULL"
        " ORDER BY turn LIMIT 1"
    ).fetchone()
    return max(int(last or 0) + 1, int(lowest[0]) if lowest is not None else 1)


def _give_up(c: _Rows, row: tuple[Any, ...], now: float) -> None:
    task_id, doc_id, attempts, last_error = row[0], row[1], row[3], row[4]
    reason = (
        f"gave up after {attempts - 1} attempts"
        f" (last: {last_error or 'the executor stopped before finishing'})"
    )
    c.execute(
        "UPDATE tasks SET state = 'failed', attempts = %s, lease_owner = NULL,"
        " lease_expires = NULL, finished_at = %s, last_error = %s WHERE id = %s",
        (attempts - 1, now, reason, task_id),
    )
    _remove_chunks(c, doc_id)
    c.execute(
        "UPDATE documents SET run = %s, progress = -1, progress_msg = %s, update_time = %s"
        " WHERE id = %s",
        (
            RUN_FAIL,
            codec.append_msg(_doc_msg(c, doc_id), f"[ERROR] Task {reason}"),
            int(now * 1000),
            doc_id,
        ),
    )


_READY = "(state = 'queued' OR (state = 'leased' AND lease_expires < %s))"
_CANDIDATE = (
    "SELECT id, doc_id, dataset_id, attempts + 1, last_error, state, lease_owner,"
    " enqueued_at, seq, turn FROM tasks"
)
# A queued task never has a lease_expires (every path that queues one clears it), so the
# queued look-up walks the tasks_fair index in (turn, enqueued_at, rowid) order and stops
# at the first row: a claim costs the same with 10 or 10,000 tasks queued (one OR query
# sorted the whole queue each time, inside the write lock). Leased tasks with an expired
# lease are few (one per executor that died) and sorted.
_FIRST_QUEUED = (
    f"{_CANDIDATE} WHERE state = 'queued' AND lease_expires IS NULL"
    " ORDER BY turn, enqueued_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED"
)
_FIRST_EXPIRED = (
    f"{_CANDIDATE} WHERE state = 'leased' AND lease_expires < %s"
    " ORDER BY turn, enqueued_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED"
)


def _next_ready(c: _Rows, now: float) -> Any:
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


CHANNEL = "ragflow_tasks"


class _Connected:
    """The pool a seam class uses, and its transactions with positional rows."""

    def __init__(self, url: str, options: PoolSettings) -> None:
        self.url = url
        self.options = options

    @contextmanager
    def _tx(self) -> Iterator[_Rows]:
        with transaction(self.url, self.options) as conn:
            yield _Rows(conn)

    @contextmanager
    def _read(self) -> Iterator[_Rows]:
        with connection(self.url, self.options) as conn:
            yield _Rows(conn)


_OWNED = "id = %s AND state = 'leased' AND lease_owner = %s AND attempts = %s"


@seam
class PostgresTaskQueue(_Connected):
    """The TaskQueue seam on the tasks and documents tables."""

    def enqueue_parse(self, dataset_id: str, doc_ids: Sequence[str]) -> list[str]:
        """Reset each document (RUNNING, progress 0, counts 0, chunks removed), cancel
        its older tasks and queue one new task. Returns the new task ids, in order.
        Documents not in ``dataset_id`` raise ``LookupError`` and nothing changes."""
        now = time.time()
        task_ids: list[str] = []
        with self._tx() as c:
            owner = c.execute(
                "SELECT tenant_id FROM datasets WHERE id = %s", (dataset_id,)
            ).fetchone()
            tenant_id = str(owner[0]) if owner is not None else ""
            for doc_id in doc_ids:
                found = c.execute(
                    "SELECT 1 FROM documents WHERE id = %s AND dataset_id = %s",
                    (doc_id, dataset_id),
                ).fetchone()
                if found is None:
                    raise LookupError(f"Document {doc_id} is not in dataset {dataset_id}")
                cancel_open_tasks(c.conn, doc_id, "superseded by a new parse request", now)
                _remove_chunks(c, doc_id)
                c.execute(
                    "UPDATE documents SET run = %s, progress = 0, progress_msg = %s,"
                    " process_begin_at = %s, process_duration = 0, chunk_count = 0,"
                    " token_count = 0,"
                    " update_time = %s WHERE id = %s",
                    (RUN_RUNNING, f"{codec.stamp(now)} Task queued.", now, int(now * 1000), doc_id),
                )
                task_id = uuid.uuid1().hex
                c.execute(
                    "INSERT INTO tasks (id, doc_id, dataset_id, tenant_id, turn, state, attempts,"
                    " enqueued_at) VALUES (%s, %s, %s, %s, %s, 'queued', 0, %s)",
                    (task_id, doc_id, dataset_id, tenant_id, _next_turn(c, tenant_id), now),
                )
                task_ids.append(task_id)
            if task_ids:  # delivered at commit: executors waiting in wait_for_work wake up
                c.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
        return task_ids

    def cancel_parse(self, dataset_id: str, doc_ids: Sequence[str]) -> int:
        """Cancel parsing: documents become CANCEL with no chunks, their open tasks
        are cancelled (a running executor notices at its next check). Returns the
        number of documents changed."""
        now = time.time()
        changed = 0
        with self._tx() as c:
            for doc_id in doc_ids:
                found = c.execute(
                    "SELECT progress_msg FROM documents WHERE id = %s AND dataset_id = %s",
                    (doc_id, dataset_id),
                ).fetchone()
                if found is None:
                    continue
                cancel_open_tasks(c.conn, doc_id, "cancelled", now)
                _remove_chunks(c, doc_id)
                c.execute(
                    "UPDATE documents SET run = %s, progress = 0, chunk_count = 0, token_count = 0,"
                    " progress_msg = %s, update_time = %s WHERE id = %s",
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
        with self._read() as c:
            ready = c.execute(f"SELECT 1 FROM tasks WHERE {_READY} LIMIT 1", (now,)).fetchone()
        if ready is None:  # the idle poll stays a cheap read: no row locked
            return None
        with self._tx() as c:
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
                    "UPDATE tasks SET state = 'leased', attempts = %s, lease_owner = %s,"
                    " lease_expires = %s, started_at = %s, last_error = %s WHERE id = %s",
                    (attempts, consumer, expires, now, row[4], task_id),
                )
                doc = c.execute(
                    "SELECT name, suffix, chunk_method, parser_config, progress_msg FROM documents"
                    " WHERE id = %s",
                    (doc_id,),
                ).fetchone()
                c.execute(
                    "UPDATE documents SET run = %s, progress = 0, progress_msg = %s,"
                    " process_begin_at = COALESCE(process_begin_at, %s) WHERE id = %s",
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

    def renew(self, task: Task, lease_seconds: float) -> bool:
        """Extend the lease. False when the claim is no longer current (cancelled,
        superseded, or reclaimed by another executor after the lease ran out)."""
        with self._tx() as c:
            cur = c.execute(
                f"UPDATE tasks SET lease_expires = %s WHERE {_OWNED}",
                (time.time() + lease_seconds, *codec.owned(task)),
            )
            return bool(cur.rowcount == 1)

    def report_progress(self, task: Task, progress: float, message: str = "") -> bool:
        """Set the document's progress (0..1) and append ``message`` to its
        progress_msg, only while the claim is current. False means stop working."""
        with self._tx() as c:
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
                    "UPDATE documents SET progress = %s, progress_msg = %s WHERE id = %s",
                    (progress, msg, task.doc_id),
                )
            else:
                c.execute(
                    "UPDATE documents SET progress = %s WHERE id = %s", (progress, task.doc_id)
                )
            return True

    def complete(
        self,
        task: Task,
        chunks: Sequence[Mapping[str, Any]],
    ) -> bool:
        """Atomically replace the document's chunks with ``chunks`` and mark it DONE
        (progress 1.0, process_duration, ``Task done (X.XXs)``). False, with nothing
        changed, when the claim is no longer current."""
        now = time.time()
        with self._tx() as c:
            row = c.execute(
                f"SELECT started_at FROM tasks WHERE {_OWNED}", codec.owned(task)
            ).fetchone()
            if row is None:
                return False
            begin = c.execute(
                "SELECT process_begin_at FROM documents WHERE id = %s", (task.doc_id,)
            ).fetchone()
            chunk_count, token_count = replace_document_chunks(c.conn, task.doc_id, chunks)
            duration = max(now - float(row[0] or now), 0.0)
            total = max(
                now - float(begin[0] if begin and begin[0] is not None else row[0] or now), 0
            )
            msg = codec.append_msg(
                _doc_msg(c, task.doc_id),
                f"{codec.stamp(now)} {chunk_count} chunks, {token_count} tokens."
                f" Task done ({duration:.2f}s)",
            )
            c.execute(
                "UPDATE documents SET run = %s, progress = 1.0, progress_msg = %s,"
                " process_duration = %s, chunk_count = %s, token_count = %s, update_time = %s"
                " WHERE id = %s",
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
                "UPDATE tasks SET state = 'done', finished_at = %s, lease_owner = NULL,"
                " lease_expires = NULL WHERE id = %s",
                (now, task.id),
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
        and the caller claims again the usual way)."""
        with self._tx():
            if not self.complete(task, chunks):
                return False, None
            try:
                return True, self.claim(task.lease_owner, lease_seconds, max_attempts=max_attempts)
            except StorageError:
                return True, None

    def fail(self, task: Task, error: str) -> bool:
        """End the task for good: the document becomes FAIL, progress -1, with
        ``[ERROR] <error>`` appended. False when the claim is no longer current."""
        now = time.time()
        with self._tx() as c:
            cur = c.execute(
                "UPDATE tasks SET state = 'failed', finished_at = %s, lease_owner = NULL,"
                f" lease_expires = NULL, last_error = %s WHERE {_OWNED}",
                (now, error, *codec.owned(task)),
            )
            if cur.rowcount != 1:
                return False
            _remove_chunks(c, task.doc_id)
            c.execute(
                "UPDATE documents SET run = %s, progress = -1, progress_msg = %s, chunk_count = 0,"
                " token_count = 0, update_time = %s WHERE id = %s",
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
        attempts = "attempts" if count_attempt else "GREATEST(attempts - 1, 0)"
        with self._tx() as c:
            cur = c.execute(
                "UPDATE tasks SET state = 'queued', lease_owner = NULL, lease_expires = NULL,"
                f" attempts = {attempts} WHERE {_OWNED}",
                codec.owned(task),
            )
            if cur.rowcount != 1:
                return False
            note = f"Task handed back by {task.lease_owner}" + (f": {reason}" if reason else ".")
            c.execute(
                "UPDATE documents SET progress = 0, progress_msg = %s WHERE id = %s",
                (
                    codec.append_msg(_doc_msg(c, task.doc_id), f"{codec.stamp(now)} {note}"),
                    task.doc_id,
                ),
            )
            return True

    def depth(self, *, tenant_id: str | None = None) -> QueueDepth:
        """Counts of open tasks: ``queued`` (waiting), ``running`` (leased, lease
        valid) and ``expired`` (leased, lease ran out: waiting for another executor);
        with ``tenant_id``, only that tenant's tasks."""
        now = time.time()
        scope = ""
        args: list[Any] = [now, now]
        if tenant_id is not None:
            scope = " AND dataset_id IN (SELECT id FROM datasets WHERE tenant_id = %s)"
            args.append(tenant_id)
        with self._read() as c:
            row = c.execute(
                "SELECT"
                " COUNT(*) FILTER (WHERE state = 'queued'),"
                " COUNT(*) FILTER (WHERE state = 'leased' AND lease_expires >= %s),"
                " COUNT(*) FILTER (WHERE state = 'leased' AND lease_expires < %s)"
                f" FROM tasks WHERE state IN ('queued', 'leased'){scope}",
                args,
            ).fetchone()
        return QueueDepth(queued=int(row[0]), running=int(row[1]), expired=int(row[2]))

    def oldest_pending_age(self) -> float:
        """Seconds the oldest task waiting for an executor (queued, or leased with its lease run
        out) has waited since it was enqueued; 0 when none waits."""
        now = time.time()
        with self._read() as c:
            row = c.execute(f"SELECT MIN(enqueued_at) FROM tasks WHERE {_READY}", (now,)).fetchone()
        return max(0.0, now - float(row[0])) if row and row[0] is not None else 0.0

    def wait_for_work(self, timeout: float) -> bool:
        """LISTEN on CHANNEL (a connection of this process and thread kept for it, outside the
        pool); True as soon as an enqueue's NOTIFY arrives."""
        conn = listener(self.url, self.options, CHANNEL)
        try:
            for _ in conn.notifies(timeout=max(timeout, 0.0), stop_after=1):
                return True
        except psycopg.Error:
            drop_listener(self.url, CHANNEL)
            raise
        return False


@seam
class PostgresHeartbeats(_Connected):
    """The Heartbeats seam on the executors table."""

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
        with self._tx() as c:
            c.execute(
                "INSERT INTO executors"
                " (consumer, host, pid, current_task, done, failed, started_at, last_beat, state)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
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
        with self._read() as c:
            rows = c.execute(
                "SELECT consumer, host, pid, current_task, done, failed, started_at, last_beat,"
                " state"
                " FROM executors ORDER BY consumer"
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
