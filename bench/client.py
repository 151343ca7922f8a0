"""The API calls the benchmarks make to set up data; bulk chunk seeding through api.storage."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from api import storage
from bench.load import RequestSpec

PING = RequestSpec("GET", "/v1/system/ping", expect="pong")


class ApiError(RuntimeError):
    pass


class Client:
    def __init__(self, base_url: str, api_key: str, timeout: float = 60.0) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.session.request(method, self.base_url + path, timeout=self.timeout, **kwargs)
        if resp.status_code != 200:
            raise ApiError(f"{method} {path}: HTTP {resp.status_code} {resp.text[:300]}")
        body = resp.json()
        if body.get("code") != 0:
            raise ApiError(f"{method} {path}: {body}")
        return body.get("data")

    def create_dataset(self, name: str) -> str:
        return str(self.call("POST", "/api/v1/datasets", json={"name": name})["id"])

    def upload(self, dataset_id: str, files: Sequence[tuple[str, bytes]]) -> list[str]:
        parts = [("file", (name, data, "text/plain")) for name, data in files]
        docs = self.call("POST", f"/api/v1/datasets/{dataset_id}/documents", files=parts)
        return [str(d["id"]) for d in docs]

    def parse(self, dataset_id: str, doc_ids: Sequence[str]) -> None:
        self.call(
            "POST", f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": list(doc_ids)}
        )

    def count_documents(self, dataset_id: str, run: str) -> int:
        data = self.call(
            "GET",
            f"/api/v1/datasets/{dataset_id}/documents",
            params={"run": run, "page": 1, "page_size": 1},
        )
        return int(data["total"])

    def retrieve(self, question: str, dataset_ids: Sequence[str]) -> dict[str, Any]:
        data = self.call(
            "POST",
            "/api/v1/retrieval",
            json={"question": question, "dataset_ids": list(dataset_ids)},
        )
        return dict(data)

    def matches(self, question: str, dataset_ids: Sequence[str]) -> int:
        """How many chunks the question finds among the default 1,024 candidates: retrieval's
        total counts one page (as RAGFlow's), so the page is as large as the candidates."""
        data = self.call(
            "POST",
            "/api/v1/retrieval",
            json={"question": question, "dataset_ids": list(dataset_ids), "page_size": 1024},
        )
        return int(data["total"])

    def wait_documents(
        self, dataset_id: str, expected: int, deadline_s: float, poll_s: float = 0.1
    ) -> float:
        """Seconds until `expected` documents are DONE; raises on FAIL or at the deadline."""
        started = time.monotonic()
        while time.monotonic() - started < deadline_s:
            if self.count_documents(dataset_id, "FAIL"):
                raise ApiError(f"documents of dataset {dataset_id} ended FAIL")
            if self.count_documents(dataset_id, "DONE") >= expected:
                return time.monotonic() - started
            time.sleep(poll_s)
        done = self.count_documents(dataset_id, "DONE")
        raise ApiError(f"{done}/{expected} documents DONE after {deadline_s:.0f} s")

    def retrieval_spec(self, question: str, dataset_ids: Sequence[str]) -> RequestSpec:
        return RequestSpec(
            "POST",
            "/api/v1/retrieval",
            body=json.dumps({"question": question, "dataset_ids": list(dataset_ids)}),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
            expect='"chunks"',
        )


def seed_chunks(
    data_dir: Path, doc_ids: Sequence[str], contents: Sequence[str], database_url: str = ""
) -> None:
    """Store `contents` as chunks spread evenly over `doc_ids`, one transaction per document,
    through api.storage (much faster than one HTTP request per chunk)."""
    backend = storage.open_backend(data_dir, database_url)
    per_doc = -(-len(contents) // len(doc_ids))
    try:
        for i, doc_id in enumerate(doc_ids):
            part = contents[i * per_doc : (i + 1) * per_doc]
            backend.store.replace_chunks(doc_id, [{"content": c} for c in part])
    finally:
        backend.close()


def seed_corpus(
    client: Client,
    data_dir: Path,
    contents: Sequence[str],
    documents: int = 10,
    database_url: str = "",
) -> tuple[str, list[str]]:
    """A dataset with `documents` documents holding `contents` as chunks: (dataset id, doc ids)."""
    dataset_id = client.create_dataset(f"bench-{time.time_ns()}")
    files = [(f"seed{i:03d}.txt", b"seed document\n") for i in range(documents)]
    doc_ids = client.upload(dataset_id, files)
    seed_chunks(data_dir, doc_ids, contents, database_url)
    return dataset_id, doc_ids
