"""Benchmark 3: operations under load, the bundle side by side with plain supervisord + Gunicorn.

- `supervisorctl restart web` and `supervisorctl signal HUP web` while 4 looping clients call
  /v1/system/ping: failed requests and the failure window (first to last failure). The plain
  baseline is a hand-written supervisord.conf whose `web` runs Gunicorn on the same rendered
  gunicorn.conf.py, binding the port itself (no socket holder).
- Cold start: launcher spawned -> first 200 from /v1/system/healthz (3 starts, the first on an
  empty DATA_DIR), and idle shutdown: SIGTERM to supervisord -> exit, all programs RUNNING first.
- Shutdown under load: 4 uploads streamed slowly (about 3 s each) plus looping ping clients;
  SIGTERM to supervisord 1 s into the uploads; every in-flight upload must complete.

    .venv/bin/python -m bench.operations
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import TARGET_COLUMNS
from bench.bundle import Bundle
from bench.client import PING, Client
from bench.load import LoadRun
from bench.report import Panel, Run, table, verdict

NAME = "operations"
LOAD_SECONDS = 8.0
ACTION_AT_S = 2.5
LOOPING_CLIENTS = 4
COLD_STARTS = 3
SLOW_UPLOADS = 4
UPLOAD_PIECES = 30
UPLOAD_PIECE_BYTES = 16 * 1024
UPLOAD_INTERVAL_S = 0.1


def wait_workers_replaced(bundle: Bundle, old: set[int], deadline_s: float = 30.0) -> float:
    """Seconds until no worker of `old` is left and the worker count is back to normal."""
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        workers = {p.pid for p in bundle.web_workers()}
        if workers and not workers & old and len(workers) >= len(old):
            return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"old workers {sorted(old)} still present after {deadline_s:.0f} s")


def under_load(bundle: Bundle, action: tuple[str, ...]) -> dict[str, Any]:
    """Run `supervisorctl ACTION` ACTION_AT_S seconds into LOAD_SECONDS of looping clients."""
    old_workers = {p.pid for p in bundle.web_workers()}
    load = LoadRun(bundle.base_url, [PING], LOOPING_CLIENTS, LOAD_SECONDS, driver="loadgen")
    time.sleep(ACTION_AT_S)  # a schedule inside the load, not a readiness wait
    started = time.monotonic()
    done = bundle.supervisorctl(*action)
    action_s = time.monotonic() - started
    result = load.result()
    # Before the next action: every worker is new (restart, HUP, or max_requests recycling,
    # which also replaces workers at these rates) and the worker count is back to normal.
    wait_workers_replaced(bundle, old_workers)
    failures = result.failures_at
    return {
        "action": "supervisorctl " + " ".join(action),
        "supervisorctl_output": done.stdout.strip(),
        "supervisorctl_seconds": round(action_s, 3),
        "requests": result.requests,
        "failed": result.failed,
        "errors": result.errors,
        "failure_window_s": round(failures[-1] - failures[0], 3) if failures else 0.0,
        "max_latency_ms": round(result.max_ms, 1),
        "p99_ms": round(result.p99_ms, 1),
    }


def cold_starts(root: Path) -> list[dict[str, Any]]:
    data_dir = root / "cold-data"
    rows = []
    for i in range(COLD_STARTS):
        with Bundle(root / f"cold{i}", data_dir=data_dir) as bundle:
            render_s = bundle.render()
            bundle.launch()
            ready_s = bundle.wait_ready()
            bundle.wait_running()
            stop_s = bundle.stop()
            rows.append(
                {
                    "start": i + 1,
                    "data_dir": "empty" if i == 0 else "existing",
                    "render_s": round(render_s, 3),
                    "launch_to_healthy_s": round(ready_s, 3),
                    "idle_shutdown_s": round(stop_s, 3),
                    "exit_code": bundle.proc.returncode if bundle.proc else None,
                }
            )
            print(f"  cold start {i + 1}: healthy after {ready_s:.2f} s, stop {stop_s:.2f} s")
    return rows


def _slow_body(head: bytes, tail: bytes) -> Iterator[bytes]:
    yield head
    for _ in range(UPLOAD_PIECES):
        time.sleep(UPLOAD_INTERVAL_S)
        yield b"x" * (UPLOAD_PIECE_BYTES - 1) + b"\n"
    yield tail


def slow_upload(bundle: Bundle, dataset_id: str, index: int, out: dict[int, Any]) -> None:
    """Upload one document slowly; record (HTTP status, RAGFlow code, finished at) or the error."""
    boundary = "benchslowupload"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="slow{index}.txt"\r\nContent-Type: text/plain\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + UPLOAD_PIECES * UPLOAD_PIECE_BYTES + len(tail)
    conn = http.client.HTTPConnection("127.0.0.1", bundle.port, timeout=60)
    try:
        conn.request(
            "POST",
            f"/api/v1/datasets/{dataset_id}/documents",
            body=_slow_body(head, tail),
            headers={
                "Authorization": f"Bearer {bundle.api_key}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(length),
            },
        )
        resp = conn.getresponse()
        body = resp.read()
        code = json.loads(body).get("code") if resp.status == 200 else None
        out[index] = {"status": resp.status, "code": code, "finished_at": time.time()}
    except (OSError, http.client.HTTPException, ValueError) as exc:
        out[index] = {"error": repr(exc), "finished_at": time.time()}
    finally:
        conn.close()


def shutdown_under_load(root: Path) -> dict[str, Any]:
    with Bundle(root / "shutdown") as bundle:
        bundle.start()
        bundle.wait_running()
        dataset_id = Client(bundle.base_url, bundle.api_key).create_dataset("bench-shutdown")
        load = LoadRun(bundle.base_url, [PING], LOOPING_CLIENTS, 6.0, driver="loadgen")
        uploads: dict[int, Any] = {}
        threads = [
            threading.Thread(target=slow_upload, args=(bundle, dataset_id, i, uploads))
            for i in range(SLOW_UPLOADS)
        ]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # a schedule: SIGTERM while every upload is mid-body
        sigterm_at = time.time()
        stop_s = bundle.stop()
        exited_at = time.time()
        for thread in threads:
            thread.join(30)
        pings = load.result()
        exit_code = bundle.proc.returncode if bundle.proc else None
    completed = sum(1 for u in uploads.values() if u.get("status") == 200 and u.get("code") == 0)
    return {
        "in_flight_uploads": SLOW_UPLOADS,
        "uploads_completed": completed,
        "uploads": [
            {**u, "finished_after_sigterm_s": round(u["finished_at"] - sigterm_at, 2)}
            for _, u in sorted(uploads.items())
        ],
        "stop_seconds": round(stop_s, 2),
        "exit_code": exit_code,
        # Looping pings after SIGTERM: refused ("connect") once the socket holder has closed
        # the listening socket, or reset ("read") when it closes with connections in its
        # backlog that no worker accepted any more; neither was in flight in a worker.
        "ping_requests": pings.requests,
        "ping_errors_after_sigterm": pings.errors,
        "ping_failures_before_exit": sum(1 for t in pings.failures_at if t < exited_at),
        "verdict": "met" if completed == SLOW_UPLOADS else "MISSED",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__)
    parser.parse_args(argv)
    run = Run(NAME)
    reload_rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ops-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        for label, plain in (("bundle", False), ("plain supervisord+gunicorn", True)):
            bundle = stack.enter_context(Bundle(root / label.split()[0], plain=plain))
            bundle.start()
            for action in (("restart", "web"), ("signal", "HUP", "web")):
                row = {"setup": label, **under_load(bundle, action)}
                print(
                    f"  {label:28} {row['action']:30} failed {row['failed']:5} of "
                    f"{row['requests']:6} window {row['failure_window_s']:.3f} s"
                )
                reload_rows.append(row)
            bundle.stop()
        cold = cold_starts(root)
        shutdown = shutdown_under_load(root)
    print()
    print(
        table(
            ["setup", "action", "requests", "failed", "window s", "max ms"],
            [
                [
                    r["setup"],
                    r["action"],
                    r["requests"],
                    r["failed"],
                    r["failure_window_s"],
                    r["max_latency_ms"],
                ]
                for r in reload_rows
            ],
        )
    )
    print()
    print(
        table(
            ["start", "DATA_DIR", "render s", "to healthy s", "idle stop s"],
            [
                [
                    c["start"],
                    c["data_dir"],
                    c["render_s"],
                    c["launch_to_healthy_s"],
                    c["idle_shutdown_s"],
                ]
                for c in cold
            ],
        )
    )
    worst_start = max(c["launch_to_healthy_s"] for c in cold)
    worst_stop = max(c["idle_shutdown_s"] for c in cold)
    bundle_failed = {r["action"]: r["failed"] for r in reload_rows if r["setup"] == "bundle"}
    targets = [
        ["restart web: failed requests", bundle_failed["supervisorctl restart web"], "0"],
        ["signal HUP web: failed requests", bundle_failed["supervisorctl signal HUP web"], "0"],
        ["cold start to healthy (worst), s", worst_start, "<= 2"],
        ["idle shutdown (worst), s", worst_stop, "<= 1"],
        [
            "in-flight uploads completed on SIGTERM",
            f"{shutdown['uploads_completed']}/{shutdown['in_flight_uploads']}",
            "all",
        ],
    ]
    verdicts = [
        verdict(bundle_failed["supervisorctl restart web"], 0, higher_is_better=False),
        verdict(bundle_failed["supervisorctl signal HUP web"], 0, higher_is_better=False),
        verdict(worst_start, 2.0, higher_is_better=False),
        verdict(worst_stop, 1.0, higher_is_better=False),
        shutdown["verdict"],
    ]
    for target_row, outcome in zip(targets, verdicts, strict=True):
        target_row.append(outcome)
    print()
    print(table(["target", "measured", "target", "verdict"], targets))
    panels = [
        Panel(
            "failed requests under load",
            "failed requests",
            [r["action"].replace("supervisorctl ", "") for r in reload_rows[:2]],
            {
                setup: [r["failed"] for r in reload_rows if r["setup"] == setup]
                for setup in dict.fromkeys(r["setup"] for r in reload_rows)
            },
        ),
        Panel(
            "start and stop",
            "seconds",
            [f"start {c['start']}" for c in cold],
            {
                "launch -> healthy": [c["launch_to_healthy_s"] for c in cold],
                "idle shutdown": [c["idle_shutdown_s"] for c in cold],
            },
        ),
    ]
    run.save(
        {
            "parameters": {
                "looping_clients": LOOPING_CLIENTS,
                "load_seconds": LOAD_SECONDS,
                "action_at_s": ACTION_AT_S,
                "slow_uploads": SLOW_UPLOADS,
                "upload_seconds": UPLOAD_PIECES * UPLOAD_INTERVAL_S,
            },
            "reload": reload_rows,
            "cold_start": cold,
            "shutdown_under_load": shutdown,
            "targets": [dict(zip(TARGET_COLUMNS, t, strict=True)) for t in targets],
        },
        panels,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
