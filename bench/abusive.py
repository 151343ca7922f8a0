"""Benchmark 6: abusive requests at 100k chunks against the production bundle (real Gunicorn).

Each class of expensive input is sent two ways: as reported (now refused with code 101 by a
limit of api.limits) and at the largest size still accepted, each REPEATS times; the table shows
the worst latency and the answer's code. Then /v1/system/healthz p99 from one looping client,
side by side in one run: alone, while five clients loop the reported abusive requests (the
issue's "five such requests at once"), and while five loop the worst accepted ones.

Data: 100,000 chunks of bench.corpus text in 10 documents of 10,000 chunks (the "large
document" of the keywords class). The most expensive terms are the corpus's most frequent
words: they match nearly every chunk.

    .venv/bin/python -m bench.abusive
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from api.limits import JSON_DEPTH, LIST_ITEMS, PAGE_SIZE, QUERY_CHARS, QUERY_TERMS, TOP_K
from bench import TARGET_COLUMNS
from bench.bundle import Bundle
from bench.client import Client, seed_corpus
from bench.corpus import Corpus
from bench.load import LoadRun, RequestSpec
from bench.report import Panel, Run, table, verdict

NAME = "abusive"
CHUNKS = 100_000
DOCUMENTS = 10
REPEATS = 3
HEALTHZ_SECONDS = 8.0
CONCURRENT = 5
TARGET_MAX_S = 2.0
TARGET_HEALTHZ_P99_MS = 100.0
HEALTHZ = RequestSpec("GET", "/v1/system/healthz", expect='"status": "ok"')


@dataclass(frozen=True)
class Abuse:
    cls: str
    label: str
    method: str
    path: str
    body: bytes | None = None
    params: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    refused: bool = False  # expected code 101 (a limit), else an ordinary answer (0 or 102)
    refused_by_http: int = 0  # an HTTP status that Gunicorn answers before the app is reached


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def abuses(dataset_id: str, doc_ids: list[str]) -> list[Abuse]:
    words = Corpus().words  # most frequent first
    top = " ".join(words[: QUERY_TERMS.value])
    chunks = f"/api/v1/datasets/{dataset_id}/documents/{doc_ids[0]}/chunks"
    retrieval = "/api/v1/retrieval"
    ds = [dataset_id]
    fake_ids = [uuid.uuid1().hex for _ in range(LIST_ITEMS.value)]
    deep = JSON_DEPTH.value - 1
    return [
        Abuse("keywords", "1,000 words (6.4 KB), as reported", "GET", chunks,
              params={"keywords": " ".join(words[:1000])}, refused=True),
        Abuse("keywords", f"{QUERY_CHARS.value + 1:,} characters (over Gunicorn's request line)",
              "GET", chunks, params={"keywords": "x" * (QUERY_CHARS.value + 1)}, refused=True,
              refused_by_http=414),
        Abuse("keywords", f"{QUERY_TERMS.value} most frequent words, page_size {PAGE_SIZE.value:,}"
              " (largest accepted)", "GET", chunks,
              params={"keywords": top, "page_size": str(PAGE_SIZE.value)}),
        Abuse("retrieval", "100 KB question, as reported", "POST", retrieval,
              _json({"question": ("lorem " * 20_000)[:100_000], "dataset_ids": ds}), refused=True),
        Abuse("retrieval", "1 MB question, as reported", "POST", retrieval,
              _json({"question": ("lorem " * 200_000)[:1_000_000], "dataset_ids": ds}),
              refused=True),
        Abuse("retrieval", f"{QUERY_TERMS.value} most frequent words, default top_k", "POST",
              retrieval, _json({"question": top, "dataset_ids": ds})),
        Abuse("retrieval", f"{QUERY_TERMS.value} words, top_k {TOP_K.value:,}, page_size "
              f"{PAGE_SIZE.value:,}, threshold 0 (largest accepted)", "POST", retrieval,
              _json({"question": top, "dataset_ids": ds, "top_k": TOP_K.value,
                     "page_size": PAGE_SIZE.value, "similarity_threshold": 0.0})),
        Abuse("id lists", "260,000 document_ids (retrieval, 9 MB), as reported", "POST",
              retrieval, _json({"question": "x", "dataset_ids": ds,
                                "document_ids": [uuid.uuid1().hex for _ in range(260_000)]}),
              refused=True),
        Abuse("id lists", "260,000 short document_ids (parse)", "POST",
              f"/api/v1/datasets/{dataset_id}/chunks",
              _json({"document_ids": [str(i) for i in range(260_000)]}), refused=True),
        Abuse("id lists", f"{LIST_ITEMS.value:,} document_ids (retrieval, largest accepted)",
              "POST", retrieval, _json({"question": " ".join(words[800:803]), "dataset_ids": ds,
                                        "document_ids": (doc_ids * LIST_ITEMS.value)[
                                            : LIST_ITEMS.value]})),
        Abuse("id lists", f"{LIST_ITEMS.value:,} unknown ids (delete documents)", "DELETE",
              f"/api/v1/datasets/{dataset_id}/documents", _json({"ids": fake_ids})),
        Abuse("id lists", f"{LIST_ITEMS.value:,} unknown ids (parse)", "POST",
              f"/api/v1/datasets/{dataset_id}/chunks", _json({"document_ids": fake_ids})),
        Abuse("deep JSON", "100,000 levels, as reported", "POST", "/api/v1/datasets",
              b'{"name": "d", "parser_config": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
              refused=True),
        Abuse("deep JSON", f"{deep} levels (deepest accepted by the parser)", "POST",
              "/api/v1/datasets",
              b'{"name": "d", "parser_config": ' + b"[" * deep + b"]" * deep + b"}",
              refused=True),  # reaches the field checks: parser_config must be an object
        Abuse("encoding", "lone surrogate in a name", "POST", "/api/v1/datasets",
              b'{"name": "\\ud800"}', refused=True),
    ]  # fmt: skip


def send(session: requests.Session, base_url: str, abuse: Abuse) -> tuple[float, int]:
    """(seconds, RAGFlow code) of one request."""
    started = time.perf_counter()
    resp = session.request(
        abuse.method,
        base_url + abuse.path,
        params=abuse.params or None,
        data=abuse.body,
        headers={"Content-Type": abuse.content_type} if abuse.body is not None else {},
        timeout=120,
    )
    elapsed = time.perf_counter() - started
    code = int(resp.json().get("code", -1)) if resp.status_code == 200 else -resp.status_code
    return elapsed, code


def worst_cases(bundle: Bundle, cases: list[Abuse]) -> list[dict[str, Any]]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {bundle.api_key}"
    rows = []
    for abuse in cases:
        timings, codes = [], set()
        for _ in range(REPEATS):
            elapsed, code = send(session, bundle.base_url, abuse)
            timings.append(elapsed)
            codes.add(code)
        refusals = {101, -abuse.refused_by_http} if abuse.refused_by_http else {101}
        expected_ok = codes <= refusals if abuse.refused else codes <= {0, 102}
        rows.append(
            {
                "class": abuse.cls,
                "request": abuse.label,
                "body_bytes": len(abuse.body or b"") + len(json.dumps(abuse.params)),
                "codes": sorted(codes),
                "as_expected": expected_ok,
                "max_s": round(max(timings), 3),
                "median_s": round(statistics.median(timings), 3),
            }
        )
        print(f"  {abuse.cls:10s} {abuse.label[:60]:60s} max {max(timings):7.3f} s {codes}")
    return rows


def _loop(base_url: str, api_key: str, abuse: Abuse, stop: threading.Event, out: list[int]) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {api_key}"
    while not stop.is_set():  # bounded by the healthz window: stop is set when it ends
        out.append(send(session, base_url, abuse)[1])


def healthz_under(bundle: Bundle, load: list[Abuse]) -> dict[str, Any]:
    """healthz latency from one looping client while each of `load` loops on its own thread."""
    stop = threading.Event()
    codes: list[int] = []
    threads = [
        threading.Thread(target=_loop, args=(bundle.base_url, bundle.api_key, a, stop, codes))
        for a in load
    ]
    for thread in threads:
        thread.start()
    try:
        result = LoadRun(bundle.base_url, [HEALTHZ], 1, HEALTHZ_SECONDS, driver="loadgen").result()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=150)
    return {
        "concurrent": [a.label for a in load],
        "abusive_requests_done": len(codes),
        "abusive_codes": sorted(set(codes)),
        "healthz_requests": result.requests,
        "healthz_failed": result.failed,
        "healthz_p50_ms": round(result.p50_ms, 1),
        "healthz_p99_ms": round(result.p99_ms, 1),
        "healthz_max_ms": round(result.max_ms, 1),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Abusive requests at 100k chunks.")
    parser.add_argument("--chunks", type=int, default=CHUNKS, help="a smaller corpus: a smoke run")
    args = parser.parse_args(argv)
    run = Run(NAME)
    with tempfile.TemporaryDirectory(prefix="bench-abusive-") as tmp, Bundle(Path(tmp)) as bundle:
        bundle.start()
        client = Client(bundle.base_url, bundle.api_key)
        started = time.monotonic()
        dataset_id, doc_ids = seed_corpus(
            client, bundle.data_dir, Corpus().chunks(args.chunks), documents=DOCUMENTS
        )
        print(f"seeded {args.chunks:,} chunks in {time.monotonic() - started:.0f} s")
        cases = abuses(dataset_id, doc_ids)
        rows = worst_cases(bundle, cases)
        reported = [c for c in cases if c.label.startswith("1,000 words")] * CONCURRENT
        accepted = [c for c in cases if "largest accepted" in c.label and c.cls != "id lists"]
        heavy = (accepted * CONCURRENT)[:CONCURRENT]
        scenarios = {
            "alone": [],
            "5 x 1,000-word keywords (as reported)": reported,
            "5 x the largest accepted keywords/retrieval": heavy,
        }
        healthz = [
            {"scenario": name, **healthz_under(bundle, load)} for name, load in scenarios.items()
        ]
        workers = len(bundle.web_workers())
    print()
    print(
        table(
            ["class", "request", "codes", "max s", "median s"],
            [[r["class"], r["request"], r["codes"], r["max_s"], r["median_s"]] for r in rows],
        )
    )
    print()
    print(
        table(
            ["healthz while", "abusive done", "p50 ms", "p99 ms", "max ms", "failed"],
            [
                [
                    h["scenario"],
                    h["abusive_requests_done"],
                    h["healthz_p50_ms"],
                    h["healthz_p99_ms"],
                    h["healthz_max_ms"],
                    h["healthz_failed"],
                ]
                for h in healthz
            ],
        )
    )
    worst = max(r["max_s"] for r in rows)
    targets = [
        {
            "target": f"no single abusive request over {TARGET_MAX_S:g} s",
            "measured": f"{worst:.2f} s",
            "goal": f"<= {TARGET_MAX_S:g} s",
            "verdict": verdict(worst, TARGET_MAX_S, higher_is_better=False),
        },
        *(
            {
                "target": f"healthz p99 while {h['scenario']}",
                "measured": f"{h['healthz_p99_ms']:.1f} ms",
                "goal": f"< {TARGET_HEALTHZ_P99_MS:g} ms",
                "verdict": verdict(
                    h["healthz_p99_ms"], TARGET_HEALTHZ_P99_MS, higher_is_better=False
                ),
            }
            for h in healthz[1:]
        ),
        {
            "target": "every answer as expected (101 for the refused inputs, else 0 or 102)",
            "measured": f"{sum(r['as_expected'] for r in rows)} of {len(rows)}",
            "goal": "all",
            "verdict": "met" if all(r["as_expected"] for r in rows) else "MISSED",
        },
    ]
    print()
    print(table(TARGET_COLUMNS, [list(t.values()) for t in targets]))
    run.save(
        {
            "parameters": {
                "chunks": args.chunks,
                "documents": DOCUMENTS,
                "repeats": REPEATS,
                "healthz_seconds": HEALTHZ_SECONDS,
                "gunicorn_workers": workers,
            },
            "requests": rows,
            "healthz": healthz,
            "targets": targets,
        },
        [
            Panel(
                "worst latency per request (s)",
                "seconds",
                [f"{r['class']}: {r['request'][:28]}" for r in rows],
                {"max": [r["max_s"] for r in rows]},
            ),
            Panel(
                "/v1/system/healthz p99 (ms)",
                "ms",
                [h["scenario"][:32] for h in healthz],
                {"p99": [h["healthz_p99_ms"] for h in healthz]},
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
