"""Task executor: ``python -m api.task_executor --consumer-num N``.

One process per supervisord program instance, consumer id ``<host id>_<N>``
(stable across restarts). The main thread claims one task at a time with a
lease, hands it to a long-lived worker thread (which keeps its storage connection
across tasks), renews the lease and beats the heartbeat while the worker parses.
The worker completes a task and claims the next one in the same write transaction
(one turn of the writer lock per document); the executor sleeps
TASK_POLL_INTERVAL_MS only when the queue is empty. A task claimed that way as the
stop begins is handed back at once. The heartbeat is written when
the state (idle, busy, stopping) changes and every TASK_HEARTBEAT_SECONDS, not per
task. The worker checks between sections whether the claim
is still current (cancelled, or lost after a lease expiry) and stops if not.

SIGTERM: stop claiming; let the current task finish within
TASK_STOP_TIMEOUT, else hand it back to the queue (``TaskQueue.release``); exit 0.
SIGINT (Ctrl+C, and the launcher's parent-death signal when supervisord dies): the same,
but the current task is handed back at once. A repeated SIGTERM changes nothing.
A worker still busy PARSE_TIMEOUT + 5 s after its claim (blocked inside one section) gets
its document failed, and the program exits 1 so that supervisord replaces the process and
the stuck thread (in dev mode the stuck thread is left behind and a fresh worker thread takes
the next task). Dev mode runs the same loop in a thread of the serving process
(``start_in_process``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from api import config, logs, metrics, storage
from api.parsing import limits as parse_limits
from api.parsing.parsers import ParseError
from api.parsing.pipeline import build_chunks

log = logging.getLogger("api.task_executor")

_STEP = 0.1  # seconds: how often waits look at the stop flag
_PROGRESS_EVERY = 0.5  # seconds between claim checks / progress updates of a worker
_STUCK_GRACE = 5.0  # seconds past PARSE_TIMEOUT before a worker counts as stuck
# Storage trouble (a deleted or replaced database, blocked writes, a failing backend): never the
# document's fault. NotFound and Conflict are the document's (deleted while it was parsed).
STORAGE_TROUBLE = (storage.Unavailable, storage.BackendError)
_MIN_LIFETIME = 3.0  # seconds an executor stays up before a restart (rendered startsecs: 2)


class _Abandoned(Exception):
    """The claim is no longer ours (cancelled, superseded, lease lost, handed back)."""


@dataclass
class _Job:
    task: storage.Task
    abandon: threading.Event
    finished: threading.Event
    next_task: storage.Task | None = None  # claimed together with this task's completion
    claimed_at: float = field(default_factory=time.monotonic)
    abandon_counted: bool = False

    def finished_as(self, outcome: str) -> None:
        """Count this task's outcome (api.metrics.TASK_OUTCOMES)."""
        metrics.task_finished(outcome, time.monotonic() - self.claimed_at)


class _Worker:
    """One long-lived parse thread. Its storage connection (thread-local) is opened on
    the first task and kept until the worker retires: no thread start and no
    connection open/close per task."""

    def __init__(self, name: str, work: Callable[[_Job], None], close: Callable[[], None]) -> None:
        self._jobs: deque[_Job | None] = deque()
        self._wake = threading.Condition()
        self._work = work
        self._close = close
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def submit(self, job: _Job | None) -> None:
        with self._wake:
            self._jobs.append(job)
            self._wake.notify()

    def retire(self) -> None:
        """Exit once the job in hand (if any) is over."""
        self.submit(None)

    def _next(self) -> _Job | None:
        with self._wake:
            while not self._jobs:
                self._wake.wait()
            return self._jobs.popleft()

    def _loop(self) -> None:
        try:
            while (job := self._next()) is not None:
                self._work(job)
        finally:
            self._close()  # this thread's connection


class Executor:
    """The claim/work loop of one consumer. ``run`` returns when ``stop`` was called
    and the current task is finished or handed back."""

    def __init__(
        self,
        consumer: str,
        data_dir: Path,
        settings: config.TaskSettings,
        limits: parse_limits.Limits,
        exit_when_stuck: bool = True,
        database_url: str = "",
        pool: storage.PoolSettings | None = None,
    ) -> None:
        self.consumer = consumer
        self.exit_when_stuck = exit_when_stuck
        self.stuck = False  # a worker never came back: the process should be replaced
        self.over_memory = False  # EXECUTOR_MAX_MEMORY exceeded: the process should be replaced
        self.data_dir = data_dir
        self.settings = settings
        self.limits = limits
        self.backend = storage.open_backend(data_dir, database_url, pool)
        self.tasks = self.backend.tasks
        self.done = 0
        self.failed = 0
        self.started_at = time.time()
        self._stop_deadline: float | None = None  # monotonic; set once by stop()
        self._job: _Job | None = None
        self._worker: _Worker | None = None
        self._next_beat = 0.0
        self._beat_state = ""
        self._unavailable = ""  # the storage problem last logged by the claim loop

    # -- control -------------------------------------------------------------------------
    def stop(self, at_once: bool = False) -> None:
        """Stop claiming; the current task gets TASK_STOP_TIMEOUT to finish (``at_once``: it
        is handed back now). Repeated calls only ever bring the deadline closer. Safe in a
        signal handler (sets plain attributes only)."""
        deadline = time.monotonic() + (0.0 if at_once else self.settings.stop_timeout)
        if self._stop_deadline is None or deadline < self._stop_deadline:
            self._stop_deadline = deadline

    @property
    def stopping(self) -> bool:
        return self._stop_deadline is not None

    def _beat(self, state: str, force: bool = False) -> None:
        """Write the heartbeat when forced, when ``state`` differs from the last one
        written, or every TASK_HEARTBEAT_SECONDS."""
        now = time.monotonic()
        if not force and state == self._beat_state and now < self._next_beat:
            return
        self._next_beat = now + self.settings.heartbeat_seconds
        self._beat_state = state
        job = self._job
        try:
            self.backend.heartbeats.beat(
                self.consumer,
                host=self.settings.host_id,
                pid=os.getpid(),
                started_at=self.started_at,
                state=state,
                current_task=job.task.id if job else None,
                done=self.done,
                failed=self.failed,
            )
        except STORAGE_TROUBLE as exc:
            log.warning("heartbeat of %s failed: %s", self.consumer, exc)

    # -- main loop -----------------------------------------------------------------------
    def run(self) -> None:
        log.info(
            "executor %s started (pid %d, lease %ss, stop timeout %ss)",
            self.consumer,
            os.getpid(),
            self.settings.lease_seconds,
            self.settings.stop_timeout,
        )
        try:
            if removed := self.backend.store.sweep_staging():
                log.info("removed %d staged upload file(s) left by interrupted uploads", removed)
        except OSError as exc:
            log.warning("sweeping staged uploads failed: %s", exc)
        self._beat("idle", force=True)
        poll = self.settings.poll_ms / 1000
        task: storage.Task | None = None
        while not self.stopping and not self.stuck and not self.over_memory:
            if self.memory_exceeded():
                break
            if task is None:
                try:
                    task = self.tasks.claim(
                        self.consumer,
                        self.settings.lease_seconds,
                        max_attempts=self.settings.max_attempts,
                    )
                except storage.Unavailable as exc:  # one line per new cause, no traceback
                    if str(exc) != self._unavailable:
                        log.error("cannot claim tasks: %s (retrying every %.1fs)", exc, poll)
                    self._unavailable = str(exc)
                except Exception:  # never a crash loop: supervisord would give up (FATAL)
                    log.exception("claiming a task failed; retrying in %.1fs", poll)
                else:
                    if self._unavailable:
                        log.info("storage is available again: claiming tasks")
                    self._unavailable = ""
            if task is None:
                self._beat("idle")
                self._sleep(poll)
                continue
            # the next task comes claimed with this one's completion, or is claimed at once
            task = self._supervise(task)
        if task is not None and self._release(task):  # claimed with the last completion
            metrics.task_finished("handed_back")
        self._retire_worker(wait=True)
        self._beat("stopped", force=True)
        self.backend.close()  # this thread's connection
        log.info("executor %s stopped (done %d, failed %d)", self.consumer, self.done, self.failed)

    def _sleep(self, seconds: float) -> None:
        """Idle until the next poll, or until the queue says work arrived (a backend that can
        wake its executors: PostgreSQL's NOTIFY)."""
        end = time.monotonic() + seconds
        while not self.stopping and (left := end - time.monotonic()) > 0:
            try:
                if self.tasks.wait_for_work(min(_STEP, left)):
                    return
            except storage.Unavailable:
                time.sleep(min(_STEP, left))

    def _supervise(self, task: storage.Task) -> storage.Task | None:
        """Run ``task`` in a worker thread; renew its lease and beat until it ends,
        or hand it back when the stop deadline passes first. Returns the next task when
        the worker claimed one with the completion."""
        job = _Job(task, threading.Event(), threading.Event())
        self._job = job
        self._beat("busy")
        log.info("task %s (document %s, attempt %d) claimed", task.id, task.doc_id, task.attempts)
        if self._worker is None:
            self._worker = _Worker(f"parse-{self.consumer}", self._work, self.backend.close)
        self._worker.submit(job)
        renew_every = max(self.settings.lease_seconds / 3, 0.5)
        next_renew = time.monotonic() + renew_every
        stuck_at = time.monotonic() + self.limits.timeout + _STUCK_GRACE
        try:
            while not job.finished.wait(_STEP):
                self._beat("stopping" if self.stopping else "busy")
                now = time.monotonic()
                if self._stop_deadline is not None and now >= self._stop_deadline:
                    self._hand_back(job)
                    break
                if self.memory_exceeded():
                    self._hand_back(job)
                    break
                if now >= stuck_at:
                    self._give_up_stuck(job)
                    break
                if now >= next_renew:
                    next_renew = now + renew_every
                    if not self._renew(task):
                        job.abandon.set()
                        if not job.abandon_counted:
                            job.abandon_counted = True
                            job.finished_as("lease_expired")
        finally:
            self._job = None
        return job.next_task

    def memory_exceeded(self) -> bool:
        """True (and from then on) once this process's private memory (metrics.private_bytes)
        is above EXECUTOR_MAX_MEMORY: the current task is handed back and the program
        restarts."""
        limit = self.settings.max_memory
        if self.over_memory or limit is None:
            return self.over_memory
        used = metrics.private_bytes() or 0
        if used > limit:
            log.error(
                "private memory %d MiB is above EXECUTOR_MAX_MEMORY=%d MiB: handing back the "
                "task and exiting; supervisord restarts the program",
                used >> 20,
                limit >> 20,
            )
            self.over_memory = True
        return self.over_memory

    def _renew(self, task: storage.Task) -> bool:
        try:
            return self.tasks.renew(task, self.settings.lease_seconds)
        except STORAGE_TROUBLE as exc:
            log.warning("renewing the lease of task %s failed: %s", task.id, exc)
            return True  # keep working; the lease still has time left

    def _release(self, task: storage.Task) -> bool:
        try:
            if self.over_memory:  # the task may be what takes the memory: count the attempt
                reason = f"executor above EXECUTOR_MAX_MEMORY={self.settings.max_memory}"
                return self.tasks.release(task, reason, count_attempt=True)
            return self.tasks.release(task, "executor stopping")
        except STORAGE_TROUBLE as exc:
            log.warning("handing back task %s failed (its lease will expire): %s", task.id, exc)
            return False

    def _hand_back(self, job: _Job) -> None:
        job.abandon.set()
        released = self._release(job.task)
        if released:
            job.finished_as("handed_back")
        log.warning(
            "%s: task %s %s",
            "memory limit reached"
            if self.over_memory
            else f"stop timeout ({self.settings.stop_timeout}s) reached",
            job.task.id,
            "handed back to the queue" if released else "was no longer ours",
        )
        job.finished.wait(0.3)  # supervisord's stopwaitsecs is TASK_STOP_TIMEOUT + 1
        self._retire_worker(wait=False)

    def _give_up_stuck(self, job: _Job) -> None:
        """The parser ignored PARSE_TIMEOUT (blocked inside one section): fail the
        document, and (as a program) exit so that supervisord starts a fresh process
        without the stuck thread."""
        job.abandon.set()
        error = (
            f"parsing did not stop within PARSE_TIMEOUT={self.limits.timeout:g}s"
            f" (+{_STUCK_GRACE:g}s); the file is too large or too complex to parse"
        )
        try:
            if self.tasks.fail(job.task, error):
                self.failed += 1
                job.finished_as("failed")
        except STORAGE_TROUBLE as exc:
            log.error("task %s: recording the failure failed: %s", job.task.id, exc)
        log.error("task %s: parser stuck: %s", job.task.id, error)
        if self.exit_when_stuck:
            self.stuck = True
        self._retire_worker(wait=False)  # the next task gets a fresh thread

    def _retire_worker(self, wait: bool) -> None:
        """Let the worker thread exit after its job in hand; ``wait`` joins it briefly
        (only for an idle worker: one still busy with an abandoned job is left behind)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.retire()
            if wait:
                worker.thread.join(1.0)

    # -- worker thread -------------------------------------------------------------------
    def _work(self, job: _Job) -> None:
        task = job.task
        next_check = time.monotonic() + _PROGRESS_EVERY
        announced = False  # "Parsing started." goes with the first progress report

        def checkpoint(sections: int) -> None:
            nonlocal next_check, announced
            if job.abandon.is_set():
                raise _Abandoned
            if time.monotonic() < next_check:
                return
            next_check = time.monotonic() + _PROGRESS_EVERY
            progress = 0.1 + 0.8 * sections / (sections + 200)
            message = "" if announced else "Parsing started."
            announced = True
            if not self.tasks.report_progress(task, round(progress, 4), message):
                raise _Abandoned

        try:
            # No write before parsing: a document parsed within _PROGRESS_EVERY costs one
            # write transaction (complete) besides the claim; complete checks the claim.
            document = {"id": task.doc_id, "dataset_id": task.dataset_id}
            with self.backend.store.local_copy(document) as path:
                chunks = build_chunks(
                    path,
                    suffix=task.suffix or Path(task.name).suffix,
                    parser_config=task.parser_config,
                    limits=self.limits,
                    checkpoint=checkpoint,
                )
            if job.abandon.is_set():
                raise _Abandoned
            if self.stopping:
                completed = self.tasks.complete(task, chunks)
            else:
                completed, job.next_task = self.tasks.complete_and_claim(
                    task,
                    chunks,
                    self.settings.lease_seconds,
                    max_attempts=self.settings.max_attempts,
                )
            if not completed:
                raise _Abandoned
            self.done += 1
            job.finished_as("done")
            log.info("task %s done: %d chunks", task.id, len(chunks))
        except _Abandoned:
            log.info("task %s abandoned: cancelled, superseded or handed back", task.id)
        except ParseError as exc:
            self._fail(job, str(exc))
        except STORAGE_TROUBLE as exc:
            # Storage trouble is not the document's fault: leave the lease to expire,
            # so another attempt (counted, capped by TASK_MAX_ATTEMPTS) retries it.
            log.error("task %s: storage error, leaving it for a retry: %s", task.id, exc)
            job.finished_as("lease_expired")
        except Exception as exc:  # a parser bug or MemoryError must not kill the executor
            log.exception("task %s: unexpected error while parsing", task.id)
            self._fail(job, f"unexpected {type(exc).__name__} while parsing: {exc}")
        finally:
            job.finished.set()

    def _fail(self, job: _Job, error: str) -> None:
        try:
            if self.tasks.fail(job.task, error):
                self.failed += 1
                job.finished_as("failed")
                log.warning("task %s failed: %s", job.task.id, error)
        except STORAGE_TROUBLE as exc:
            log.error("task %s: recording the failure failed: %s", job.task.id, exc)


def consumer_name(host_id: str, number: int) -> str:
    return f"{host_id}_{number}"


def build(
    consumer_num: int, environ: dict[str, str] | None = None, exit_when_stuck: bool = True
) -> Executor:
    env = dict(os.environ) if environ is None else environ
    settings = config.load_task_settings(env)
    cfg = config.load(env)
    return Executor(
        consumer_name(settings.host_id, consumer_num),
        cfg.data_dir,
        settings,
        parse_limits.load(env),
        exit_when_stuck,
        cfg.database_url,
        cfg.pool,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.task_executor", description=__doc__)
    parser.add_argument(
        "--consumer-num",
        type=int,
        default=0,
        help="this executor's number (supervisord's process_num); consumer id <host id>_<N>",
    )
    args = parser.parse_args(argv)
    try:
        executor = build(args.consumer_num)
        logs.setup(config.load().log_format)
    except config.ConfigError as exc:
        print(f"task_executor: {exc}", file=sys.stderr)
        return 2

    def on_signal(signum: int, frame: FrameType | None) -> None:
        executor.stop(at_once=signum == signal.SIGINT)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    executor.run()
    if executor.stuck:
        log.error("exiting to get rid of a stuck parser thread; supervisord restarts the program")
        return 1
    if executor.over_memory:
        # Stay up past supervisord's startsecs first: a task that blows the limit again right
        # after a restart must not look like a failed start (FATAL) but count as an attempt
        # (TASK_MAX_ATTEMPTS ends it FAIL).
        time.sleep(max(0.0, executor.started_at + _MIN_LIFETIME - time.time()))
        return 1
    return 0


# -- dev mode: the loop in a thread of the serving process --------------------------------
@dataclass
class InProcess:
    executor: Executor
    thread: threading.Thread

    def stop(self, timeout: float | None = None) -> None:
        """Stop the loop: the current task finishes or is handed back; waits for it.
        On the main thread, later SIGTERM/SIGINT are ignored from here on (Werkzeug's
        handler would raise SystemExit again and cut the wait short)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.executor.stop()
        limit = self.executor.settings.stop_timeout + 2 if timeout is None else timeout
        self.thread.join(limit)


def _exit_on_term(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def start_in_process(consumer_num: int = 0) -> InProcess:
    """Start the executor loop in a background thread of this process (dev mode).

    The thread is not a daemon: interpreter shutdown (exit, or the reloader's
    restart) first stops it through threading's own exit hook, so the current
    task finishes or is handed back. Call ``stop()`` to stop it earlier."""
    executor = build(consumer_num, exit_when_stuck=False)  # the server must keep serving
    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            # Until the server installs its own handler (Werkzeug: the same sys.exit(0)), a
            # SIGTERM would kill the process outright, with the executor mid-task.
            signal.signal(signal.SIGTERM, _exit_on_term)
        previous = signal.getsignal(signal.SIGINT)

        def interrupt(signum: int, frame: FrameType | None) -> None:
            # SIGINT as for the program: Ctrl+C, or the parent's death (the reloader forwards
            # the launcher's parent-death signal): hand the task back now, then stop as before.
            executor.stop(at_once=True)
            if callable(previous):
                previous(signum, frame)
            else:
                raise KeyboardInterrupt

        signal.signal(signal.SIGINT, interrupt)
    thread = threading.Thread(target=executor.run, name="task-executor", daemon=False)
    handle = InProcess(executor, thread)
    # Runs before the interpreter joins non-daemon threads (atexit would run after).
    register: Callable[[Callable[[], None]], None] = getattr(threading, "_register_atexit")  # noqa: B009
    register(handle.stop)
    thread.start()
    return handle


if __name__ == "__main__":
    sys.exit(main())
