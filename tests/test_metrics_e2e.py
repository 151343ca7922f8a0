"""End to end: a real Prometheus scrapes the metrics endpoint of a real bundle (supervisord,
Gunicorn, nginx, an executor) on loopback. After traffic with successes, error envelopes,
unknown paths, a parse and a retrieval, every metric family of docs/operations.md is in
Prometheus, every alert expression of deploy/prometheus/alerts.yml and every panel query of the
Grafana dashboard evaluates, and the panels that must show data do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
import yaml
from support import ragflow_client as client
from support.prometheus import query, running_prometheus
from support.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "ragflow-bundle.json"

# Every family the issue names (exposition names), plus the ones the alerts use.
FAMILIES = (
    "ragflow_http_requests_total",
    "ragflow_http_request_duration_seconds_bucket",
    "ragflow_http_requests_in_flight",
    "ragflow_program_up",
    "ragflow_program_state",
    "ragflow_program_restarts_total",
    "ragflow_program_start_time_seconds",
    "ragflow_process_resident_memory_bytes",
    "ragflow_process_private_memory_bytes",
    "ragflow_process_cpu_seconds_total",
    "ragflow_process_memory_limit_bytes",
    "ragflow_gunicorn_workers",
    "ragflow_gunicorn_worker_recycles_total",
    "ragflow_tasks_total",
    "ragflow_retrieval_searches_total",
    "ragflow_task_duration_seconds_bucket",
    "ragflow_task_queue_depth",
    "ragflow_task_oldest_pending_seconds",
    "ragflow_executor_heartbeat_age_seconds",
    "ragflow_storage_bytes",
    "ragflow_storage_free_bytes",
    "ragflow_storage_volume_bytes",
    "ragflow_build_info",
)
# Panels that only show data after some event this test does not cause (none today).
PANELS_WITHOUT_DATA: frozenset[str] = frozenset()


def _traffic(port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    with requests.Session() as session:
        for _ in range(20):
            assert session.get(f"{base}/v1/system/ping", timeout=10).text == "pong"
        wrong = {"Authorization": "Bearer not-the-key-at-all"}
        answer = session.get(f"{base}/api/v1/datasets", headers=wrong, timeout=10).json()
        assert answer["code"] == 109
        assert session.get(f"{base}/no/such/path", timeout=10).json()["code"] == 100
    dataset = client.create_dataset(port)
    assert client.call(port, "GET", "/api/v1/datasets")["code"] == 0
    documents = client.upload(port, dataset, {"notes.txt": b"metrics end to end\n" * 200})
    client.start_parsing(port, dataset, documents)

    def parsed() -> bool:
        answer = client.call(port, "GET", f"/api/v1/datasets/{dataset}/documents")
        return any(doc["run"] == "DONE" for doc in answer["data"]["docs"])

    wait_for(parsed, 60, "the document to be parsed (DONE)")
    question = {"question": "metrics", "dataset_ids": [dataset]}
    assert client.call(port, "POST", "/api/v1/retrieval", question)["data"]["chunks"]


def _panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_prometheus_scrapes_every_family_and_evaluates_alerts_and_panels(
    start_bundle: Any, tmp_path: Path
) -> None:
    run = start_bundle(
        METRICS_PORT="0",
        GUNICORN_WORKER_MAX_MEMORY="1GB",
        EXECUTOR_MAX_MEMORY="1GB",
    )
    metrics_port = run.metrics_port
    _traffic(run.port)
    target = f"127.0.0.1:{metrics_port}"
    with running_prometheus(tmp_path / "prometheus", [target], [ALERTS]) as prometheus:
        wait_for(lambda: query(prometheus, 'up{job="ragflow"} == 1'), 60, "a successful scrape")

        def missing() -> list[str]:
            return [
                family
                for family in FAMILIES
                if not query(prometheus, f'count({{__name__="{family}"}})')
            ]

        wait_for(lambda: not missing(), 60, "every metric family in Prometheus")
        # the traffic above, as Prometheus sees it
        assert query(prometheus, 'ragflow_http_requests_total{route="/v1/system/ping"} >= 20')
        assert query(prometheus, 'ragflow_http_requests_total{code="109"}')
        assert query(prometheus, 'ragflow_http_requests_total{route="unmatched",code="100"}')
        assert query(prometheus, 'ragflow_tasks_total{outcome="done"} >= 1')
        # one document's chunks: ranking every match costs less than the bound's visits
        assert query(prometheus, 'ragflow_retrieval_searches_total{path="few_matches"} == 1')
        assert query(prometheus, 'ragflow_program_up{program="web"} == 1')
        assert query(prometheus, "ragflow_gunicorn_workers == 2")
        # a second sample of every series, so that rate() and increase() have two points
        wait_for(
            lambda: query(
                prometheus, 'count_over_time(ragflow_program_up{program="web"}[1m]) >= 3'
            ),
            60,
            "three scrapes",
        )
        for group in yaml.safe_load(ALERTS.read_text())["groups"]:
            for rule in group["rules"]:
                query(prometheus, rule["expr"])  # raises naming the expression if refused
        dashboard = json.loads(DASHBOARD.read_text())
        empty = [title for title, expr in _panel_queries(dashboard) if not query(prometheus, expr)]
        assert set(empty) <= PANELS_WITHOUT_DATA, f"panels without data: {empty}"
        # no alert fires on a healthy bundle
        answer = requests.get(f"{prometheus}/api/v1/alerts", timeout=10).json()
        firing = [a["labels"]["alertname"] for a in answer["data"]["alerts"]]
        assert firing == [], firing
