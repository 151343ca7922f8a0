"""Benchmark 6: what the nginx proxy costs, and what it buys under slow clients.

Two production bundles run side by side in one run on the same data: `proxy` (PROXY=nginx, the
default: nginx on the port, Gunicorn on a unix socket) and `direct` (PROXY=none: Gunicorn on the
port). Cells are interleaved within each round: GET /v1/system/ping and POST /api/v1/retrieval
over 10k chunks at CONNECTIONS connections, DURATION seconds each. Then, on the proxy bundle, a
normal request's latency (ping at SLOW_PROBE_CONNECTIONS connections) without and with
SLOW_CLIENTS slow clients connected (half sent part of their headers, half part of a body, all
then wait), 2 x rounds each, alternating which comes first. The direct bundle is not measured
that way: GUNICORN_WORKERS such clients stop it (tests/test_lifecycle_proxy.py shows it).

Targets: proxy/direct ping throughput >= 0.85 (the proxy costs at most 15 %); ping p99 with the
slow clients <= 2 x p99 without them.

    .venv/bin/python -m bench.proxy [--duration 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

from bench import TARGET_COLUMNS
from bench.bundle import Bundle
from bench.client import PING, Client, seed_corpus
from bench.corpus import Corpus
from bench.load import LoadResult, RequestSpec, run_load, summarise
from bench.report import Panel, Run, table, verdict

NAME = "proxy"
CHUNKS = 10_000
CONNECTIONS = 32
SLOW_CLIENTS = 200
SLOW_PROBE_CONNECTIONS = 8
PING_COST_TARGET = 0.85  # proxy/direct ping req/s, at least
SLOW_P99_TARGET = 2.0  # p99 with slow clients / p99 without, at most
SLOW_HEADER = b"GET /v1/system/ping HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"
SLOW_BODY = (
    b"POST /api/v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b'Content-Length: 1000\r\n\r\n{"name": "sl'
)


@contextlib.contextmanager
def slow_clients(port: int, count: int) -> Iterator[int]:
    """`count` connections that each sent part of a request and then stay silent."""
    held: list[socket.socket] = []
    try:
        for i in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(SLOW_HEADER if i % 2 == 0 else SLOW_BODY)
            held.append(sock)
        yield len(held)
    finally:
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per cell")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (median)")
    args = parser.parse_args(argv)
    run = Run(NAME)
    slow_settings = {"PROXY_CLIENT_HEADER_TIMEOUT": "600", "PROXY_CLIENT_TIMEOUT": "600"}
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        data_dir = root / "data"
        proxy = stack.enter_context(
            Bundle(root / "proxy", data_dir=data_dir, settings=slow_settings)
        )
        proxy.start()
        client = Client(proxy.base_url, proxy.api_key)
        corpus = Corpus()
        dataset_id, _ = seed_corpus(client, data_dir, corpus.chunks(CHUNKS))
        question = corpus.question()
        direct = stack.enter_context(
            Bundle(
                root / "direct",
                data_dir=data_dir,
                api_key=proxy.api_key,
                settings={"PROXY": "none"},
            )
        )
        direct.start()
        bundles = {"proxy": proxy, "direct": direct}
        specs: dict[str, RequestSpec] = {
            "ping": PING,
            # A new connection per request on both sides (Gunicorn's sync workers close every
            # connection anyway; nginx keeps clients' connections alive).
            "ping, new connections": RequestSpec(
                "GET", "/v1/system/ping", headers={"Connection": "close"}, expect="pong"
            ),
            "retrieval": client.retrieval_spec(question, [dataset_id]),
        }
        for bundle in bundles.values():  # warm-up
            for spec in specs.values():
                run_load(bundle.base_url, [spec], 8, 1.0)
        cells: dict[tuple[str, str], list[LoadResult]] = {}
        for _ in range(args.rounds):
            for endpoint, spec in specs.items():
                for name, bundle in bundles.items():
                    result = run_load(bundle.base_url, [spec], CONNECTIONS, args.duration)
                    cells.setdefault((endpoint, name), []).append(result)
                    print(
                        f"  {endpoint:9} {name:6} {result.rps:8.0f} req/s "
                        f"p99 {result.p99_ms:7.1f} ms  failed {result.failed}"
                    )
        slow: dict[str, list[LoadResult]] = {"without": [], "with": []}
        for round_ in range(2 * args.rounds):  # alternating which comes first
            for label in ("without", "with") if round_ % 2 == 0 else ("with", "without"):
                count = SLOW_CLIENTS if label == "with" else 0
                with slow_clients(proxy.port, count):
                    r = run_load(proxy.base_url, [PING], SLOW_PROBE_CONNECTIONS, args.duration)
                slow[label].append(r)
                print(
                    f"  ping c={SLOW_PROBE_CONNECTIONS} {label} {SLOW_CLIENTS} slow clients: "
                    f"{r.rps:8.0f} req/s p99 {r.p99_ms:7.1f} ms failed {r.failed}"
                )
    rows = {key: summarise(results) for key, results in cells.items()}
    slow_rows = {label: summarise(results) for label, results in slow.items()}

    def cost(endpoint: str) -> float:
        return float(
            rows[(endpoint, "proxy")]["rps"] / max(rows[(endpoint, "direct")]["rps"], 1e-9)
        )

    slow_ratio = slow_rows["with"]["p99_ms"] / max(slow_rows["without"]["p99_ms"], 1e-9)
    targets = [
        {
            "target": f"{endpoint} req/s, proxy / direct",
            "measured": round(cost(endpoint), 3),
            "goal": f">= {PING_COST_TARGET}" if endpoint.startswith("ping") else "-",
            "verdict": verdict(cost(endpoint), PING_COST_TARGET)
            if endpoint.startswith("ping")
            else "-",
        }
        for endpoint in specs
    ] + [
        {
            "target": f"ping p99 with {SLOW_CLIENTS} slow clients / without",
            "measured": round(slow_ratio, 2),
            "goal": f"<= {SLOW_P99_TARGET}",
            "verdict": verdict(slow_ratio, SLOW_P99_TARGET, higher_is_better=False),
        },
    ]
    print()
    print(
        table(
            ["endpoint", "bundle", "req/s", "p50 ms", "p99 ms", "failed"],
            [[e, b, r["rps"], r["p50_ms"], r["p99_ms"], r["failed"]] for (e, b), r in rows.items()],
        )
    )
    print()
    print(
        table(
            TARGET_COLUMNS,
            [[t["target"], t["measured"], t["goal"], t["verdict"]] for t in targets],
        )
    )
    failed = sum(r["failed"] for r in rows.values()) + sum(r["failed"] for r in slow_rows.values())
    panels = [
        Panel(
            f"req/s at {CONNECTIONS} connections",
            "req/s",
            list(specs),
            {name: [rows[(e, name)]["rps"] for e in specs] for name in bundles},
        ),
        Panel(
            f"ping p99, proxy, {SLOW_PROBE_CONNECTIONS} connections",
            "ms",
            [f"{label} {SLOW_CLIENTS} slow clients" for label in slow_rows],
            {"p99": [r["p99_ms"] for r in slow_rows.values()]},
        ),
    ]
    run.save(
        {
            "parameters": {
                "duration_s": args.duration,
                "rounds": args.rounds,
                "chunks": CHUNKS,
                "connections": CONNECTIONS,
                "slow_clients": SLOW_CLIENTS,
                "slow_probe_connections": SLOW_PROBE_CONNECTIONS,
                "load_driver": rows[("ping", "proxy")]["runs"][0]["driver"],
            },
            "cells": [{"endpoint": e, "bundle": b, **r} for (e, b), r in rows.items()],
            "slow_clients": [{"slow_clients": label, **r} for label, r in slow_rows.items()],
            "targets": targets,
            "failed_total": failed,
        },
        panels,
    )
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
