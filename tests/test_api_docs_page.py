"""The interactive API page at /api/v1/docs: Swagger UI from the swagger-ui-bundle package (no
CDN), rendering the bundle's own /api/v1/openapi.json, checked in headless Chromium against the
REAL rendered bundle (through nginx) with a screenshot."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from conftest import StartBundle

from api.routes import apidocs
from api.routes.table import ROUTES

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_page_loads_only_its_own_files() -> None:
    sources = re.findall(r'(?:src|href)="([^"]+)"', apidocs.PAGE)
    assert sources and all(s.startswith(f"{apidocs.PAGE_PATH}/") for s in sources), sources
    assert "http" not in apidocs.PAGE  # no CDN, no other host


def _chromium(url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--window-size=1280,2400", "--virtual-time-budget=15000", *args, url],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make system-deps)")
def test_swagger_ui_renders_every_operation_in_headless_chromium(
    start_bundle: StartBundle, tmp_path: Path
) -> None:
    run = start_bundle(WS="0", GUNICORN_WORKERS="2")
    base = f"http://127.0.0.1:{run.port}"
    for name, mimetype in apidocs.ASSETS.items():
        with urllib.request.urlopen(f"{base}{apidocs.PAGE_PATH}/{name}", timeout=10) as answer:
            assert answer.headers.get_content_type() == mimetype
            assert len(answer.read()) > 10_000
    page = f"{base}{apidocs.PAGE_PATH}"
    dom = _chromium(page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = set(re.findall(r'data-path="([^"]+)"', dom.stdout))
    documented = {re.sub(r"<([^<>]+)>", r"{\1}", r.path) for r in ROUTES}
    print(f"Swagger UI rendered {len(rendered)} of {len(documented)} paths")
    assert rendered == documented
    assert dom.stdout.count('class="opblock opblock-') == len(ROUTES)
    assert "Create a dataset" in dom.stdout
    screenshot = tmp_path / "api-docs.png"
    shot = _chromium(page, f"--screenshot={screenshot}")
    assert shot.returncode == 0, shot.stderr[-2000:]
    data = screenshot.read_bytes()
    print(f"screenshot {screenshot}: {len(data)} bytes")
    assert data.startswith(b"\x89PNG") and len(data) > 50_000  # a rendered page, not a blank one
