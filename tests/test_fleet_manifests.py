"""The fleet examples (deploy/compose/compose.yaml, deploy/kubernetes/*.yaml) say only what is
true of this repository: they parse as YAML, every environment variable they set is a setting
of the table and renders without a warning for the role it is given, probes hit real public
routes on the real port, the command is the image's entry point, grace periods cover the
worst-case shutdown, and the replicas' connections fit the database (tests/support/fleet.py)."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.fleet import bundle_connections
from support.supervised import APP_DIR

from api.routes.table import ROUTES
from renderer.cli import machine_host
from renderer.render import GUNICORN_CONF, SUPERVISORD_CONF, render, stop_budget
from shared import database_url
from shared.settings import (
    API_KEY,
    Resolved,
    default_workers,
    known_names,
    resolve,
    unknown_variable_warnings,
)

COMPOSE = APP_DIR / "deploy" / "compose" / "compose.yaml"
KUBERNETES = sorted((APP_DIR / "deploy" / "kubernetes").glob("*.yaml"))
PUBLIC_GETS = {route.path for route in ROUTES if route.public and route.method == "GET"}
# PostgreSQL's superuser_reserved_connections default, and one administrative session
# (python -m api.admin, psql) kept free
RESERVED_CONNECTIONS = 3 + 1
VALID_KEY = "k" * 32
# what each role's bundle renders
FILES = {
    "web": {SUPERVISORD_CONF, GUNICORN_CONF, "nginx.conf"},
    "executor": {SUPERVISORD_CONF},
}


def _dockerfile(keyword: str) -> list[str]:
    text = (APP_DIR / "Dockerfile").read_text().replace("\\\n", " ")
    return [
        line.strip().removeprefix(keyword).strip()
        for line in text.splitlines()
        if line.strip().startswith(keyword + " ")
    ]


def _image_environment() -> dict[str, str]:
    """The image's ENV defaults (every container starts with them)."""
    env = {}
    for line in _dockerfile("ENV"):
        for word in shlex.split(line):
            key, _, value = word.partition("=")
            env[key] = value
    return env


ENTRYPOINT = json.loads(_dockerfile("ENTRYPOINT")[-1])
IMAGE_ENV = _image_environment()


def _resolve(env: Mapping[str, str], secrets: Mapping[str, str]) -> Resolved:
    """The container's settings as the entry point resolves them: image defaults, then ``env``;
    a *_FILE path reads ``secrets[path]``. No warning (no unknown name, no setting ignored)."""
    environ = {**IMAGE_ENV, **env}
    assert set(env) <= known_names(), set(env) - known_names()
    assert unknown_variable_warnings(environ) == []
    resolved = resolve(environ, {}, {}, machine_host(), lambda path: secrets[path])
    assert resolved.warnings == (), resolved.warnings
    return resolved


def _rendered(resolved: Resolved) -> set[str]:
    return {f.name for f in render(resolved, str(resolved.values["SUPERVISOR_RUN_DIR"]))}


# --- compose -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _compose_secrets(compose: Mapping[str, Any], service: Mapping[str, Any]) -> dict[str, str]:
    """/run/secrets/<name> -> a valid stand-in for each secret the service mounts."""
    values = {
        "database_url": "postgresql://ragflow:pw@postgres:5432/ragflow",
        "ragflow_api_key": VALID_KEY,
    }
    for name in service["secrets"]:
        assert name in compose["secrets"], name
    return {f"/run/secrets/{name}": values.get(name, "x") for name in service["secrets"]}


def test_compose_has_postgres_and_replicated_web_and_executor_services(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "web", "executor"}
    assert services["postgres"]["image"].startswith("postgres:")
    for name in ("web", "executor"):
        service = services[name]
        assert service["environment"]["ROLE"] == name
        assert service["deploy"]["replicas"] >= 2
        assert service["deploy"]["resources"]["limits"]["memory"]
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service.get("entrypoint") is None and service.get("command") is None


@pytest.mark.parametrize("name", ["web", "executor"])
def test_compose_services_render_for_their_role(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    env = {key: str(value) for key, value in service["environment"].items()}
    for key, path in env.items():
        if key.endswith("_FILE"):
            assert Path(path).name in service["secrets"], key
    resolved = _resolve(env, _compose_secrets(compose, service))
    assert resolved.values["ROLE"] == name
    assert database_url.parse(str(resolved.values["DATABASE_URL"])).scheme == "postgresql"
    assert _rendered(resolved) == FILES[name]
    grace = int(service["stop_grace_period"].removesuffix("s"))
    assert resolved.values["STOP_GRACE_SECONDS"] == grace
    assert stop_budget(resolved.values) <= grace
    if name == "web":
        cpus = int(service["deploy"]["resources"]["limits"]["cpus"])
        assert resolved.values["GUNICORN_WORKERS"] == default_workers(cpus)
        assert "healthcheck" not in service  # the image's HEALTHCHECK: healthz on HOST_PORT
        assert all(p.endswith(f":{resolved.values['HOST_PORT']}") for p in service["ports"])
    else:
        assert "ports" not in service
        assert service["healthcheck"]["test"] == ["CMD", "supervisorctl", "status"]


def test_compose_replicas_fit_the_servers_max_connections(compose: dict[str, Any]) -> None:
    services = compose["services"]
    total = 0
    for name in ("web", "executor"):
        service = services[name]
        env = {key: str(value) for key, value in service["environment"].items()}
        resolved = _resolve(env, _compose_secrets(compose, service))
        total += service["deploy"]["replicas"] * bundle_connections(resolved.values)
    command = " ".join(services["postgres"]["command"])
    (limit,) = re.findall(r"max_connections=(\d+)", command)
    print(f"compose fleet: at most {total} connections; max_connections={limit}")
    assert total + RESERVED_CONNECTIONS <= int(limit)
    assert f"= {total} connections (`max_connections={limit}`" in _fleet_md()


# --- kubernetes ----------------------------------------------------------------------------


def _documents() -> Iterator[dict[str, Any]]:
    for path in KUBERNETES:
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield document


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in _documents()}


def _deployment(manifests: Mapping[tuple[str, str], Any], role: str) -> dict[str, Any]:
    return dict(manifests[("Deployment", f"ragflow-{role}")])


def _secret_files(
    manifests: Mapping[tuple[str, str], Any], pod: Mapping[str, Any], container: Mapping[str, Any]
) -> dict[str, str]:
    """Every file path the container sees from a Secret of the manifests -> its value."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    files = {}
    for mount in container["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        data = manifests[("Secret", secret["secretName"])]["stringData"]
        for key, value in data.items():
            files[f"{mount['mountPath']}/{key}"] = str(value)
    return files


def test_kubernetes_manifests_parse_with_separate_web_and_executor_deployments(
    manifests: dict[tuple[str, str], Any],
) -> None:
    assert {("Deployment", "ragflow-web"), ("Deployment", "ragflow-executor"),
            ("Service", "ragflow-web"), ("Service", "postgres"),
            ("Secret", "ragflow-database")} <= set(manifests)  # fmt: skip
    postgres = manifests[("Service", "postgres")]
    assert postgres["spec"]["type"] == "ExternalName"  # a managed server outside the cluster
    url = manifests[("Secret", "ragflow-database")]["stringData"]["url"]
    parsed = database_url.parse(url)
    assert parsed.scheme == "postgresql"
    assert url.split("@", 1)[1].split(":", 1)[0] == "postgres"  # the Service's name
    web = manifests[("Service", "ragflow-web")]
    labels = _deployment(manifests, "web")["spec"]["template"]["metadata"]["labels"]
    assert web["spec"]["selector"].items() <= labels.items()
    assert web["spec"]["ports"][0]["targetPort"] == "http"


def test_the_committed_api_key_placeholder_is_refused() -> None:
    """Applied unchanged, the web pods refuse to start instead of serving a published key."""
    (secret,) = [d for d in _documents() if d["metadata"]["name"] == "ragflow-api-key"]
    with pytest.raises(ValueError):
        API_KEY.parse(secret["stringData"]["key"])


@pytest.mark.parametrize("role", ["web", "executor"])
def test_kubernetes_deployment_renders_and_probes_real_routes(
    manifests: dict[tuple[str, str], Any], role: str
) -> None:
    deployment = _deployment(manifests, role)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] >= 2
    assert container["command"] == ENTRYPOINT
    assert pod["securityContext"]["runAsNonRoot"] is True
    limits = container["resources"]["limits"]
    assert limits["cpu"] and limits["memory"]
    env = {item["name"]: str(item["value"]) for item in container["env"]}
    secrets = _secret_files(manifests, pod, container)
    for key, path in env.items():
        if key.endswith("_FILE"):
            assert path in secrets, f"{key}={path} is not a mounted Secret key"
    if role == "web":
        secrets[env["RAGFLOW_API_KEY_FILE"]] = VALID_KEY  # the placeholder is refused on purpose
    resolved = _resolve(env, secrets)
    assert resolved.values["ROLE"] == role
    assert _rendered(resolved) == FILES[role]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == resolved.values["METRICS_PORT"]
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    pre_stop_seconds = int(pre_stop[1]) if pre_stop else 0
    limit = resolved.values["STOP_GRACE_SECONDS"]
    assert isinstance(limit, int) and stop_budget(resolved.values) <= limit
    # Kubernetes counts the preStop in the grace period, before SIGTERM reaches PID 1
    assert pod["terminationGracePeriodSeconds"] >= pre_stop_seconds + limit
    if role == "web":
        assert ports["http"] == resolved.values["HOST_PORT"]
        cpus = int(limits["cpu"])
        assert resolved.values["GUNICORN_WORKERS"] == default_workers(cpus)
        assert pre_stop == ["sleep", "5"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/v1/system/healthz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/v1/system/ping"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = container[probe]["httpGet"]
            assert get["path"] in PUBLIC_GETS, probe
            assert get["port"] == "http", probe
    else:
        assert "http" not in ports and "readinessProbe" not in container
        assert container["livenessProbe"]["exec"]["command"] == ["supervisorctl", "status"]


def test_kubernetes_replicas_connections_are_what_fleet_md_says(
    manifests: dict[tuple[str, str], Any],
) -> None:
    """docs/fleet.md gives the example's total; the formula gives the same number."""
    total = 0
    for role in ("web", "executor"):
        deployment = _deployment(manifests, role)
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {item["name"]: str(item["value"]) for item in container["env"]}
        secrets = {**_secret_files(manifests, pod, container)}
        if role == "web":
            secrets[env["RAGFLOW_API_KEY_FILE"]] = VALID_KEY
        values = _resolve(env, secrets).values
        total += deployment["spec"]["replicas"] * bundle_connections(values)
    assert f"Kubernetes example: at most **{total}** connections" in _fleet_md()


def _fleet_md() -> str:
    """docs/fleet.md with its line breaks as spaces."""
    return " ".join((APP_DIR / "docs" / "fleet.md").read_text().split())
