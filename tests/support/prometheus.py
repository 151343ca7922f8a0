"""A real Prometheus server (Debian's `prometheus` package, which also brings promtool) on a free
loopback port (it binds port 0; the port is read back from the kernel), scraping given targets,
and its HTTP query API."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import requests
import yaml

from support.ports import listening_port
from support.waiting import wait_for

_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin", "/usr/local/bin"])
PROMETHEUS = shutil.which("prometheus", path=_PATH)
PROMTOOL = shutil.which("promtool", path=_PATH)


def require() -> None:
    """Fail (not skip) with the fix when the tools are missing: `make test` installs them."""
    if PROMETHEUS is None or PROMTOOL is None:
        raise AssertionError(
            "prometheus/promtool not found: install Debian's prometheus package "
            "(make system-deps, as root, does it)"
        )


@contextlib.contextmanager
def running_prometheus(
    tmp: Path, targets: Sequence[str], rule_files: Sequence[Path] = ()
) -> Iterator[str]:
    """Start Prometheus scraping ``targets`` every second as job `ragflow`; yield its base URL."""
    require()
    assert PROMETHEUS is not None
    tmp.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": "ragflow", "static_configs": [{"targets": list(targets)}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp / 'tsdb'}", "--web.listen-address=127.0.0.1:0"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = ""

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"prometheus exited: {(tmp / 'prometheus.log').read_text()}")
        try:
            return requests.get(f"{base}/-/ready", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        base = f"http://127.0.0.1:{listening_port(proc.pid, 60)}"
        wait_for(ready, 60, "prometheus to be ready")
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def query(base: str, expr: str) -> list[dict[str, Any]]:
    """An instant query; AssertionError naming the expression when Prometheus refuses it."""
    answer = requests.get(f"{base}/api/v1/query", params={"query": expr}, timeout=30).json()
    if answer.get("status") != "success":
        raise AssertionError(f"{expr!r}: {answer.get('errorType')}: {answer.get('error')}")
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result
