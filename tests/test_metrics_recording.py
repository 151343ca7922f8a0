"""api.metrics records requests in memory and writes them to the multiprocess file in batches:
the same counts, buckets and sums as prometheus_client's own observe(), written within
FLUSH_SECONDS by the process's own thread, and at once by flush() (a worker exiting). Each
retrieval search is counted under the path that answered it.

Each case runs in a fresh interpreter: prometheus_client chooses its multiprocess values at
import, from PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from api.storage import topk

ROOT = Path(__file__).resolve().parent.parent

SAME_AS_OBSERVE = """
import json
from prometheus_client import Histogram
from prometheus_client.multiprocess import MultiProcessCollector
from api import metrics

recorder = metrics._Recorder(metrics._metrics())
reference = Histogram("t_reference_seconds", "reference", buckets=metrics.LATENCY_BUCKETS)
# every bound exactly, just above and below it, zero and past the last bound
values = [0.0, 99.0]
for bound in metrics.LATENCY_BUCKETS:
    values += [bound, bound * 0.999, bound * 1.001]
labels = ("/api/v1/datasets", "GET", "200", "0")
for seconds in values:
    recorder.end(labels, "/api/v1/datasets", seconds)
    reference.observe(seconds)
recorder.flush()
found = {}
for family in MultiProcessCollector(None, metrics.os.environ["PROMETHEUS_MULTIPROC_DIR"]).collect():
    for sample in family.samples:
        le = sample.labels.get("le", "")
        found.setdefault(family.name, {})[sample.name.rsplit("_", 1)[-1] + le] = sample.value
print(json.dumps({"values": len(values), "found": found}))
"""

WRITTEN_BY_ITS_THREAD = """
import json, time
from prometheus_client.multiprocess import MultiProcessCollector
from api import metrics

def app(environ, start_response):
    environ[metrics.ROUTE_KEY] = "/v1/system/ping"
    environ[metrics.STATUS_KEY] = 200
    return [b"pong"]

observed = metrics.instrument(app)
for _ in range(3):
    observed({"REQUEST_METHOD": "GET"}, None)
metrics._recorder.begin()  # a request still being answered

def sample(name):
    directory = metrics.os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for family in MultiProcessCollector(None, directory).collect():
        for found in family.samples:
            if found.name == name:
                return found.value
    return 0.0

started = time.monotonic()
while time.monotonic() - started < 10:
    counted = sample("ragflow_http_requests_total")
    in_flight = sample("ragflow_http_requests_in_flight")
    if counted == 3 and in_flight == 1:
        break
    time.sleep(0.02)
print(json.dumps({"counted": counted, "in_flight": in_flight,
                  "after": time.monotonic() - started}))
"""


def _run(code: str, directory: Path, *args: str) -> dict[str, object]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_batched_requests_write_what_observe_would(tmp_path: Path) -> None:
    result = _run(SAME_AS_OBSERVE, tmp_path)
    found = result["found"]
    assert isinstance(found, dict)
    ours, reference = found["ragflow_http_request_duration_seconds"], found["t_reference_seconds"]
    assert ours == reference  # every cumulative bucket, the count and the sum
    assert ours["count"] == result["values"]
    assert found["ragflow_http_requests"]["total"] == result["values"]


def test_the_process_thread_writes_counts_and_in_flight_within_the_flush_interval(
    tmp_path: Path,
) -> None:
    result = _run(WRITTEN_BY_ITS_THREAD, tmp_path)
    assert result["counted"] == 3 and result["in_flight"] == 1, result
    assert isinstance(result["after"], float) and result["after"] < 5  # FLUSH_SECONDS is 0.5


SEARCHES_BY_PATH = """
import io, json, sys
from pathlib import Path
from prometheus_client.multiprocess import MultiProcessCollector
from api import metrics, storage, text
from api.storage import topk
from bench.corpus import Corpus

store = storage.open_backend(Path(sys.argv[1])).store
corpus = Corpus(seed=3)
words = corpus.words
# a word once in each chunk, beside 59 others: below every impact bucket, the bound cannot stop
flat = [" ".join(["flatword", *(f"w{i}x{j}" for j in range(59))]) for i in range(300)]
for name, chunks in (("zipf", corpus.chunks(20_000)), ("flat", flat)):
    ds = store.create_dataset("t", {"name": name})
    (doc,) = store.add_documents(ds, [storage.Upload("d.txt", "txt", "doc", io.BytesIO(b"x"))], "t")
    store.replace_chunks(str(doc["id"]), [{"content": c} for c in chunks])
datasets = store.tenant_dataset_ids("t")
questions = [
    (topk.SearchPath.BOUNDED, [words[0]], 10),
    (topk.SearchPath.FEW_MATCHES, [words[0], words[1]], 4096),
    (topk.SearchPath.MANY_TERMS, words[: topk.MOST_TERMS + 1], 10),
    (topk.SearchPath.PHRASE, text.query_terms("abc\u037adef"), 10),
    (topk.SearchPath.UNBOUNDED, ["flatword"], 10),
]
found = {}
for path, terms, limit in questions:
    found[path] = len(store.search_chunks(datasets, [], terms, limit))
counted = {}
for family in MultiProcessCollector(None, metrics.os.environ["PROMETHEUS_MULTIPROC_DIR"]).collect():
    for sample in family.samples:
        if sample.name == "ragflow_retrieval_searches_total":
            counted[sample.labels["path"]] = sample.value
print(json.dumps({"found": found, "counted": counted}))
"""


def test_each_search_is_counted_by_how_it_was_answered(tmp_path: Path) -> None:
    """Real searches on SQLite, one taking each path: through the bound, and ranking every
    match for each reason (topk.SearchPath); each counted once, under its path."""
    (tmp_path / "metrics").mkdir()
    result = _run(SEARCHES_BY_PATH, tmp_path / "metrics", str(tmp_path / "data"))
    found, counted = result["found"], result["counted"]
    assert isinstance(found, dict) and isinstance(counted, dict)
    assert counted == {path: 1.0 for path in topk.SearchPath}, result
    # every search answered (the phrase matches nothing in this corpus)
    assert all(found[path] > 0 for path in topk.SearchPath if path != topk.SearchPath.PHRASE), found
