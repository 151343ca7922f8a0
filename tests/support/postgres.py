"""A throwaway PostgreSQL cluster for the tests: ``initdb`` into a temporary directory as a
non-root user, listening only on 127.0.0.1 (its unix socket in that directory), stopped and
removed at the end. PostgreSQL can neither bind port 0 nor take a socket: it starts on a
candidate port and again on another when that one is in use (support.ports
start_on_candidate_port); a restart keeps its port. Never a system cluster. Each test gets a
fresh database.

The binaries come from the Debian package (``make system-deps`` installs it):
/usr/lib/postgresql/<version>/bin, the newest version found.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from support.ports import PortInUseError, start_on_candidate_port
from support.waiting import wait_for

PG_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "rf_test"
PASSWORD = "s3cret-pw-never-logged"  # tests assert it appears in no rendered file or log line
START_TIMEOUT = 30.0


def bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None when none is installed."""
    found = [
        d / "bin"
        for d in PG_ROOT.glob("*")
        if d.name.split(".")[0].isdigit() and (d / "bin" / "initdb").exists()
    ]
    found.sort(key=lambda p: int(p.parent.name.split(".")[0]))
    return found[-1] if found else None


def run_as() -> list[str]:
    """The prefix that runs a command as a non-root user (initdb and postgres refuse root)."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"]
    raise RuntimeError("running as root and neither user postgres nor nobody exists")


def _owner() -> tuple[int, int]:
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    for user in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise RuntimeError("no non-root user to own the cluster")


@dataclass
class Cluster:
    root: Path
    bin: Path
    port: int = 0  # chosen when it starts
    shared_buffers: str = "32MB"  # PostgreSQL's buffer cache: small, for many short clusters

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self.port}/{dbname}"

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*run_as(), str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
            cwd=self.root,
        )

    def start(self) -> Cluster:
        self.initdb()
        start_on_candidate_port(self.start_on)
        self._wait_ready("the test PostgreSQL to accept connections")
        return self

    def _wait_ready(self, what: str) -> None:
        def ready() -> bool:
            probe = ("pg_isready", "-h", "127.0.0.1", "-p", str(self.port))
            return self._pg(*probe, check=False).returncode == 0

        wait_for(ready, START_TIMEOUT, what)

    def initdb(self) -> None:
        uid, gid = _owner()
        os.chown(self.root, uid, gid)
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        os.chown(pwfile, uid, gid)
        self._pg(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--pwfile",
            str(pwfile),
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--locale",
            "C.UTF-8",
            "--no-sync",
        )
        pwfile.unlink()

    def start_on(self, port: int) -> None:
        """Start the server on ``port``; PortInUseError when another program holds it."""
        self.port = port
        log_size = len(self.log())
        try:
            self._start_server()
        except subprocess.CalledProcessError:
            if "Address already in use" in self.log()[log_size:]:
                raise PortInUseError(port) from None
            raise

    def _start_server(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port}"
            f" -c unix_socket_directories={self.root} -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            f" -c shared_buffers={self.shared_buffers}"
        )
        self._pg(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
            "-w", "-t", str(int(START_TIMEOUT)), "start",
        )  # fmt: skip

    def shut_down(self) -> None:
        """Fast shutdown: clients are disconnected, the server is gone until ``start_again``."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def start_again(self) -> None:
        self._start_server()
        self._wait_ready("the test PostgreSQL to accept connections again")

    def restart(self) -> None:
        """Fast shutdown (clients disconnected), then start with the same options."""
        self._pg(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-m", "fast", "-w", "-t", str(int(START_TIMEOUT)), "restart",
        )  # fmt: skip

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str = "") -> str:
        """A new, empty database (``name``, dropped first if it exists; else a fresh name);
        returns its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def database_bytes(self, name: str) -> int:
        """The size of database ``name`` (pg_database_size)."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            row = conn.execute("SELECT pg_database_size(%s)", (name,)).fetchone()
        if row is None:
            raise RuntimeError(f"no database {name} in the cluster")
        return int(row[0])

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def start_cluster() -> Cluster:
    binaries = bin_dir()
    if binaries is None:
        raise RuntimeError(
            "PostgreSQL is not installed: run `make system-deps` (as root) to install the "
            "Debian package postgresql"
        )
    root = Path(tempfile.mkdtemp(prefix="rf-pg-"))
    cluster = Cluster(root, binaries)
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        raise
