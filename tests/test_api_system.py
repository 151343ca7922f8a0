"""System endpoints, auth, routing errors, the error path, config, logging and the admin CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.api_client import KEY, Api

from api import auth, config
from api.routes import system
from api.storage.sqlite.schema import MIGRATIONS

ROOT = Path(__file__).resolve().parent.parent


def test_ping_needs_no_key(api: Api) -> None:
    response = api.raw("GET", "/v1/system/ping", key=None)
    assert response.status_code == 200 and response.data == b"pong"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_ping_head_takes_the_routed_path(api: Api) -> None:
    response = api.raw("HEAD", "/v1/system/ping", key=None)
    assert response.status_code == 200 and response.data == b""
    assert response.headers["Content-Length"] == "4"


def test_healthz_ok(api: Api) -> None:
    response = api.raw("GET", "/v1/system/healthz", key=None)
    assert response.status_code == 200
    assert response.get_json() == {
        "config": "ok", "db": "ok", "writes": "ok", "storage": "ok", "disk": "ok", "status": "ok"
    }  # fmt: skip


def test_healthz_names_the_failed_check_with_http_503(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where DATA_DIR should be")
    broken = Api(blocker)
    response = broken.raw("GET", "/v1/system/healthz", key=None)
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "nok" and body["config"] == "ok"
    assert body["db"] == "nok" and body["storage"] == "nok"
    assert str(blocker) in body["_meta"]["db"]["error"]
    assert "not writable" in body["_meta"]["storage"]["error"]


def test_healthz_fails_below_min_free_disk(tmp_path: Path) -> None:
    api = Api(tmp_path / "data", MIN_FREE_DISK="900000GB")  # more than any disk here has (879 TiB)
    response = api.raw("GET", "/v1/system/healthz", key=None)
    assert response.status_code == 503
    body = response.get_json()
    assert body["disk"] == "nok" and body["db"] == "ok" and body["writes"] == "ok"
    assert f"below MIN_FREE_DISK={900000 * 1024**3}" in body["_meta"]["disk"]["error"]


def test_status_shows_a_tenant_only_its_own_queue(api: Api, tmp_path: Path) -> None:

    mine = api.dataset("mine")
    (doc,) = api.upload(mine["id"], ("a.txt", b"hello"))
    other = Api(api.data_dir, **{**api.env, "RAGFLOW_API_KEY": "another-tenant-key-0123"})
    key = "ragflow-other-tenant-key-0123456789"
    api.backend.store.add_key(auth.hash_key(key), key[:16], "tenant-b", "b")
    theirs = other.ok("POST", "/api/v1/datasets", json={"name": "theirs"}, key=key)
    (their_doc,) = other.ok(
        "POST",
        f"/api/v1/datasets/{theirs['id']}/documents",
        data={"file": [(io.BytesIO(b"x"), "b.txt")]},
        key=key,
    )
    backend = api.backend
    backend.tasks.enqueue_parse(mine["id"], [doc["id"]])
    backend.tasks.enqueue_parse(theirs["id"], [their_doc["id"]])
    backend.heartbeats.beat("host_0", host="secret-host", pid=4242, started_at=0, state="idle")
    data = api.ok("GET", "/v1/system/status")
    assert data == {
        "version": system.VERSION, "queue": {"queued": 1, "running": 0, "expired": 0}
    }  # fmt: skip
    assert other.ok("GET", "/v1/system/status", key=key)["queue"]["queued"] == 1
    assert api.error(0, "GET", "/v1/system/status", key=None) == "`Authorization` can't be empty"
    report = json.loads(_admin(tmp_path, "status", data_dir=api.data_dir, **api.env).stdout)
    assert report["queue"]["queued"] == 2
    assert [(e["host"], e["pid"]) for e in report["task_executors"]] == [("secret-host", 4242)]


@pytest.mark.parametrize(
    ("header", "code", "message"),
    [
        (None, 0, "`Authorization` can't be empty"),
        ("", 0, "`Authorization` can't be empty"),
        ("Bearer", 0, "Please check your authorization format."),
        ("Bearer wrong", 109, "Authentication error: API key is invalid!"),
        (f"Bearer {KEY}x", 109, "Authentication error: API key is invalid!"),
        ("Bearer ключ", 109, "Authentication error: API key is invalid!"),
    ],
)
def test_auth_failures(api: Api, header: str | None, code: int, message: str) -> None:
    headers = {} if header is None else {"Authorization": header}
    body = api.call("GET", "/api/v1/datasets", key=None, headers=headers)
    assert body == {"code": code, "message": message, "data": False}


def test_no_bootstrap_key_means_only_created_keys_work(tmp_path: Path) -> None:
    app = Api(tmp_path / "data", RAGFLOW_API_KEY="")
    assert app.app.load_settings().api_key is None
    assert app.call("GET", "/api/v1/datasets")["code"] == 109


def test_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("from-file-key-0001\n")
    env = {"DATA_DIR": str(tmp_path), "RAGFLOW_API_KEY_FILE": str(key_file)}
    assert config.load(env).api_key == "from-file-key-0001"
    with pytest.raises(config.ConfigError, match="RAGFLOW_API_KEY_FILE"):
        config.load({**env, "RAGFLOW_API_KEY_FILE": str(tmp_path / "missing")})


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"MAX_CONTENT_LENGTH": "lots"}, "MAX_CONTENT_LENGTH='lots': invalid; accepted: a byte"),
        ({"MAX_CONTENT_LENGTH": "512"}, "MAX_CONTENT_LENGTH='512': invalid; accepted: a byte"),
        ({"HOST_PORT": "70000"}, "HOST_PORT='70000': invalid; accepted: a port from 1 to 65535"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml': invalid; accepted: text | json"),
        ({"RAGFLOW_MODE": "prod"}, "RAGFLOW_MODE='prod': invalid"),
    ],
)
def test_config_errors_name_the_setting(env: dict[str, str], match: str) -> None:
    with pytest.raises(config.ConfigError, match=match):
        config.load(env)


def test_config_errors_list_every_problem() -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.load({"HOST_PORT": "65536", "TASK_MAX_ATTEMPTS": "0", "LOG_FORMAT": "xml"})
    assert [p.split("=")[0] for p in caught.value.problems] == [
        "HOST_PORT", "TASK_MAX_ATTEMPTS", "LOG_FORMAT"
    ]  # fmt: skip


def test_config_defaults() -> None:
    cfg = config.load({})
    assert cfg.data_dir == config.ROOT / "data"  # APP_DIR/data, as the renderer's default
    assert cfg.max_content_length == 1024**3 and cfg.host_port == 9380
    assert cfg.log_format == "text" and cfg.mode == "production" and cfg.api_key is None


def test_a_misconfigured_server_answers_with_an_envelope(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from werkzeug.test import Client

    from api.app import create_app

    monkeypatch.setenv("MAX_CONTENT_LENGTH", "huge")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    response = Client(create_app()).get("/api/v1/datasets")
    assert response.status_code == 503
    assert response.get_json()["code"] == 500
    assert "MAX_CONTENT_LENGTH" in response.get_json()["message"]
    health = Client(create_app()).get("/v1/system/healthz")
    assert health.status_code == 503
    body = health.get_json()
    assert body["status"] == "nok" and body["config"] == "nok" and body["db"] == "nok"
    assert "MAX_CONTENT_LENGTH='huge': invalid; accepted: " in body["_meta"]["config"]["error"]


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("GET", "/nowhere", "<NotFound '404: Not Found'>"),
        ("GET", "/api/v1/datasets/x/y/z/w", "<NotFound '404: Not Found'>"),
        ("PATCH", "/api/v1/datasets", "<MethodNotAllowed '405: Method Not Allowed'>"),
        ("POST", "/v1/system/ping", "<MethodNotAllowed '405: Method Not Allowed'>"),
    ],
)
def test_routing_errors_are_code_100_with_the_repr(
    api: Api, method: str, path: str, message: str
) -> None:
    assert api.call(method, path) == {"code": 100, "message": message}


def test_double_slashes_redirect(api: Api) -> None:
    response = api.raw("GET", "/api/v1//datasets")
    assert response.status_code == 308
    assert response.headers["Location"].endswith("/api/v1/datasets")


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)  # SQLite's own file
def test_a_database_that_is_not_one_answers_503_naming_it(api: Api) -> None:
    ds = api.dataset("keep")
    db = api.data_dir / "ragflow.db"

    api.backend.close()
    saved = db.read_bytes()
    try:
        db.write_bytes(b"this is not a database" * 100)
        for name in ("ragflow.db-wal", "ragflow.db-shm"):
            (api.data_dir / name).unlink(missing_ok=True)
        response = api.raw("GET", "/api/v1/datasets")
        assert response.status_code == 503 and "Traceback" not in response.get_data(as_text=True)
        body = response.get_json()
        assert body["code"] == 500 and str(db) in body["message"]
        assert "file is not a database" in body["message"]
    finally:
        api.backend.close()
        db.write_bytes(saved)
    assert api.ok("GET", "/api/v1/datasets")[0]["id"] == ds["id"]


def test_an_unreachable_postgresql_answers_503_without_the_password(tmp_path: Path) -> None:
    from support.ports import refusing_port
    from support.postgres import PASSWORD

    with refusing_port() as port:
        url = f"postgresql://rf:{PASSWORD}@127.0.0.1:{port}/ragflow"
        app = Api(tmp_path / "data", DATABASE_URL=url, DB_CONNECT_TIMEOUT="1")
        for path in ("/api/v1/datasets", "/v1/system/healthz"):
            response = app.raw("GET", path, key="ragflow-some-created-key-0123456789")
            text = response.get_data(as_text=True)
            assert response.status_code == 503, text
            assert "Traceback" not in text and PASSWORD not in text
            assert "127.0.0.1" in text, text


def _admin(
    tmp_path: Path, *args: str, data_dir: Path | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    data = data_dir if data_dir is not None else tmp_path / "data"
    env = {**os.environ, "DATA_DIR": str(data), "PYTHONPATH": str(ROOT), **extra}
    return subprocess.run(
        [sys.executable, "-m", "api.admin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_admin_cli_creates_lists_and_revokes_keys(tmp_path: Path) -> None:
    assert f"schema version {len(MIGRATIONS)}" in _admin(tmp_path, "init").stdout
    created = _admin(tmp_path, "create-key", "--name", "ci", "--tenant", "t1")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith(auth.KEY_PREFIX)
    app = Api(tmp_path / "data", RAGFLOW_API_KEY="")
    assert app.ok("POST", "/api/v1/datasets", json={"name": "x"}, key=key)["tenant_id"] == "t1"
    listed = [json.loads(line) for line in _admin(tmp_path, "list-keys").stdout.splitlines()]
    assert [(k["name"], k["tenant_id"], k["revoked_time"]) for k in listed] == [("ci", "t1", None)]
    assert key not in (tmp_path / "data" / "ragflow.db").read_bytes().decode("latin-1")
    assert _admin(tmp_path, "revoke-key", key[:16]).returncode == 0
    assert app.call("GET", "/api/v1/datasets", key=key)["code"] == 109
    assert _admin(tmp_path, "revoke-key", "short").returncode == 2
    assert _admin(tmp_path, "revoke-key", "nomatch-prefix").returncode == 1


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_log_lines_carry_program_and_pid(tmp_path: Path, log_format: str) -> None:
    code = (
        "from api import logs; import logging; "
        "logs.setup('%s'); logging.getLogger('x').warning('hi')"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SUPERVISOR_PROCESS_NAME": "web"}
    result = subprocess.run(
        [sys.executable, "-c", code % log_format],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (line,) = result.stderr.splitlines()
    if log_format == "json":
        entry = json.loads(line)
        assert (
            entry["program"] == "web" and entry["message"] == "hi" and entry["level"] == "WARNING"
        )
        assert isinstance(entry["pid"], int)
    else:
        assert " web[" in line and line.endswith("WARNING x: hi")
    assert result.stdout == ""
