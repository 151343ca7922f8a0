"""The metrics of a real bundle (launcher, supervisord, nginx, Gunicorn, an executor) read from
its metrics endpoint: bounded cardinality, the memory watchdogs with an allocation that crosses
the limit through real request paths, restarts, and the envelope code in the access log."""

from __future__ import annotations

import http.client
import json
import threading
import uuid
from typing import Any

import requests
from support import ragflow_client as client
from support.waiting import wait_for


def scrape(port: int) -> dict[str, float]:
    """series (name + labels, as exposed) -> value."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    series = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            series[name] = float(value)
    return series


def value(series: dict[str, float], name: str) -> float:
    if name not in series:
        raise AssertionError(f"{name} not exported; have: {sorted(series)[:50]}")
    return series[name]


def _request(conn: http.client.HTTPConnection, method: str, path: str) -> None:
    conn.request(method, path, headers={"Authorization": f"Bearer {client.API_KEY}"})
    response = conn.getresponse()
    response.read()
    assert response.status in (200, 400, 404, 405), (method, path, response.status)


def test_ten_thousand_distinct_paths_and_ids_add_no_series(start_bundle: Any) -> None:
    # no worker recycling during the test: a new worker pid is a new (legitimate) process series
    run = start_bundle(METRICS_PORT="0", GUNICORN_MAX_REQUESTS="0")
    metrics_port = run.metrics_port
    kinds = (
        ("GET", "/unknown/{id}/path"),
        ("PUT", "/api/v1/datasets/{id}"),
        ("GET", "/api/v1/datasets/{id}/documents/{id}/chunks"),
        ("DELETE", "/api/v1/datasets/{id}/documents"),
    )
    conn = http.client.HTTPConnection("127.0.0.1", run.port, timeout=30)

    def counted(at_least: int) -> dict[str, float] | None:
        """A scrape once the workers wrote at least ``at_least`` requests (they write every
        api.metrics.FLUSH_SECONDS)."""
        found = scrape(metrics_port)
        total = sum(v for k, v in found.items() if k.startswith("ragflow_http_requests_total{"))
        return found if total >= at_least else None

    for method, template in kinds:  # every kind of answer once, so its series exists
        _request(conn, method, template.replace("{id}", uuid.uuid4().hex))
    before = wait_for(lambda: counted(len(kinds)), 10, "the first requests in the metrics")
    for number in range(10_000):
        method, template = kinds[number % len(kinds)]
        _request(conn, method, template.replace("{id}", uuid.uuid4().hex))
    conn.close()
    after = wait_for(lambda: counted(10_000 + len(kinds)), 10, "every request in the metrics")
    grown = sorted(set(after) - set(before))
    assert grown == [], grown


def _big_json_body(size: int) -> bytes:
    """A JSON array of short strings just under JSON_BODY_BYTES: parsing it allocates about
    ten times its size (a str object per item), then the handler refuses it (101)."""
    item = b'"ab",'
    count = size // len(item)
    return b"[" + item * (count - 1) + b'"ab"]'


def test_worker_over_memory_is_retired_after_its_request_with_no_failed_request(
    start_bundle: Any,
) -> None:
    run = start_bundle(METRICS_PORT="0", GUNICORN_WORKER_MAX_MEMORY="64MB")
    metrics_port = run.metrics_port
    base = f"http://127.0.0.1:{run.port}"
    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def pings() -> None:
        nonlocal answered
        with requests.Session() as session:
            while not stop.is_set() and answered < 100_000:
                try:
                    response = session.get(f"{base}/v1/system/ping", timeout=10)
                    if response.text != "pong":
                        failures.append(f"{response.status_code} {response.text[:80]}")
                except requests.RequestException as exc:
                    failures.append(repr(exc))
                answered += 1

    thread = threading.Thread(target=pings)
    thread.start()
    try:
        body = _big_json_body(8 * 1024 * 1024 - 64)
        headers = {
            "Authorization": f"Bearer {client.API_KEY}",
            "Content-Type": "application/json",
        }
        for _ in range(3):  # each answered in full by a worker that is then retired
            response = requests.post(
                f"{base}/api/v1/datasets", data=body, headers=headers, timeout=60
            )
            assert response.status_code == 200
            assert response.json()["code"] == 101, response.text[:200]
        wait_for(
            lambda: (
                value(
                    scrape(metrics_port), 'ragflow_gunicorn_worker_recycles_total{reason="memory"}'
                )
                >= 3
            ),
            60,
            "three recycles for memory",
        )
        wait_for(
            lambda: value(scrape(metrics_port), "ragflow_gunicorn_workers") == 2, 30, "2 workers"
        )
    finally:
        stop.set()
        thread.join(30)
    assert answered > 0
    assert failures == []
    series = scrape(metrics_port)
    assert value(series, 'ragflow_gunicorn_worker_recycles_total{reason="crash"}') == 0
    assert "GUNICORN_WORKER_MAX_MEMORY" in run.stderr() + run.stdout()
    # the access line carries the envelope code (HTTP 200 either way)
    wait_for(
        lambda: (
            '"POST /api/v1/datasets HTTP/1.0" 200' in run.stdout() and "code=101" in run.stdout()
        ),
        10,
        "the access line of the refused body, with its envelope code",
    )


def test_executor_over_memory_hands_back_its_task_and_restarts(start_bundle: Any) -> None:
    run = start_bundle(METRICS_PORT="0", EXECUTOR_MAX_MEMORY="64MB", TASK_MAX_ATTEMPTS="2")
    metrics_port = run.metrics_port
    first_pid = run.info("task_executor:task_executor_00")["pid"]
    dataset = client.create_dataset(run.port)
    # parsing 24 MB of distinct lines holds the text, its chunks and their tokens: about
    # 90 MB more than an idle executor, well above 64 MB
    text = b"".join(
        b"line %d of a large text document for the executor memory watchdog\n" % number
        for number in range(24 * 1024 * 1024 // 66)
    )
    documents = client.upload(run.port, dataset, {"large.txt": text})
    del text
    client.start_parsing(run.port, dataset, documents)

    def document() -> dict[str, Any]:
        answer = client.call(run.port, "GET", f"/api/v1/datasets/{dataset}/documents")
        return dict(answer["data"]["docs"][0])

    # TASK_MAX_ATTEMPTS=2: handed back twice by an executor over its limit, then FAIL
    wait_for(lambda: document()["run"] == "FAIL", 120, "the document to end FAIL")
    assert "EXECUTOR_MAX_MEMORY" in document()["progress_msg"]
    series = scrape(metrics_port)
    assert value(series, 'ragflow_tasks_total{outcome="handed_back"}') >= 1
    assert value(series, 'ragflow_program_restarts_total{program="task_executor_00"}') >= 1
    assert run.info("task_executor:task_executor_00")["pid"] != first_pid
    wait_for(
        lambda: run.states().get("task_executor:task_executor_00") == "RUNNING", 30, "executor up"
    )
    assert "above EXECUTOR_MAX_MEMORY" in run.stderr() + run.stdout()
    assert json.dumps(document())  # the API still answers


def test_worker_recycles_are_counted_by_reason(start_bundle: Any) -> None:
    """max_requests (a worker's 10th request), crash (a worker SIGKILLed, as the OOM killer
    does) and timeout (a request that stalls past GUNICORN_TIMEOUT: the master aborts it)."""
    import os
    import signal
    import socket

    import psutil

    run = start_bundle(
        METRICS_PORT="0",
        PROXY="none",  # the stalled request must reach a worker, not wait in nginx's buffer
        GUNICORN_TIMEOUT="2",
        GUNICORN_MAX_REQUESTS="10",
        GUNICORN_MAX_REQUESTS_JITTER="0",
    )
    metrics_port = run.metrics_port

    def recycles(reason: str) -> float:
        return value(
            scrape(metrics_port), f'ragflow_gunicorn_worker_recycles_total{{reason="{reason}"}}'
        )

    assert (recycles("max_requests"), recycles("crash"), recycles("timeout")) == (0, 0, 0)
    with requests.Session() as session:
        for _ in range(25):
            assert session.get(f"http://127.0.0.1:{run.port}/v1/system/ping", timeout=10).ok
    wait_for(lambda: recycles("max_requests") >= 1, 30, "a recycle for max_requests")

    def workers() -> list[psutil.Process]:
        """The master's live workers (not one that is exiting after its max_requests)."""
        return [
            child
            for child in psutil.Process(run.host_pid("web")).children()
            if child.status() != psutil.STATUS_ZOMBIE
        ]

    seen: list[tuple[float, frozenset[int]]] = []

    def settled() -> bool:
        """Two live workers, the same ones and the same count on two polls in a row."""
        seen.append((recycles("max_requests"), frozenset(w.pid for w in workers())))
        return len(seen) > 1 and seen[-1] == seen[-2] and len(seen[-1][1]) == 2

    wait_for(settled, 30, "the workers to settle after their recycles")
    before_crash = recycles("crash")
    os.kill(workers()[0].pid, signal.SIGKILL)
    wait_for(lambda: recycles("crash") == before_crash + 1, 30, "a recycle for a crash")

    stalled = socket.create_connection(("127.0.0.1", run.port), timeout=30)
    try:
        stalled.sendall(
            b"POST /api/v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {client.API_KEY}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        wait_for(lambda: recycles("timeout") >= 1, 30, "a recycle for a timeout")
    finally:
        stalled.close()
    assert recycles("crash") == before_crash + 1  # the aborted worker is not counted twice
