"""The application under Werkzeug's test client, with RAGFlow-envelope helpers (api/ tests)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client, TestResponse

from api import config, storage
from api.app import App, create_app
from support.backends import BACKENDS, inspector

KEY = "test-bootstrap-key"


class Api:
    """One app on its own DATA_DIR; every call checks HTTP 200 and a JSON envelope."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.env = env  # another app on the same storage: Api(api.data_dir, **api.env)
        cfg = config.load({"DATA_DIR": str(data_dir), "RAGFLOW_API_KEY": KEY, **env})
        self.app: App = create_app(cfg)
        self.client = Client(self.app)
        # the app's backend, for what a test reads or moves behind the API's back
        self.backend = storage.open_backend(data_dir, cfg.database_url, cfg.pool)
        self.inspect = inspector(data_dir, cfg.database_url)

    def raw(self, method: str, path: str, key: str | None = KEY, **kwargs: Any) -> TestResponse:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers.setdefault("Authorization", f"Bearer {key}")
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.raw(method, path, **kwargs)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.mimetype == "application/json"
        body = response.get_json()
        assert isinstance(body, dict) and "code" in body, body
        assert "Traceback" not in response.get_data(as_text=True)
        return body

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        body = self.call(method, path, **kwargs)
        assert body["code"] == 0, body
        assert "message" not in body or body.get("data") is not None, body
        return body.get("data")

    def error(self, code: int, method: str, path: str, **kwargs: Any) -> str:
        body = self.call(method, path, **kwargs)
        assert body["code"] == code, body
        assert set(body) <= {"code", "message", "data"}, body
        return str(body["message"])

    # shortcuts ------------------------------------------------------------------------
    def dataset(self, name: str = "ds", **fields: Any) -> dict[str, Any]:
        data = self.ok("POST", "/api/v1/datasets", json={"name": name, **fields})
        assert isinstance(data, dict)
        return data

    def upload(self, dataset_id: str, *files: tuple[str, bytes]) -> list[dict[str, Any]]:
        data = self.ok(
            "POST",
            f"/api/v1/datasets/{dataset_id}/documents",
            data={"file": [(io.BytesIO(content), name) for name, content in files]},
        )
        assert isinstance(data, list)
        return data

    def add_chunk(self, dataset_id: str, doc_id: str, content: str, **fields: Any) -> Any:
        return self.ok(
            "POST",
            f"/api/v1/datasets/{dataset_id}/documents/{doc_id}/chunks",
            json={"content": content, **fields},
        )["chunk"]

    def documents(self, dataset_id: str, query: str = "") -> dict[str, Any]:
        data = self.ok("GET", f"/api/v1/datasets/{dataset_id}/documents{query}")
        assert isinstance(data, dict)
        return data


@pytest.fixture(params=sorted(BACKENDS))
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    """The app on each backend of support.backends (PostgreSQL: a fresh database)."""
    env = {}
    if request.param != "sqlite":
        env["DATABASE_URL"] = str(request.getfixturevalue("pg_database"))
    app = Api(tmp_path / "data", **env)
    yield app
    app.backend.close()  # one DATA_DIR per test: close this thread's connection
