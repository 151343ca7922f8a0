"""Expensive requests against the real bundle (launcher, Gunicorn sync workers, SQLite) do not
hold the service: five chunk-list requests with 64 keywords each on a 6,000-chunk document,
and five with 1,000 keywords, run at once while /v1/system/healthz keeps answering.

Before the keywords filter went through the FTS index once per query, each of these requests
scanned the index once per chunk: about 9 s each here, so five of them on two workers held
healthz for tens of seconds (the issue measured 81 s)."""

from __future__ import annotations

import http.client
import io
import json
import random
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.supervised import SupervisedRun

from api import auth, storage

StartBundle = Callable[..., SupervisedRun]
KEY = "lifecycle-test-key"
VOCABULARY = [f"word{i}" for i in range(80)]
CHUNKS = 6_000
CLIENT_TIMEOUT_S = 20.0
HEALTHZ_DEADLINE_S = 5.0


def _request(
    port: int, method: str, path: str, body: Any = None, timeout: float = CLIENT_TIMEOUT_S
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _seed(run: SupervisedRun) -> str:
    """A dataset with one document of CHUNKS chunks; returns the chunk-list path."""
    status, body = _request(run.port, "POST", "/api/v1/datasets", {"name": "abuse"})
    assert status == 200 and body["code"] == 0, body
    dataset_id = body["data"]["id"]
    backend = storage.open_backend(Path(run.env["DATA_DIR"]))
    store = backend.store
    dataset = store.get_dataset(auth.DEFAULT_TENANT, dataset_id)  # the bootstrap key's
    assert dataset is not None
    upload = storage.Upload("big.txt", "txt", "doc", io.BytesIO(b"x"))
    (doc,) = store.add_documents(dataset, [upload], "t")
    rng = random.Random(10)
    contents = [" ".join(rng.choices(VOCABULARY, k=40)) + f" unique{i}" for i in range(CHUNKS)]
    store.replace_chunks(doc["id"], [{"content": c} for c in contents])
    backend.close()
    return f"/api/v1/datasets/{dataset_id}/documents/{doc['id']}/chunks"


def test_expensive_keyword_requests_do_not_hold_healthz(
    start_bundle: StartBundle,
) -> None:
    run = start_bundle()
    chunks = _seed(run)
    accepted = "?" + urllib.parse.urlencode({"keywords": " ".join(VOCABULARY[:64])})
    refused = "?" + urllib.parse.urlencode({"keywords": " ".join(f"w{i}" for i in range(1000))})
    answers: list[tuple[str, int, dict[str, Any]]] = []
    errors: list[str] = []

    def client(query: str) -> None:
        for _ in range(3):  # bounded: three requests per client
            try:
                status, body = _request(run.port, "GET", chunks + query)
                answers.append((query, status, body))
            except OSError as exc:  # a timeout: the request held a worker for 20 s
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [
        threading.Thread(target=client, args=(q,), daemon=True)
        for q in [accepted] * 5 + [refused] * 5
    ]
    for thread in threads:
        thread.start()
    healthz: list[float] = []
    while any(t.is_alive() for t in threads):  # bounded by the clients' own timeouts
        started = time.monotonic()
        status, body = _request(run.port, "GET", "/v1/system/healthz", timeout=HEALTHZ_DEADLINE_S)
        healthz.append(time.monotonic() - started)
        assert status == 200 and body["status"] == "ok", body
        time.sleep(0.05)
    for thread in threads:
        thread.join(CLIENT_TIMEOUT_S * 3)
    assert errors == []
    assert len(answers) == 30
    for query, status, body in answers:
        assert status == 200
        if query == accepted:
            assert body["code"] == 0 and body["data"]["total"] == CHUNKS, body.get("message")
        else:
            assert body["code"] == 101 and "has 1000 distinct search terms" in body["message"]
    print(f"\nhealthz answered {len(healthz)} times, slowest {max(healthz, default=0):.3f} s")
