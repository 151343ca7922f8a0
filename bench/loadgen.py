"""Python load generator: the fallback when wrk is absent, and the driver that records when each
failure happened (the operations benchmark needs the failure window).

`python -m bench.loadgen --url URL --specs FILE --connections N --duration S` prints one JSON
object (the fields of bench.load.LoadResult). Connections are spread over up to two processes
(the GIL would otherwise cap the rate), each running one thread per connection.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import re
import socket
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

from bench.load import REGEX_ERROR_PATTERN, LoadResult, RequestSpec

_ERROR_RE = re.compile(REGEX_ERROR_PATTERN)


def _classify(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connect"
    return "read"


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.failures_at: list[float] = []

    def fail(self, kind: str) -> None:
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1
            self.failures_at.append(time.time())


def _client(
    host: str, port: int, specs: list[RequestSpec], deadline: float, timeout: float, stats: _Stats
) -> None:
    conn: http.client.HTTPConnection | None = None
    i = 0
    while time.monotonic() < deadline:
        spec = specs[i % len(specs)]
        i += 1
        started = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            conn.request(spec.method, spec.path, body=spec.body or None, headers=spec.headers)
            resp = conn.getresponse()
            body = resp.read()
            if resp.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as exc:
            if conn is not None:
                conn.close()
                conn = None
            stats.fail(_classify(exc))
            # A refused connection returns at once: pace retries so the count stays meaningful.
            time.sleep(0.001)
            continue
        elapsed = time.monotonic() - started
        with stats.lock:
            stats.latencies.append(elapsed)
        if resp.status != 200:
            stats.fail("status")
        elif _ERROR_RE.search(body) or (spec.expect and spec.expect.encode() not in body):
            stats.fail("body")
    if conn is not None:
        conn.close()


def _process(
    url: str, specs_raw: list[dict[str, Any]], threads: int, duration: float, timeout: float
) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    specs = [RequestSpec(**s) for s in specs_raw]
    stats = _Stats()
    deadline = time.monotonic() + duration
    workers = [
        threading.Thread(target=_client, args=(host, port, specs, deadline, timeout, stats))
        for _ in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(duration + timeout + 5)
    return {
        "latencies": stats.latencies,
        "errors": stats.errors,
        "failures_at": stats.failures_at,
    }


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    rank = max(0, math.ceil(pct / 100 * len(sorted_values)) - 1)
    return sorted_values[rank]


def run(
    url: str, specs: list[RequestSpec], connections: int, duration: float, timeout: float
) -> LoadResult:
    processes = 2 if connections >= 8 else 1
    shares = [
        connections // processes + (1 if i < connections % processes else 0)
        for i in range(processes)
    ]
    specs_raw = [asdict(s) for s in specs]
    started = time.monotonic()
    with ProcessPoolExecutor(processes) as pool:
        futures = [pool.submit(_process, url, specs_raw, n, duration, timeout) for n in shares]
        parts = [f.result(timeout=duration + timeout + 30) for f in futures]
    elapsed = min(time.monotonic() - started, duration)
    latencies = sorted(x for p in parts for x in p["latencies"])
    errors: dict[str, int] = {}
    for p in parts:
        for kind, n in p["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    # As with wrk, `requests` counts responses; connection failures are only in `errors`.
    requests = len(latencies)
    return LoadResult(
        driver="loadgen",
        connections=connections,
        duration_s=elapsed,
        requests=requests,
        errors=errors,
        p50_ms=_percentile(latencies, 50) * 1000,
        p90_ms=_percentile(latencies, 90) * 1000,
        p99_ms=_percentile(latencies, 99) * 1000,
        max_ms=(latencies[-1] if latencies else 0.0) * 1000,
        mean_ms=(sum(latencies) / len(latencies) * 1000) if latencies else 0.0,
        failures_at=sorted(t for p in parts for t in p["failures_at"]),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:9380")
    parser.add_argument("--specs", required=True, help="JSON file: a list of RequestSpec fields")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds (bounded)")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, s")
    args = parser.parse_args(argv)
    with open(args.specs, encoding="utf-8") as fh:
        specs = [RequestSpec(**s) for s in json.load(fh)]
    result = run(args.url, specs, args.connections, args.duration, args.timeout)
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
