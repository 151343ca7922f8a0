"""Seeded databases of bench.corpus chunks, per backend, cached under bench/.seeded/ (gitignored)
so that reruns skip seeding.

Layout, one directory per backend and size::

    bench/.seeded/sqlite/<chunks>/        DATA_DIR: ragflow.db, files/, seeded.json
    bench/.seeded/postgresql/cluster/     the bench's own PostgreSQL cluster (initdb once)
    bench/.seeded/postgresql/<chunks>/    DATA_DIR (files cache), seeded.json; the chunks live
                                          in database ``chunks_<chunks>`` of that cluster

A size is cached once its ``seeded.json`` exists (written last, after the seed committed): an
interrupted seed starts over. ``seeded.json`` records the dataset (one dataset of the default
tenant, the bootstrap key's, with the chunks spread over DOCUMENTS documents, built in process
through ``api.storage``) and the seconds the seeding took.

The cluster is the test suite's throwaway cluster made persistent (tests/support/postgres.py:
initdb as a non-root user, 127.0.0.1 on a free port, its unix socket in its own directory,
fsync off): the bench starts it when it needs it and stops it at the end (``BenchCluster``), and
nothing else runs in it.

    .venv/bin/python -m bench.seeded [--backends sqlite postgresql] 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

from support.ports import start_on_candidate_port
from support.postgres import Cluster, bin_dir

from api import storage
from api.auth import DEFAULT_TENANT
from bench.corpus import Corpus

ROOT = Path(__file__).resolve().parent / ".seeded"
BACKENDS = ("sqlite", "postgresql")
DOCUMENTS = 20
BATCH = 50_000  # chunks generated at a time: bounds the seeding's memory
FACTS = "seeded.json"


@dataclass(frozen=True)
class Seeded:
    """What a cached seed holds and what it cost (``seed_s``: measured once, when seeded)."""

    backend: str
    chunks: int
    dataset_id: str
    doc_ids: list[str]
    seed_s: float
    database: str  # PostgreSQL: the database's name in the bench cluster; SQLite: ""


def seed_dir(root: Path, backend: str, chunks: int) -> Path:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if chunks < DOCUMENTS or chunks % DOCUMENTS:
        raise ValueError(f"chunks must be a positive multiple of {DOCUMENTS}, not {chunks}")
    return root / backend / str(chunks)


def database_name(chunks: int) -> str:
    return f"chunks_{chunks}"


def cached(root: Path, backend: str, chunks: int) -> Seeded | None:
    """The facts of a complete seed, or None when there is none (or an interrupted one)."""
    path = seed_dir(root, backend, chunks) / FACTS
    if not path.exists():
        return None
    return Seeded(**json.loads(path.read_text()))


def record(root: Path, facts: Seeded) -> None:
    """Mark a seed complete (last step of seeding: atomically)."""
    path = seed_dir(root, facts.backend, facts.chunks) / FACTS
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(facts), indent=1) + "\n")
    tmp.replace(path)


# The bench cluster's buffer cache: a quarter of the machine's memory, as a server sized for the
# database would have (docs/fleet.md, Sizing); the test clusters keep 32 MB.
SHARED_BUFFERS = f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') // 4 >> 20}MB"


class BenchCluster(Cluster):
    """The bench's persistent PostgreSQL cluster under ``root``: initdb once, then reused. When
    another bench process already runs it, this one connects to it and leaves it running."""

    owned = False

    def open(self) -> BenchCluster:
        if not (self.data / "PG_VERSION").exists():
            shutil.rmtree(self.root, ignore_errors=True)
            self.root.mkdir(parents=True)
            self.initdb()
        if self._pg("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0:
            # postmaster.pid: pid, data directory, start time, port, ...
            self.port = int((self.data / "postmaster.pid").read_text().splitlines()[3])
        else:
            start_on_candidate_port(self.start_on)
            self.owned = True
        self._wait_ready("the bench PostgreSQL to accept connections")
        return self

    def close(self) -> None:
        if self.owned:
            self.shut_down()


@contextmanager
def bench_cluster(root: Path = ROOT) -> Iterator[BenchCluster]:
    """The bench cluster, started for the duration of the block."""
    binaries = bin_dir()
    if binaries is None:
        raise RuntimeError(
            "PostgreSQL is not installed: run `make system-deps` (as root) to install the "
            "Debian package postgresql"
        )
    root.mkdir(parents=True, exist_ok=True)
    cluster = BenchCluster(
        root / "postgresql" / "cluster", binaries, shared_buffers=SHARED_BUFFERS
    ).open()
    try:
        yield cluster
    finally:
        cluster.close()


def _seed(data_dir: Path, url: str, backend: str, chunks: int, database: str) -> Seeded:
    started = time.monotonic()
    opened = storage.open_backend(data_dir, url)
    try:
        store = opened.store
        dataset = store.create_dataset(DEFAULT_TENANT, {"name": f"bench-{chunks}"})
        uploads = [
            storage.Upload(f"seed{i:03d}.txt", "txt", "doc", io.BytesIO(b"seed document\n"))
            for i in range(DOCUMENTS)
        ]
        doc_ids = [str(d["id"]) for d in store.add_documents(dataset, uploads, DEFAULT_TENANT)]
        corpus = Corpus()
        per_doc = chunks // DOCUMENTS
        for number, doc_id in enumerate(doc_ids, 1):
            contents: list[str] = []
            while len(contents) < per_doc:
                contents.extend(corpus.chunks(min(BATCH, per_doc - len(contents))))
            store.replace_chunks(doc_id, [{"content": c} for c in contents])
            print(
                f"  seeding {backend} {chunks:,}: document {number}/{DOCUMENTS}, "
                f"{time.monotonic() - started:.0f} s",
                flush=True,
            )
    finally:
        opened.close()
    return Seeded(
        backend=backend,
        chunks=chunks,
        dataset_id=str(dataset["id"]),
        doc_ids=doc_ids,
        seed_s=round(time.monotonic() - started, 1),
        database=database,
    )


def seeded(
    backend: str, chunks: int, cluster: BenchCluster | None = None, root: Path = ROOT
) -> tuple[Path, str, Seeded]:
    """(DATA_DIR, DATABASE_URL, facts) of a seeded database, seeding it first if needed.
    PostgreSQL needs the started bench ``cluster``."""
    data_dir = seed_dir(root, backend, chunks)
    database = database_name(chunks) if backend == "postgresql" else ""
    if database and cluster is None:
        raise ValueError("a PostgreSQL seed needs the bench cluster (bench_cluster())")
    url = cluster.url(database) if cluster is not None and database else ""
    facts = cached(root, backend, chunks)
    if facts is None:
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        data_dir.chmod(0o700)
        if cluster is not None and database:
            url = cluster.create_database(database)
        facts = _seed(data_dir, url, backend, chunks, database)
        record(root, facts)
    return data_dir, url, facts


def database_bytes(data_dir: Path, facts: Seeded, cluster: BenchCluster | None) -> int:
    """The database's size now: SQLite's file (and its WAL), or pg_database_size."""
    if facts.database:
        if cluster is None:
            raise ValueError("the size of a PostgreSQL seed needs the bench cluster")
        return cluster.database_bytes(facts.database)
    db = data_dir / storage.DEFAULT_DB_NAME
    wal = db.with_name(db.name + "-wal")
    return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.seeded", description=__doc__)
    parser.add_argument("chunks", type=int, nargs="+")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    args = parser.parse_args(argv)
    needs_cluster = "postgresql" in args.backends
    with bench_cluster() if needs_cluster else nullcontext() as cluster:
        for chunks in args.chunks:
            for backend in args.backends:
                data_dir, _, facts = seeded(backend, chunks, cluster)
                size = database_bytes(data_dir, facts, cluster)
                print(f"{backend} {chunks:,}: seeded in {facts.seed_s} s, {size:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
