"""Pure rendering: resolved settings in, files (in memory) out.

``render`` never touches the file system or the environment; it raises
ConfigError when the settings cannot make a safe configuration (the shutdown
budget, or a value a filter cannot represent).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jinja2

from renderer.filters import FILTERS
from shared.ports import HTTP_PORT_FILE, METRICS_PORT_FILE
from shared.settings import (
    EXECUTOR_ROLES,
    GRACEFUL_TIMEOUT_FLAG,
    SETTINGS,
    WEB_ROLES,
    ConfigError,
    Resolved,
    Value,
    format_value,
    graceful_timeout_in,
)

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "deploy" / "templates"
SUPERVISORD_CONF = "supervisord.conf"
GUNICORN_CONF = "gunicorn.conf.py"
NGINX_CONF = "nginx.conf"
# HOST_PORT=0: nginx.conf includes this file of SUPERVISOR_RUN_DIR, which serve_proxy writes
NGINX_LISTEN_CONF = "nginx-listen.conf"
SOCKET_HOLDER_STOPWAITSECS = 2
# Two socket holders keep the listening sockets: a killed one takes its copies back from the other.
SOCKET_HOLDER_COPIES = 2
# At shutdown web stops after the proxy: whatever Gunicorn still runs then has no client left to
# answer (nginx finished or cut every request), so supervise.launcher gives web this long.
WEB_AFTER_PROXY_STOPWAITSECS = 3
# The metrics exporter stops at once when the shutdown starts (supervise.launcher).
METRICS_STOPWAITSECS = 2
# prometheus_client's multiprocess directory (PROMETHEUS_MULTIPROC_DIR) inside SUPERVISOR_RUN_DIR;
# supervise.launcher empties it whenever supervisord (re)starts every program.
METRICS_DIR = "metrics"
# sun_path holds 108 bytes including the terminating NUL.
UNIX_SOCKET_PATH_MAX = 107


@dataclass(frozen=True)
class RenderedFile:
    name: str  # file name inside the output directory
    content: str
    mode: int  # permission bits


@dataclass(frozen=True)
class StopStep:
    program: str
    priority: int
    stopwaitsecs: int
    at_once: bool = False  # stopped by the launcher as soon as the shutdown starts


def has_web(values: Mapping[str, Value]) -> bool:
    """Whether a production bundle serves HTTP: socket holders and web (ROLE all or web)."""
    return values["RAGFLOW_MODE"] == "production" and values["ROLE"] in WEB_ROLES


def has_executors(values: Mapping[str, Value]) -> bool:
    """Whether a production bundle runs task executors (ROLE all or executor, WS above 0)."""
    production = values["RAGFLOW_MODE"] == "production"
    return production and values["ROLE"] in EXECUTOR_ROLES and _int(values["WS"]) > 0


def has_proxy(values: Mapping[str, Value]) -> bool:
    return has_web(values) and values["PROXY"] == "nginx"


def has_metrics(values: Mapping[str, Value]) -> bool:
    return values["RAGFLOW_MODE"] == "production" and values["METRICS_PORT"] is not None


def stop_plan(values: Mapping[str, Value]) -> tuple[StopStep, ...]:
    """Programs in supervisord's stop order (descending priority) with their stopwaitsecs.

    supervisord stops one priority group at a time; the launcher stops the `at_once` groups
    (task executors, socket holders) when the shutdown starts, in parallel with the others.
    """
    task_stop = _int(values["TASK_STOP_TIMEOUT"])
    if values["RAGFLOW_MODE"] == "dev":
        # The dev server runs the executor loop in-process: it hands back its task.
        return (StopStep("web", 10, task_stop + 2),)
    web_stop = _int(values["GUNICORN_GRACEFUL_TIMEOUT"]) + 2
    steps = []
    if has_proxy(values):
        # nginx drains requests in flight (worker_shutdown_timeout = GUNICORN_GRACEFUL_TIMEOUT).
        steps.append(StopStep("proxy", 20, web_stop))
        steps.append(StopStep("web", 10, WEB_AFTER_PROXY_STOPWAITSECS))
    elif has_web(values):
        steps.append(StopStep("web", 10, web_stop))
    if has_executors(values):
        steps.append(StopStep("task_executor", 5, task_stop + 1, at_once=True))
    if has_metrics(values):
        steps.append(StopStep("metrics", 2, METRICS_STOPWAITSECS, at_once=True))
    if has_web(values):
        steps.append(StopStep("socket_holder", 1, SOCKET_HOLDER_STOPWAITSECS, at_once=True))
    return tuple(steps)


def stop_budget(values: Mapping[str, Value]) -> int:
    """Worst-case stop time: the one-at-a-time groups in sequence, the at-once groups alongside."""
    plan = stop_plan(values)
    in_sequence = sum(step.stopwaitsecs for step in plan if not step.at_once)
    return max([in_sequence, *(step.stopwaitsecs for step in plan if step.at_once)])


def budget_problems(values: Mapping[str, Value]) -> list[str]:
    plan = stop_plan(values)
    total = stop_budget(values)
    limit = _int(values["STOP_GRACE_SECONDS"])
    if total <= limit:
        return []
    parts = " + ".join(f"{step.program} {step.stopwaitsecs}" for step in plan if not step.at_once)
    parts = f"{parts}; " if parts else ""
    graceful = (
        f"the {GRACEFUL_TIMEOUT_FLAG} in GUNICORN_CMD_ARGS"
        if graceful_timeout_in(_str_or_none(values.get("GUNICORN_CMD_ARGS"))) is not None
        else "GUNICORN_GRACEFUL_TIMEOUT"
    )
    alongside = ", ".join(f"{step.program} {step.stopwaitsecs}" for step in plan if step.at_once)
    return [
        f"STOP_GRACE_SECONDS={limit}: the worst-case shutdown takes {total} s ({parts}"
        f"alongside: {alongside}); lower {graceful} or TASK_STOP_TIMEOUT, or "
        "raise STOP_GRACE_SECONDS (and the orchestrator's grace period with it)"
    ]


def unix_sockets(values: Mapping[str, Value]) -> list[str]:
    """Every unix socket the bundle creates in SUPERVISOR_RUN_DIR."""
    run_dir = str(values["SUPERVISOR_RUN_DIR"])
    paths = [f"{run_dir}/supervisor.sock"]
    if has_web(values):
        paths += [f"{run_dir}/holder-{n}.sock" for n in range(SOCKET_HOLDER_COPIES)]
        if has_proxy(values):
            paths.append(f"{run_dir}/web.sock")
    return paths


def socket_path_problems(values: Mapping[str, Value]) -> list[str]:
    longest = max(unix_sockets(values), key=lambda path: len(path.encode()))
    size = len(longest.encode())
    if size <= UNIX_SOCKET_PATH_MAX:
        return []
    return [
        f"SUPERVISOR_RUN_DIR={values['SUPERVISOR_RUN_DIR']!r}: too long for the unix sockets in it "
        f"({longest} is {size} bytes; at most {UNIX_SOCKET_PATH_MAX}); choose a shorter directory"
    ]


def app_environment(resolved: Resolved) -> dict[str, str]:
    """The non-secret settings the application reads, for every program's environment=."""
    env = {
        s.name: format_value(resolved.values[s.name])
        for s in SETTINGS
        if s.app_env
        and not s.secret
        and resolved.mode in s.modes
        and resolved.values[s.name] is not None
    }
    if has_metrics(resolved.values):
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir(resolved.values)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def metrics_dir(values: Mapping[str, Value]) -> str:
    return f"{values['SUPERVISOR_RUN_DIR']}/{METRICS_DIR}"


def _str_or_none(value: Value) -> str | None:
    return None if value is None else str(value)


def _int(value: Value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer setting, got {value!r}")
    return value


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    return env


def render(resolved: Resolved, output_dir: str) -> list[RenderedFile]:
    """Render supervisord.conf (gunicorn.conf.py when it serves HTTP in production, nginx.conf
    with the proxy)."""
    problems = budget_problems(resolved.values) + socket_path_problems(resolved.values)
    if problems:
        raise ConfigError(problems)
    values = resolved.values
    run_dir = str(values["SUPERVISOR_RUN_DIR"])
    host_ip = str(values["HOST_IP"])
    bind_host = f"[{host_ip}]" if ":" in host_ip else host_ip
    context = {
        "s": values,
        "mode": resolved.mode,
        "app_env": app_environment(resolved),
        "plan": {step.program: step for step in stop_plan(values)},
        "stop_budget": stop_budget(values),
        "socket": f"{run_dir}/supervisor.sock",
        "pidfile": f"{run_dir}/supervisord.pid",
        "holder_lock": f"{run_dir}/holder.lock",
        "holder_copies": SOCKET_HOLDER_COPIES,
        "holder_args": [
            word
            for n in range(SOCKET_HOLDER_COPIES)
            for word in ("--holder", f"{run_dir}/holder-{n}.sock")
        ],
        "role": values["ROLE"],
        "web": has_web(values),
        "executors": has_executors(values),
        "proxy": has_proxy(values),
        "metrics": has_metrics(values),
        "upstream_socket": f"{run_dir}/web.sock",
        "bind": f"{bind_host}:{values['HOST_PORT']}",
        "http_port_file": f"{run_dir}/{HTTP_PORT_FILE}",
        "metrics_port_file": f"{run_dir}/{METRICS_PORT_FILE}",
        # HOST_PORT=0: serve_proxy writes nginx's listen directive for the port the holders bound
        "nginx_listen_conf": f"{run_dir}/{NGINX_LISTEN_CONF}",
        "gunicorn_conf": f"{output_dir.rstrip('/') or '/'}/{GUNICORN_CONF}",
        "nginx_conf": f"{output_dir.rstrip('/') or '/'}/{NGINX_CONF}",
        "nginx_prefix": f"{run_dir.rstrip('/')}/",
        "nginx_pid": f"{run_dir}/nginx.pid",
        "nginx_temp": {
            "body": f"{run_dir}/proxy-body",
            "proxy": f"{run_dir}/proxy-temp",
            "unused": f"{run_dir}/proxy-temp",
        },
    }
    if has_metrics(values) and values["SUPERVISOR_USER"] is not None:
        # the exporter reads supervisord's state over the control socket, as supervisorctl does
        context["metrics_env"] = {
            **context["app_env"],  # type: ignore[dict-item]
            "SUPERVISOR_USERNAME": values["SUPERVISOR_USER"],
            "SUPERVISOR_PASSWORD": values["SUPERVISOR_PASSWORD"],
        }
    else:
        context["metrics_env"] = context["app_env"]
    env = _environment()

    def render_template(name: str) -> str:
        return env.get_template(name).render(context).rstrip("\n") + "\n"

    try:
        files = [
            RenderedFile(
                SUPERVISORD_CONF,
                render_template("supervisord.conf.j2"),
                0o600 if values["SUPERVISOR_PASSWORD"] is not None else 0o640,
            )
        ]
        if has_web(values):
            files.append(RenderedFile(GUNICORN_CONF, render_template("gunicorn.conf.py.j2"), 0o640))
        if has_proxy(values):
            files.append(RenderedFile(NGINX_CONF, render_template("nginx.conf.j2"), 0o640))
    except ValueError as error:
        # A validator let through a value a filter cannot represent: refuse, name it.
        raise ConfigError([f"cannot render safely: {error}"]) from error
    return files
