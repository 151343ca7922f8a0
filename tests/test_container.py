"""The container image, built with buildah and run with podman for real (issue 6).

One image build is shared by the module. A production container (read-only root filesystem, JSON
logs) is started once and shared by the checks that leave it running; dev mode, the port conflict,
an invalid setting and the graceful stop each get their own container. Every container (with its
anonymous volumes) and the built image are removed at the end; the dated base image stays cached.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import container_tools as ct
import pytest
import yaml
from support.ports import HTTP_PORT_FILE
from support.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 90.0
STOP_BUDGET = 30  # STOP_GRACE_SECONDS default; also the docker-compose stop_grace_period
# What the Dockerfile may add on top of its base image: nginx, the virtualenv (Gunicorn,
# supervisor, Werkzeug, the PDF/Office parsers with lxml and Pillow, the PostgreSQL driver with
# libpq, prometheus_client, debugpy, Swagger UI's assets) and the application's bytecode.
MAX_ADDED_BYTES = 120 * 1024**2
RUN_ID = uuid.uuid4().hex[:8]
HEALTHZ = "/v1/system/healthz"
APP_UID = 10001  # the Dockerfile's ARG APP_UID default
RUN_DIR = "/run/ragflow"  # SUPERVISOR_RUN_DIR in the image (Dockerfile)
READ_ONLY = ("--read-only", "--tmpfs", f"{RUN_DIR}:U")


@dataclass
class Container:
    name: str
    api_key: str
    fixed_port: int = 0  # 0: HOST_PORT=0, the port the container bound is read back

    @property
    def port(self) -> int:
        """HOST_PORT=0 (--network host): the port from the bundle's port file in the
        container, or from Gunicorn's "Listening at" line when Gunicorn runs alone."""
        if not self.fixed_port:
            self.fixed_port = wait_for(self._bound_port, STARTUP_TIMEOUT, f"{self.name}'s port")
        return self.fixed_port

    def _bound_port(self) -> int | None:
        written = self.exec("cat", f"{RUN_DIR}/{HTTP_PORT_FILE}", check=False)
        if written.returncode == 0 and written.stdout.strip().isdigit():
            return int(written.stdout)
        listening = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", self.logs())
        return int(listening[1]) if listening else None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def exec(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return ct.exec_in(self.name, *cmd, check=check)

    def logs(self) -> str:
        return ct.logs(self.name)


def healthz(port: int) -> tuple[int, bytes] | None:
    """(status, body) of GET /v1/system/healthz, None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{HEALTHZ}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return None


def wait_serving(container: Container) -> None:
    """Poll healthz until it answers 200; fail early with the logs if the container exits."""

    def serving() -> bool:
        answer = healthz(container.port)
        if answer is not None and answer[0] == 200:
            return True
        if ct.container_state(container.name).get("Status") in ("exited", "stopped"):
            pytest.fail(f"{container.name} exited during start-up:\n{container.logs()[-4000:]}")
        return False

    wait_for(serving, STARTUP_TIMEOUT, f"{container.name} to answer healthz with 200")


def supervisorctl_status(container: Container, *names: str) -> dict[str, str]:
    """`supervisorctl status` (no -c) as {process name: state}."""
    out = container.exec("supervisorctl", "status", *names, check=False).stdout
    states = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) >= 2:
            states[words[0]] = words[1]
    return states


@pytest.fixture(scope="module")
def tools() -> None:
    reason = ct.install_tools()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"container tools unavailable in CI: {reason}")
        pytest.skip(f"container tools unavailable: {reason}")


@pytest.fixture(scope="module")
def base_image(tools: None) -> str:
    return ct.ensure_base_image()


@pytest.fixture(scope="module")
def image(base_image: str) -> Iterator[str]:
    tag = f"localhost/ragflow-bundle-test:{RUN_ID}"
    seconds = ct.build_image(REPO_ROOT, tag, base_image)
    print(f"\nbuilt {tag} FROM {base_image} in {seconds:.1f} s")
    try:
        yield tag
    finally:
        ct.remove_image(tag)


@pytest.fixture(scope="module")
def started(image: str) -> Iterator[list[Container]]:
    """Every container the module started; all removed at module teardown."""
    containers: list[Container] = []
    yield containers
    for container in containers:
        ct.remove_container(container.name)


def start(
    started: list[Container],
    image: str,
    role: str,
    args: tuple[str, ...] = (),
    port: int | None = None,
    flags: tuple[str, ...] = (),
    **env: str,
) -> Container:
    container = Container(
        name=f"ragflow-test-{role}-{RUN_ID}",
        api_key=f"test-key-{uuid.uuid4().hex}",
        fixed_port=port or 0,
    )
    started.append(container)
    env = {
        "HOST_IP": "127.0.0.1",  # --network host: stay on loopback
        "HOST_PORT": str(port or 0),  # 0: the kernel picks a free port (container.port)
        "RAGFLOW_API_KEY": container.api_key,
        **env,
    }
    ct.start_container(container.name, image, env, args, flags)
    return container


@pytest.fixture(scope="module")
def prod(started: list[Container], image: str) -> Container:
    # Read-only root filesystem: only the volumes and the run directory are writable.
    container = start(
        started, image, "prod", flags=READ_ONLY, WS="2", GUNICORN_WORKERS="2", LOG_FORMAT="json"
    )
    wait_serving(container)
    return container


def test_healthz_answers_200(prod: Container) -> None:
    answer = healthz(prod.port)
    assert answer is not None
    status, body = answer
    assert status == 200, body
    assert json.loads(body)["status"] == "ok"


def test_sdk_upload_parse_retrieve(prod: Container) -> None:
    from ragflow_sdk import RAGFlow

    rag = RAGFlow(api_key=prod.api_key, base_url=prod.base_url)
    dataset = rag.create_dataset(name=f"container-{RUN_ID}")
    text = (
        "Supervisord runs as PID 1 inside the container.\n\n"
        "The quokka is a small marsupial that lives on Rottnest Island.\n"
    )
    dataset.upload_documents([{"display_name": "notes.txt", "blob": text.encode()}])
    (document,) = dataset.list_documents()
    dataset.async_parse_documents([document.id])

    def parsed() -> str | None:
        (doc,) = dataset.list_documents(id=document.id)
        assert doc.run != "FAIL", doc.progress_msg
        return doc.run if doc.run == "DONE" else None

    wait_for(parsed, 90, "the task executors to parse the upload")
    chunks = rag.retrieve(dataset_ids=[dataset.id], question="quokka marsupial")
    assert chunks, "retrieval found nothing for a word of the parsed document"
    assert any("quokka" in chunk.content for chunk in chunks)
    assert all(chunk.document_id == document.id for chunk in chunks)


def wait_all_running(container: Container) -> dict[str, str]:
    """Poll plain `supervisorctl status` until every program is RUNNING (healthz answers while
    programs are still inside their startsecs)."""

    def all_running() -> dict[str, str] | None:
        states = supervisorctl_status(container)
        return states if states and set(states.values()) == {"RUNNING"} else None

    return wait_for(all_running, 30, f"every program of {container.name} to be RUNNING")


def test_supervisorctl_status_without_config_flag(prod: Container) -> None:
    states = wait_all_running(prod)
    assert "web" in states and "proxy" in states, states
    assert sorted(name for name in states if "socket_holder" in name) == [
        "socket_holder:socket_holder_0",
        "socket_holder:socket_holder_1",
    ], states
    executors = {name: state for name, state in states.items() if "task_executor_" in name}
    assert sorted(executors) == [
        "task_executor:task_executor_00",
        "task_executor:task_executor_01",
    ], states
    assert set(executors.values()) == {"RUNNING"}, states


def test_pid1_is_supervisord(prod: Container) -> None:
    cmdline = prod.exec("cat", "/proc/1/cmdline").stdout.split("\0")
    assert "supervise.launcher" in cmdline, cmdline
    assert prod.exec("supervisorctl", "pid").stdout.strip() == "1"  # supervisord's own pid


PROCESS_TABLE = """
import json, os
rows = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        status = open(f"/proc/{pid}/status").read()
        cmdline = open(f"/proc/{pid}/cmdline").read().replace("\\0", " ").strip()
    except OSError:
        continue
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    rows.append({"pid": int(pid), "uid": int(uid), "cmdline": cmdline})
print(json.dumps(rows))
"""


def test_application_processes_are_not_root(prod: Container) -> None:
    rows = json.loads(prod.exec("python", "-c", PROCESS_TABLE).stdout)
    assert {row["uid"] for row in rows} == {APP_UID}, rows
    cmdlines = " | ".join(row["cmdline"] for row in rows)
    assert "gunicorn" in cmdlines
    assert "api.task_executor" in cmdlines
    assert "nginx: master process" in cmdlines and "nginx: worker process" in cmdlines


def json_log_entries(text: str) -> list[dict[str, object]]:
    entries = []
    for line in text.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)  # every JSON-looking line must be one whole object
            assert isinstance(entry, dict), line
            entries.append(entry)
    return entries


def test_logs_identify_programs(prod: Container) -> None:
    """The prod container runs with LOG_FORMAT=json: one object per line, naming its program."""
    assert healthz(prod.port) is not None

    def identified() -> tuple[dict[str, object], dict[str, object], dict[str, object]] | None:
        entries = json_log_entries(prod.logs())
        web = [e for e in entries if e.get("program") == "web" and HEALTHZ in str(e)]
        executor = [e for e in entries if e.get("program") == "task_executor_00"]
        proxy = [e for e in entries if e.get("program") == "proxy" and HEALTHZ in str(e)]
        return (web[-1], executor[-1], proxy[-1]) if web and executor and proxy else None

    web, executor, proxy = wait_for(
        identified, 20, "JSON log lines of web, task_executor_00 and proxy"
    )
    print(f"\n{web}\n{executor}\n{proxy}")
    assert isinstance(web.get("pid"), int) and isinstance(executor.get("pid"), int)
    assert isinstance(proxy.get("pid"), int) and proxy.get("logger") == "nginx.access"


def test_health_status_turns_healthy(prod: Container) -> None:
    # Without systemd podman cannot schedule the HEALTHCHECK timer; run the image's check now.
    ct.podman("healthcheck", "run", prod.name, timeout=60)
    health = ct.container_state(prod.name).get("Health") or ct.container_state(prod.name).get(
        "Healthcheck"
    )
    assert isinstance(health, dict), ct.container_state(prod.name)
    assert health.get("Status") == "healthy", health


def test_image_size(image: str, base_image: str) -> None:
    size, base = ct.image_size(image), ct.image_size(base_image)
    print(f"\nimage size {size / 1e6:.1f} MB ({(size - base) / 1e6:.1f} MB on top of the base)")
    assert size - base < MAX_ADDED_BYTES


def test_dev_mode_runs_single_program(started: list[Container], image: str) -> None:
    container = start(started, image, "dev", args=("--dev-mode",))
    wait_serving(container)
    assert wait_all_running(container) == {"web": "RUNNING"}
    assert "supervise.launcher" in container.exec("cat", "/proc/1/cmdline").stdout.split("\0")
    answer = healthz(container.port)
    assert answer is not None and answer[0] == 200


def test_entrypoint_sh_dev_mode_form_runs_dev_mode(started: list[Container], image: str) -> None:
    """`docker run -d IMAGE ./entrypoint.sh --dev-mode`, the production-mode guide's form."""
    container = start(started, image, "guide-dev", args=("./entrypoint.sh", "--dev-mode"))
    wait_serving(container)
    assert wait_all_running(container) == {"web": "RUNNING"}
    assert "supervise.launcher" in container.exec("cat", "/proc/1/cmdline").stdout.split("\0")


def test_gunicorn_config_command_serves_in_the_image(started: list[Container], image: str) -> None:
    """`gunicorn -c gunicorn_config.py api.wsgi:application` in the image's working directory,
    with HOST_PORT, GUNICORN_WORKERS and GUNICORN_LOG_LEVEL from the environment."""
    command = ("gunicorn", "-c", "gunicorn_config.py", "api.wsgi:application")
    container = start(
        started, image, "guide-gunicorn", args=command, GUNICORN_WORKERS="3",
        GUNICORN_LOG_LEVEL="debug",
    )  # fmt: skip
    wait_serving(container)
    wait_for(lambda: container.logs().count("Booting worker with pid") >= 3, 30, "3 workers")
    logs = container.logs()
    print(f"\n{' '.join(command)} in the image: serving on {container.port}")
    assert f"Listening at: http://127.0.0.1:{container.port}" in logs, logs[-4000:]
    assert logs.count("Booting worker with pid") == 3, logs[-4000:]
    assert " DEBUG " in logs, logs[-4000:]


def test_port_conflict_exits_nonzero(started: list[Container], image: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        container = start(started, image, "conflict", port=port)
        code = ct.wait_exited(container.name, STARTUP_TIMEOUT)
    logs = container.logs()
    assert code != 0, logs[-4000:]
    assert f"Port {port} (HOST_PORT) is in use" in logs, logs[-4000:]
    fatal = [line for line in logs.splitlines() if "FATAL" in line]
    assert fatal, logs[-4000:]
    print(f"\nexit code {code}; {fatal[-1]}")


def test_invalid_setting_exits_2_before_supervisord(started: list[Container], image: str) -> None:
    container = start(started, image, "badconf", GUNICORN_WORKERS="zero")
    code = ct.wait_exited(container.name, STARTUP_TIMEOUT)
    logs = container.logs()
    assert code == 2, logs[-4000:]
    assert "GUNICORN_WORKERS" in logs, logs[-4000:]
    assert "supervisord started" not in logs


def test_stop_drains_in_flight_request_within_budget(started: list[Container], image: str) -> None:
    container = start(started, image, "stop")
    wait_serving(container)
    wait_all_running(container)
    body = json.dumps({"name": f"drained-{RUN_ID}"}).encode()
    head = (
        f"POST /api/v1/datasets HTTP/1.1\r\nHost: 127.0.0.1:{container.port}\r\n"
        f"Authorization: Bearer {container.api_key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    client = socket.create_connection(("127.0.0.1", container.port), timeout=30)
    stop: subprocess.Popen[str] | None = None
    try:
        client.sendall(head.encode())
        # The proxy (nginx) answers 100 Continue once it reads the request: it is now in flight.
        assert b"100 Continue" in client.recv(1024)
        started_at = time.monotonic()
        stop = subprocess.Popen(
            [*ct.PODMAN, "stop", "-t", str(STOP_BUDGET), container.name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # nginx stops first (SIGQUIT: it stops accepting, finishes requests in flight); web
        # gets its SIGTERM once nginx is done.
        wait_for(
            lambda: "signal 3 (SIGQUIT) received" in container.logs(), 20,
            "the proxy to receive SIGQUIT",
        )  # fmt: skip
        term_seen = time.monotonic() - started_at
        client.sendall(body)
        response = b""
        while chunk := client.recv(65536):
            response += chunk
        client.close()  # a client that lingers would hold the worker in its lingering close
        _, stop_err = stop.communicate(timeout=STOP_BUDGET + 30)
        elapsed = time.monotonic() - started_at
    finally:
        client.close()
        if stop is not None and stop.poll() is None:
            stop.kill()
            stop.wait()
    shutdown_log = "\n".join(container.logs().splitlines()[-20:])
    print(
        f"\npodman stop -t {STOP_BUDGET}: the proxy had SIGQUIT after {term_seen:.2f} s (request"
        f" body sent then), container gone after {elapsed:.2f} s; last log lines:\n{shutdown_log}"
    )
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 200"), response[:500]
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["code"] == 0, response[:500]
    assert stop.returncode == 0, stop_err
    assert ct.container_state(container.name).get("ExitCode") == 0, container.logs()[-4000:]
    assert "SIGKILL" not in container.logs()
    assert elapsed < STOP_BUDGET / 2


def dockerfile_instruction(keyword: str) -> str:
    """The (continuation-joined) text after the last ``keyword`` instruction in the Dockerfile."""
    text = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith(keyword + " ")]
    assert lines, f"Dockerfile has no {keyword}"
    return lines[-1].removeprefix(keyword).strip()


def test_dockerfile_pins_the_makefiles_uv() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    (make_version,) = re.findall(r"^UV_VERSION\s*:?=\s*(\S+)", makefile, re.MULTILINE)
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert re.findall(r"^ARG UV_VERSION=(\S+)$", dockerfile, re.MULTILINE) == [make_version]


def test_compose_example_matches_image_and_budget() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["ragflow"]
    healthcheck_cmd = json.loads(dockerfile_instruction("HEALTHCHECK").partition("CMD")[2])
    assert service["healthcheck"]["test"] == ["CMD", *healthcheck_cmd]
    volumes = json.loads(dockerfile_instruction("VOLUME"))
    assert sorted(v.split(":")[1] for v in service["volumes"]) == sorted(volumes)
    grace = int(service["stop_grace_period"].removesuffix("s"))
    env_file = REPO_ROOT / service["env_file"]
    resolved = subprocess.run(
        [sys.executable, str(REPO_ROOT / "render_config.py"), "--print-config",
         "--env-file", str(env_file)],
        capture_output=True, text=True, timeout=60, check=True, env={"PATH": os.environ["PATH"]},
    )  # fmt: skip
    budget = json.loads(resolved.stdout)["stop_budget"]
    assert budget["limit_seconds"] == grace, "STOP_GRACE_SECONDS must equal stop_grace_period"
    assert budget["total_seconds"] <= grace
