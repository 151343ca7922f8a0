"""``python -m api.admin copy --from sqlite:///... --to postgresql://...``: keys, datasets,
documents, their files, chunks and tasks arrive, verified by counts and checksums; a copy
interrupted part-way is run again without duplicating anything."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from support.postgres import PASSWORD

from api import auth, storage, text
from api.storage.base import TABLES

ROOT = Path(__file__).resolve().parent.parent


def _source(data_dir: Path) -> tuple[storage.Backend, list[str]]:
    backend = storage.open_backend(data_dir)
    store = backend.store
    store.add_key(auth.hash_key("ragflow-copied-key-0123456789"), "ragflow-copied-k", "t", "k")
    dataset = store.create_dataset("t", {"name": "ds", "parser_config": {"chunk_token_num": 64}})
    uploads = [
        storage.Upload("a.txt", "txt", "doc", io.BytesIO(b"alpha beta gamma")),
        storage.Upload("empty.txt", "txt", "doc", io.BytesIO(b"")),
        storage.Upload("東京.md", "md", "doc", io.BytesIO("東京 数据库 检索".encode())),
    ]
    docs = store.add_documents(dataset, uploads, "t")
    ids = [d["id"] for d in docs]
    backend.tasks.enqueue_parse(dataset["id"], ids)
    task = backend.tasks.claim("c_1", 60)
    assert task is not None
    backend.tasks.complete(task, [{"content": "alpha beta"}, {"content": "gamma 東京"}])
    store.replace_chunks(ids[2], [{"content": "数据库 检索", "important_keywords": ["东京"]}])
    return backend, ids


def _copy(data_dir: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.admin", "copy", "--from", f"sqlite:///{data_dir}/ragflow.db",
         "--to", url],
        cwd=ROOT,
        env={**os.environ, "DATA_DIR": str(data_dir.parent / "unused")},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip


def test_copy_moves_everything_and_verifies_it(tmp_path: Path, pg_database: str) -> None:
    data_dir = tmp_path / "data"
    source, ids = _source(data_dir)
    done = _copy(data_dir, pg_database)
    assert done.returncode == 0, done.stdout + done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "verified: every table and file matches"
    assert "documents: 3 in the source, 3 copied, 3 in the target" in done.stdout
    assert "files: 2 copied, 1 already there, 0 differ" in done.stdout  # the empty one
    target = storage.open_backend(tmp_path / "elsewhere", pg_database)
    assert target.store.key_tenant(auth.hash_key("ragflow-copied-key-0123456789")) == "t"
    dataset_id = str(next(source.transfer.rows("datasets"))["id"])
    for doc_id in ids:
        src = source.store.get_document(dataset_id, doc_id)
        dst = target.store.get_document(dataset_id, doc_id)
        assert src is not None and dst == src
        assert target.store.file_path(dst).read_bytes() == source.store.file_path(src).read_bytes()
    for question, expected in (("检索", {"数据库 检索"}), ("gamma", {"gamma 東京"})):
        terms = text.query_terms(question)
        hits = target.store.search_chunks([dataset_id], [], terms, 10)
        assert {h["content"] for h in hits} == expected, question
    assert target.tasks.depth() == source.tasks.depth()


def test_an_interrupted_copy_is_run_again_without_duplicates(
    tmp_path: Path, pg_database: str
) -> None:
    data_dir = tmp_path / "data"
    source, _ = _source(data_dir)
    target = storage.open_backend(tmp_path / "elsewhere", pg_database)
    target.migrations.migrate()
    # what an interrupted run leaves: the first tables and part of the documents
    for table in ("api_keys", "datasets"):
        target.transfer.put_rows(table, list(source.transfer.rows(table)))
    first_doc = next(source.transfer.rows("documents"))
    target.transfer.put_rows("documents", [first_doc])
    done = _copy(data_dir, pg_database)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "api_keys: 1 in the source, 0 copied, 1 in the target" in done.stdout
    assert "documents: 3 in the source, 2 copied, 3 in the target" in done.stdout
    again = _copy(data_dir, pg_database)
    assert again.returncode == 0, again.stdout + again.stderr
    lines = {line.split(":")[0]: line for line in again.stdout.splitlines()}
    for table in TABLES:
        assert ", 0 copied," in lines[table], lines[table]
    assert "files: 0 copied, 3 already there, 0 differ" in again.stdout
    assert again.stdout.splitlines()[-1] == "verified: every table and file matches"
