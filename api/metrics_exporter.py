"""`python -m api.metrics_exporter --host H --port P`: the bundle's Prometheus endpoint.

The supervised program `metrics` (METRICS_PORT set). One scrape of ``/metrics`` returns:

- what the web workers and executors recorded (api.metrics, supervise.gunicorn_hooks), added up
  from PROMETHEUS_MULTIPROC_DIR by prometheus_client's MultiProcessCollector;
- supervisord's view of every program, read over its control socket (SUPERVISOR_SERVER_URL,
  which supervisord gives its children): up, state, start time, restarts;
- resident and private memory (api.metrics.private_bytes) and CPU time of every process of
  every program (each Gunicorn worker, each nginx worker) from /proc, and the number of
  Gunicorn workers;
- the queue (depth by state, oldest pending task, executor heartbeat ages) and the storage
  (database, WAL and files sizes, free and total bytes of the data volume);
- ``ragflow_build_info{version}``.

Restarts: supervisord keeps no count, so a thread polls it every POLL_SECONDS and counts each new
start of a program that had started before (since this exporter started; Prometheus's rate() and
increase() treat the exporter's own restart as a counter reset).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api import config, logs, storage
from api.metrics import MULTIPROC_DIR, PAGE_SIZE, private_bytes
from api.routes.system import VERSION
from shared import ports

log = logging.getLogger("api.metrics_exporter")

POLL_SECONDS = 0.5
FILES_SIZE_TTL = 30.0  # seconds: walking DATA_DIR/files is cached this long
PROGRAM_STATES = (
    "STOPPED",
    "STARTING",
    "RUNNING",
    "BACKOFF",
    "STOPPING",
    "EXITED",
    "FATAL",
    "UNKNOWN",
)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- supervisord over its control socket ---------------------------------------------------------
class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self.path)


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixConnection(self.path)


def supervisor_rpc(environ: Mapping[str, str]) -> Any:
    """An XML-RPC proxy to supervisord, as its children reach it (supervisor.childutils)."""
    url = environ.get("SUPERVISOR_SERVER_URL", "")
    user = environ.get("SUPERVISOR_USERNAME", "")
    password = environ.get("SUPERVISOR_PASSWORD", "")
    auth = f"{user}:{password}@" if user else ""
    if url.startswith("unix://"):
        return xmlrpc.client.ServerProxy(f"http://{auth}localhost/RPC2", _UnixTransport(url[7:]))
    if url.startswith("http://"):
        return xmlrpc.client.ServerProxy(f"http://{auth}{url[7:].rstrip('/')}/RPC2")
    raise config.ConfigError(
        "SUPERVISOR_SERVER_URL is not set: run the exporter as a supervisord program"
    )


@dataclass
class ProgramTracker:
    """Counts program restarts from supervisord's start times, polled."""

    rpc: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    infos: list[dict[str, Any]] = field(default_factory=list)
    starts: dict[str, int] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)

    def poll(self) -> list[dict[str, Any]]:
        # one call at a time: the XML-RPC proxy and its connection are not thread-safe (the
        # polling thread and scrapes share them)
        with self.lock:
            infos = list(self.rpc.supervisor.getAllProcessInfo())
            for info in infos:
                name = str(info["name"])
                start = int(info["start"])
                previous = self.starts.get(name)
                self.restarts.setdefault(name, 0)
                if previous is not None and start != previous and start > 0 and previous > 0:
                    self.restarts[name] += 1
                self.starts[name] = start
            self.infos = infos
        return infos

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(POLL_SECONDS):
            try:
                self.poll()
            except (OSError, xmlrpc.client.Error) as exc:
                log.warning("supervisord did not answer: %s", exc)


# -- processes from /proc ------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcessStat:
    pid: int
    ppid: int
    rss_bytes: int
    cpu_seconds: float


def read_stat(pid: int) -> ProcessStat | None:
    """The process's /proc stat; None when it is gone, including while it is read (a process
    that exits between the open and the read leaves an empty or cut record)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()  # after "pid (comm) "
    # fields[0] is state (field 3): ppid 4, utime 14, stime 15, rss 24
    try:
        return ProcessStat(
            pid=pid,
            ppid=int(fields[1]),
            rss_bytes=int(fields[21]) * PAGE_SIZE,
            cpu_seconds=(int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
        )
    except (IndexError, ValueError):
        return None


def all_processes() -> dict[int, ProcessStat]:
    stats = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                stats[stat.pid] = stat
    return stats


def process_tree(root: int, stats: Mapping[int, ProcessStat]) -> list[ProcessStat]:
    """``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            found.append(stats[pid])
            todo.extend(children.get(pid, ()))
    return found


# -- storage -------------------------------------------------------------------------------------
@dataclass
class FilesSize:
    """Total size of DATA_DIR/files, walked at most every FILES_SIZE_TTL seconds."""

    folder: Path
    value: int = 0
    at: float = float("-inf")

    def get(self) -> int:
        if time.monotonic() - self.at >= FILES_SIZE_TTL:
            total = 0
            for base, _dirs, names in os.walk(self.folder):
                for name in names:
                    try:
                        total += os.lstat(os.path.join(base, name)).st_size
                    except OSError:
                        continue
            self.value, self.at = total, time.monotonic()
        return self.value


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# -- the collector -------------------------------------------------------------------------------
@dataclass(eq=False)  # registered by identity
class BundleCollector:
    tracker: ProgramTracker
    data_dir: Path
    stale_after: float
    files: FilesSize
    memory_limits: Mapping[str, int]  # program group -> bytes
    multiproc_dir: str = ""
    database_url: str = field(default="", repr=False)  # may carry a password: never shown
    pool: storage.PoolSettings = field(default_factory=storage.PoolSettings)
    # scrapes run in threads: one at a time retires dead processes and reads the directory
    recorded_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield from self._recorded()
        yield from self._programs(CounterMetricFamily, GaugeMetricFamily)
        yield from self._queue(GaugeMetricFamily)
        yield from self._storage(GaugeMetricFamily)
        info = GaugeMetricFamily("ragflow_build_info", "The bundle's version", labels=["version"])
        info.add_metric([VERSION], 1)
        yield info

    def _recorded(self) -> list[Any]:
        """What the web workers and executors recorded, read after retiring dead processes."""
        if not self.multiproc_dir:
            return []
        with self.recorded_lock:
            return read_recorded(self.multiproc_dir)

    def _programs(self, counter: Any, gauge: Any) -> Iterator[Any]:
        try:
            infos = self.tracker.poll()
        except (OSError, xmlrpc.client.Error) as exc:
            log.warning("supervisord did not answer: %s", exc)
            infos = self.tracker.infos
        up = gauge("ragflow_program_up", "1 while supervisord reports RUNNING", labels=["program"])
        state = gauge(
            "ragflow_program_state",
            "1 for the program's current supervisord state",
            labels=["program", "state"],
        )
        started = gauge(
            "ragflow_program_start_time_seconds",
            "When supervisord last started the program (Unix time; 0 = never)",
            labels=["program"],
        )
        restarts = counter(
            "ragflow_program_restarts",
            "Starts of a program after its first (seen by this exporter)",
            labels=["program"],
        )
        memory = gauge(
            "ragflow_process_resident_memory_bytes",
            "Resident memory of every process of every program",
            labels=["program", "pid"],
        )
        private = gauge(
            "ragflow_process_private_memory_bytes",
            "Resident memory of every process of every program less the pages it shares with "
            "the page cache (the files it maps): what the memory watchdogs limit",
            labels=["program", "pid"],
        )
        cpu = counter(
            "ragflow_process_cpu_seconds",
            "User and system CPU time of every process of every program",
            labels=["program", "pid"],
        )
        workers = gauge("ragflow_gunicorn_workers", "Gunicorn worker processes now")
        limits = gauge(
            "ragflow_process_memory_limit_bytes",
            "The memory watchdog's limit for each process of a program (GUNICORN_WORKER_MAX_MEMORY "
            "for web, EXECUTOR_MAX_MEMORY for the executors); absent when unset",
            labels=["program"],
        )
        stats = all_processes()
        worker_count = 0
        with self.tracker.lock:
            counts = dict(self.tracker.restarts)
        for info in infos:
            name = str(info["name"])
            statename = str(info["statename"])
            up.add_metric([name], 1 if statename == "RUNNING" else 0)
            for candidate in PROGRAM_STATES:
                state.add_metric([name, candidate], 1 if candidate == statename else 0)
            started.add_metric([name], float(info["start"]))
            limit = self.memory_limits.get(str(info["group"]))
            if limit:
                limits.add_metric([name], limit)
            restarts.add_metric([name], counts.get(name, 0))
            pid = int(info["pid"])
            if statename not in ("RUNNING", "STOPPING") or pid <= 0:
                continue
            tree = process_tree(pid, stats)
            for process in tree:
                memory.add_metric([name, str(process.pid)], process.rss_bytes)
                own = private_bytes(process.pid)
                if own is not None:  # None: it exited since its stat was read
                    private.add_metric([name, str(process.pid)], own)
                cpu.add_metric([name, str(process.pid)], process.cpu_seconds)
            if name == "web":
                worker_count += len([p for p in tree if p.ppid == pid])
        workers.add_metric([], worker_count)
        yield from (up, state, started, restarts, memory, private, cpu, workers, limits)

    def _queue(self, gauge: Any) -> Iterator[Any]:
        depth = gauge("ragflow_task_queue_depth", "Open parse tasks by state", labels=["state"])
        oldest = gauge(
            "ragflow_task_oldest_pending_seconds",
            "How long the oldest task waiting for an executor has waited",
        )
        beats = gauge(
            "ragflow_executor_heartbeat_age_seconds",
            "Seconds since each running executor's last heartbeat",
            labels=["executor"],
        )
        backend = storage.open_backend(self.data_dir, self.database_url, self.pool)
        try:
            for name, count in backend.tasks.depth().items():
                depth.add_metric([name], count)
            oldest.add_metric([], backend.tasks.oldest_pending_age())
            now = time.time()
            for executor in backend.heartbeats.executors(self.stale_after):
                if executor["state"] != "stopped":
                    age = now - float(executor["last_beat"])
                    beats.add_metric([str(executor["consumer"])], age)
        except Exception as exc:  # the scrape still answers: the other families stay useful
            log.warning("reading the queue failed: %s", exc)
            return
        finally:
            backend.close()
        yield from (depth, oldest, beats)

    def _storage(self, gauge: Any) -> Iterator[Any]:
        sizes = gauge("ragflow_storage_bytes", "Bytes stored, by kind", labels=["kind"])
        db = self.data_dir / "ragflow.db"
        sizes.add_metric(["database"], _size(db))
        sizes.add_metric(["wal"], _size(db.with_name(db.name + "-wal")))
        sizes.add_metric(["files"], self.files.get())
        free = gauge("ragflow_storage_free_bytes", "Bytes free for the bundle on the data volume")
        total = gauge("ragflow_storage_volume_bytes", "Size of the data volume in bytes")
        try:
            volume = os.statvfs(self.data_dir)
        except OSError:
            yield sizes
            return
        free.add_metric([], volume.f_bavail * volume.f_frsize)
        total.add_metric([], volume.f_blocks * volume.f_frsize)
        yield from (sizes, free, total)


# program group -> the setting that limits the private memory of each of its processes
MEMORY_LIMITS = {"web": "GUNICORN_WORKER_MAX_MEMORY", "task_executor": "EXECUTOR_MAX_MEMORY"}


def memory_limits(environ: Mapping[str, str]) -> dict[str, int]:
    """The limits that are set (the renderer validated them and passes them as byte counts)."""
    return {
        group: int(environ[name])
        for group, name in MEMORY_LIMITS.items()
        if environ.get(name, "").strip().isdigit()
    }


RETIRED = "retired"  # counter_retired.db, histogram_retired.db: the sums of dead processes
FOLDED_TYPES = ("counter", "histogram")


def _dead_pid(path: Path) -> int | None:
    """The pid in a multiprocess file's name (``<type>_[<mode>_]<pid>.db``) when it is dead."""
    pid = path.stem.rsplit("_", 1)[-1]
    if pid.isdigit() and not Path(f"/proc/{pid}").exists():
        return int(pid)
    return None


def retire_dead_processes(directory: str) -> int:
    """Tidy PROMETHEUS_MULTIPROC_DIR of the processes that died; the number of files folded.

    - Live gauges of a dead process are forgotten (a Gunicorn master that died with its workers
      cannot mark them in child_exit): their in-flight counts must not linger.
    - Counters and histograms of dead processes are added into one ``<type>_retired.db`` each and
      their files removed. Gunicorn replaces a worker every MAX_REQUESTS requests, and each one
      leaves its files: without folding, the directory and the cost of every scrape grow with the
      requests served (hundreds of files an hour on a busy bundle), while the sums stay the same.

    Run by the exporter alone, before MultiProcessCollector reads the directory, so no scrape
    sees a dead process twice. The new sums are written beside and renamed into place, then the
    folded files removed: an exporter killed between the two counts those processes again once
    (a step up, never a counter going down)."""
    from prometheus_client import multiprocess
    from prometheus_client.mmap_dict import MmapedDict

    folder = Path(directory)
    for path in folder.glob("gauge_live*_*.db"):
        pid = _dead_pid(path)
        # the Gunicorn master may remove the same files meanwhile (child_exit)
        if pid is not None:
            with contextlib.suppress(FileNotFoundError):
                multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
    folded = 0
    for kind in FOLDED_TYPES:
        dead = [path for path in folder.glob(f"{kind}_*.db") if _dead_pid(path) is not None]
        if not dead:
            continue
        retired = folder / f"{kind}_{RETIRED}.db"
        sums: dict[str, float] = {}
        for path in [retired, *dead] if retired.exists() else dead:
            values = MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]
            for key, value, _timestamp, _position in values:
                sums[key] = sums.get(key, 0.0) + value
        staged = folder / f".{kind}_{RETIRED}.staged"  # not *.db: never read half written
        staged.unlink(missing_ok=True)
        out = MmapedDict(str(staged))  # type: ignore[no-untyped-call]
        try:
            for key, value in sums.items():
                out.write_value(key, value, 0.0)  # type: ignore[no-untyped-call]
        finally:
            out.close()  # type: ignore[no-untyped-call]
        os.replace(staged, retired)
        for path in dead:
            path.unlink(missing_ok=True)
        folded += len(dead)
    return folded


READ_ATTEMPTS = 3


def read_recorded(directory: str) -> list[Any]:
    """The metric families in PROMETHEUS_MULTIPROC_DIR, after retiring dead processes. A process
    creates its file empty, then sizes it: a file read in between has no header (prometheus_client
    raises struct.error), so the directory is read again, READ_ATTEMPTS times at most."""
    from prometheus_client.multiprocess import MultiProcessCollector

    for attempt in range(1, READ_ATTEMPTS + 1):
        retire_dead_processes(directory)
        reader = MultiProcessCollector(None, directory)  # type: ignore[no-untyped-call]
        try:
            return list(reader.collect())  # type: ignore[no-untyped-call]
        except struct.error:
            if attempt == READ_ATTEMPTS:
                raise
            log.info("a metrics file was read while its process created it; reading again")
    raise AssertionError("unreachable")


def build_registry(environ: Mapping[str, str]) -> tuple[Any, ProgramTracker]:
    from prometheus_client import CollectorRegistry

    cfg = config.load(environ)
    registry = CollectorRegistry(auto_describe=False)
    directory = environ.get(MULTIPROC_DIR, "")
    tracker = ProgramTracker(supervisor_rpc(environ))
    registry.register(
        BundleCollector(
            tracker,
            cfg.data_dir,
            config.load_task_settings(environ).stale_after,
            FilesSize(cfg.data_dir / "files"),
            memory_limits(environ),
            directory,
            cfg.database_url,
            cfg.pool,
        )
    )
    return registry, tracker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.metrics_exporter", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0: a free port")
    parser.add_argument("--port-file", help="file to write the bound port to (shared/ports.py)")
    args = parser.parse_args(argv)
    try:
        logs.setup(config.load().log_format)
        registry, tracker = build_registry(os.environ)
    except config.ConfigError as exc:
        print(f"metrics_exporter: {exc}", file=sys.stderr)
        return 2
    from prometheus_client import start_http_server

    try:
        server, _thread = start_http_server(args.port, args.host, registry)
    except OSError as exc:
        print(
            f"metrics_exporter: cannot listen on {args.host}:{args.port} ({exc.strerror}); "
            "choose a free METRICS_PORT or stop the program using it",
            file=sys.stderr,
        )
        return 1
    address = ports.address_text(server.socket.getsockname())
    if args.port_file:
        try:
            ports.write_port(args.port_file, server.server_port)
        except OSError as exc:
            problem = f"cannot write the port file {args.port_file} ({exc.strerror})"
            print(f"metrics_exporter: {problem}", file=sys.stderr)
            server.shutdown()
            return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("listening on %s: serving metrics on http://%s/metrics", address, address)
    tracker.run(stop)
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
