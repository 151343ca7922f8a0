"""The storage backends that the behaviour tests run on, each with an inspector.

The seam exposes what the application needs; a test also reads rows the seam does not expose
(a task's state, a document's progress) and moves a lease's clock. Each backend gives those
through its Inspector. Add a backend to BACKENDS and every test parametrized with it runs on it.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row

from api import storage
from api.storage.repository_sql import SqlStorage
from api.storage.sqlite import connections
from api.storage.sqlite.dialect import SqliteDialect


class SqliteStore(SqlStorage):
    """The Storage seam on SQLite with its database file and this thread's connection, for the
    tests of what is particular to SQLite (pragmas, plans, the writer lock)."""

    def __init__(self, data_dir: Path, db_path: Path | None = None) -> None:
        self.db_path = db_path if db_path is not None else data_dir / "ragflow.db"
        super().__init__(SqliteDialect(data_dir, self.db_path), data_dir)

    @property
    def conn(self) -> sqlite3.Connection:
        return connections.connection(self.db_path)


def indexed_words(conn: sqlite3.Connection) -> dict[int, tuple[str, ...]]:
    """What SQLite's full-text index holds of each chunk, by rowid: the words of each of its
    columns, in order. The index keeps no copy of them: they are read from its postings
    (fts5vocab), so a chunk taken out with other words than it was indexed with shows."""
    conn.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.fts_instances"
        " USING fts5vocab(main, chunks_fts, instance)"
    )
    columns = ("content", "title", "keywords", "questions")
    found: dict[int, list[list[tuple[int, str]]]] = {}
    for term, doc, column, offset in conn.execute(
        "SELECT term, doc, col, offset FROM temp.fts_instances"
    ):
        found.setdefault(doc, [[] for _ in columns])[columns.index(column)].append((offset, term))
    return {
        doc: tuple(" ".join(term for _, term in sorted(words)) for words in held)
        for doc, held in found.items()
    }


class Inspector(Protocol):
    def task(self, task_id: str) -> dict[str, Any]: ...
    def last_task(self, doc_id: str) -> dict[str, Any]:
        """The document's most recently queued task."""

    def document(self, doc_id: str) -> dict[str, Any]: ...
    def documents(self, doc_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The documents among ``doc_ids`` that exist, by id."""

    def chunks(self, doc_id: str) -> list[dict[str, Any]]:
        """The document's chunks, in insertion order."""

    def expire(self, task_id: str) -> None:
        """The clock moves past the task's lease."""

    def silence_executors(self, seconds: float, *, but: str) -> None:
        """Every executor except ``but`` last beat ``seconds`` earlier than it did."""

    def corrupt_parser_config(self, doc_id: str) -> None:
        """Store a parser_config that is not valid JSON (an older version's bug)."""

    def stored_files(self, dataset_id: str) -> list[str]:
        """The ids of the dataset's documents whose uploaded bytes are stored, sorted."""


class SqliteInspector:
    def __init__(self, data_dir: Path) -> None:
        self.db_path = data_dir / "ragflow.db"
        self.files_dir = data_dir / "files"

    def stored_files(self, dataset_id: str) -> list[str]:
        folder = self.files_dir / dataset_id
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []

    @property
    def conn(self) -> sqlite3.Connection:
        return connections.connection(self.db_path)

    def task(self, task_id: str) -> dict[str, Any]:
        return dict(self.conn.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone())

    def document(self, doc_id: str) -> dict[str, Any]:
        return dict(self.conn.execute("SELECT * FROM documents WHERE id = ?", (doc_id,)).fetchone())

    def last_task(self, doc_id: str) -> dict[str, Any]:
        return dict(
            self.conn.execute(
                "SELECT * FROM tasks WHERE doc_id = ? ORDER BY enqueued_at DESC LIMIT 1", (doc_id,)
            ).fetchone()
        )

    def documents(self, doc_ids: list[str]) -> dict[str, dict[str, Any]]:
        marks = ",".join("?" * len(doc_ids))
        rows = self.conn.execute(f"SELECT * FROM documents WHERE id IN ({marks})", doc_ids)
        return {r["id"]: dict(r) for r in rows}

    def chunks(self, doc_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM chunks WHERE doc_id = ? ORDER BY seq", (doc_id,))
        return [dict(r) for r in rows]

    def expire(self, task_id: str) -> None:
        self.conn.execute("UPDATE tasks SET lease_expires = 0 WHERE id = ?", (task_id,))

    def silence_executors(self, seconds: float, *, but: str) -> None:
        self.conn.execute(
            "UPDATE executors SET last_beat = last_beat - ? WHERE consumer != ?", (seconds, but)
        )

    def corrupt_parser_config(self, doc_id: str) -> None:
        self.conn.execute("UPDATE documents SET parser_config = '{broken' WHERE id = ?", (doc_id,))


class PostgresInspector:
    """Reads and moves rows over its own autocommit connection (the seam's pool untouched)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection[dict[str, Any]] | None = None

    @property
    def conn(self) -> psycopg.Connection[dict[str, Any]]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True, row_factory=dict_row)
        return self._conn

    def _one(self, query: str, args: tuple[Any, ...]) -> dict[str, Any]:
        row = self.conn.execute(query, args).fetchone()
        assert row is not None, f"no row for {args}"
        return dict(row)

    def task(self, task_id: str) -> dict[str, Any]:
        return self._one("SELECT * FROM tasks WHERE id = %s", (task_id,))

    def document(self, doc_id: str) -> dict[str, Any]:
        return self._one("SELECT * FROM documents WHERE id = %s", (doc_id,))

    def last_task(self, doc_id: str) -> dict[str, Any]:
        return self._one(
            "SELECT * FROM tasks WHERE doc_id = %s ORDER BY enqueued_at DESC LIMIT 1", (doc_id,)
        )

    def documents(self, doc_ids: list[str]) -> dict[str, dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM documents WHERE id = ANY(%s)", (doc_ids,))
        return {r["id"]: dict(r) for r in rows}

    def chunks(self, doc_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT * FROM chunks WHERE doc_id = %s ORDER BY seq", (doc_id,)
        ).fetchall()
        return [dict(r) for r in rows]

    def expire(self, task_id: str) -> None:
        self.conn.execute("UPDATE tasks SET lease_expires = 0 WHERE id = %s", (task_id,))

    def silence_executors(self, seconds: float, *, but: str) -> None:
        self.conn.execute(
            "UPDATE executors SET last_beat = last_beat - %s WHERE consumer != %s", (seconds, but)
        )

    def corrupt_parser_config(self, doc_id: str) -> None:
        self.conn.execute("UPDATE documents SET parser_config = '{broken' WHERE id = %s", (doc_id,))

    def stored_files(self, dataset_id: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT DISTINCT b.doc_id FROM file_blocks b JOIN documents d ON d.id = b.doc_id"
            " WHERE d.dataset_id = %s ORDER BY b.doc_id",
            (dataset_id,),
        ).fetchall()
        return [str(r["doc_id"]) for r in rows]


# A backend under test from (DATA_DIR, a function returning a fresh database's URL: only
# backends that need a server call it, which starts the session's throwaway cluster).
NewDatabase = Callable[[], str]


def inspector(data_dir: Path, url: str) -> Inspector:
    """The inspector of the database DATABASE_URL ``url`` names ("": SQLite under data_dir)."""
    return PostgresInspector(url) if url.startswith("postgresql") else SqliteInspector(data_dir)


def _postgres(data_dir: Path, new_database: NewDatabase) -> tuple[storage.Backend, Inspector]:
    url = new_database()
    return storage.open_backend(data_dir, url), PostgresInspector(url)


BACKENDS: dict[str, Callable[[Path, NewDatabase], tuple[storage.Backend, Inspector]]] = {
    "sqlite": lambda data_dir, _: (storage.open_backend(data_dir), SqliteInspector(data_dir)),
    "postgresql": _postgres,
}


def add_documents(
    store: storage.Storage, tenant: str, names: list[str], parser_config: dict[str, Any]
) -> tuple[str, list[str]]:
    """A new dataset of ``tenant`` holding one small document per name: (dataset id, doc ids)."""
    dataset = store.create_dataset(
        tenant, {"name": f"ds of {tenant} {len(names)}", "parser_config": parser_config}
    )
    uploads = [
        storage.Upload(name, name.rsplit(".", 1)[-1], "doc", io.BytesIO(f"text of {name}".encode()))
        for name in names
    ]
    return dataset["id"], [d["id"] for d in store.add_documents(dataset, uploads, tenant)]
