"""Uploaded files in PostgreSQL (table ``file_blocks``: 1 MiB bytea blocks per document), so
any executor on any machine parses any upload. Streamed both ways: an upload is written block
by block inside the transaction that records it, and read back block by block (one query, its
rows streamed) into a local cache file (DATA_DIR/files/<dataset>/<document>, written
atomically) that parsers open by path. A document's bytes never change, so a cached file stays
valid until it is deleted."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import psycopg

from api.storage import files as local
from api.storage import fs
from api.storage.errors import NotFound

BLOCK = 1024 * 1024


def write_blocks(conn: psycopg.Connection[Any], doc_id: str, stream: IO[bytes]) -> int:
    """Store ``stream`` as the document's blocks (the caller's transaction); returns its size."""
    size = 0
    n = 0
    while block := stream.read(BLOCK):
        conn.execute(
            "INSERT INTO file_blocks (doc_id, n, data) VALUES (%s, %s, %s)", (doc_id, n, block)
        )
        size += len(block)
        n += 1
    return size


def materialize(
    conn: psycopg.Connection[Any], cache: local.LocalFileStore, document: Mapping[str, Any]
) -> Path:
    """The document's local copy, fetched block by block when missing."""
    final = cache.file_path(document)
    if final.exists():
        return final
    cache.dataset_folder(str(document["dataset_id"]))
    with cache.storing():
        staged, out = fs.stage(cache.files_dir)
    try:
        with out:
            copy_blocks(conn, cache, str(document["id"]), out)
            with cache.storing():
                out.flush()
                os.fsync(out.fileno())
                os.replace(staged, final)
    except BaseException:
        local.remove([staged])
        raise
    return final


def copy_blocks(
    conn: psycopg.Connection[Any], cache: local.LocalFileStore, doc_id: str, out: IO[bytes]
) -> None:
    """Write the document's bytes to ``out``: one query, its rows streamed one block at a
    time (single-row mode). NotFound when the document does not exist."""
    blocks = conn.cursor().stream(
        "SELECT data FROM file_blocks WHERE doc_id = %s ORDER BY n", (doc_id,)
    )
    stored = 0
    for row in blocks:
        with cache.storing():
            out.write(row["data"])
        stored += 1
    if not stored and not _exists(conn, doc_id):  # no blocks: an empty file, or no document
        raise NotFound(f"Document {doc_id} does not exist")


def _exists(conn: psycopg.Connection[Any], doc_id: str) -> bool:
    found = conn.execute("SELECT 1 FROM documents WHERE id = %s", (doc_id,))
    return found.fetchone() is not None
