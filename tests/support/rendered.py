"""Judge rendered files with their real consumers (supervisor's own parsers)."""

from __future__ import annotations

import configparser
import getpass
import shlex
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor import options as supervisor_options

APP_DIR = Path(__file__).resolve().parents[2]


def pinned_environ(tmp: Path, **overrides: str) -> dict[str, str]:
    """Settings that keep a render inside ``tmp`` and independent of the machine."""
    env = {
        "APP_DIR": str(APP_DIR),
        "PYTHON_BIN": sys.executable,
        "DATA_DIR": str(tmp / "data"),
        "LOG_DIR": str(tmp / "logs"),
        "SUPERVISOR_RUN_DIR": str(tmp / "run"),
        "SUPERVISOR_RUN_USER": getpass.getuser(),
        "GUNICORN_WORKERS": "2",
    }
    env.update(overrides)
    return env


@dataclass(frozen=True)
class ParsedProcess:
    argv: list[str]
    environment: dict[str, str]
    config: Any  # supervisor.options.ProcessConfig


@contextmanager
def _recording_reads() -> Iterator[set[tuple[str, str]]]:
    """Record every (section, key) supervisor's parsers read while the block runs."""
    reads: set[tuple[str, str]] = set()
    original = supervisor_options.UnhosedConfigParser.saneget

    def saneget(self: Any, section: str, option: str, *args: Any, **kwargs: Any) -> Any:
        reads.add((section, option))
        return original(self, section, option, *args, **kwargs)

    supervisor_options.UnhosedConfigParser.saneget = saneget
    try:
        yield reads
    finally:
        supervisor_options.UnhosedConfigParser.saneget = original


def parse_supervisord(path: Path) -> tuple[dict[str, ParsedProcess], list[str]]:
    """Parse ``path`` like supervisord and supervisorctl do.

    Returns process name -> parsed process, and the keys supervisor never read
    (supervisor silently ignores misspelt keys, so these must be empty). Raises
    ValueError like supervisord does on an invalid file.
    """
    with _recording_reads() as reads:
        server = supervisor_options.ServerOptions()
        server.realize(args=["-c", str(path)])
        client = supervisor_options.ClientOptions()
        client.realize(args=["-c", str(path)])
    processes = {}
    for group in server.process_group_configs:
        for config in group.process_configs:
            processes[config.name] = ParsedProcess(
                shlex.split(config.command), dict(config.environment or {}), config
            )
    ini = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    ini.read(path)
    factory_keys = {"supervisor.rpcinterface_factory"}
    unknown = [
        f"[{section}] {key}"
        for section in ini.sections()
        for key in ini.options(section)
        if (section, key) not in reads
        and not (section.startswith("rpcinterface:") and key in factory_keys)
    ]
    return processes, unknown


def expected_argv(values: Mapping[str, Any], output_dir: Path) -> dict[str, list[str]]:
    """The exact programs and commands a render of ``values`` must contain (written out by hand)."""
    py = str(values["PYTHON_BIN"])
    run = str(values["SUPERVISOR_RUN_DIR"])
    if values["RAGFLOW_MODE"] == "dev":
        return {"web": [py, "-m", "api.ragflow_server", "--debug", "--port-file",
                        f"{run}/http.port"]}  # fmt: skip
    role = values["ROLE"]  # all: every program; web: no executors; executor: only executors
    web = role != "executor"
    proxy = web and values["PROXY"] == "nginx"
    holders = [f"{run}/holder-0.sock", f"{run}/holder-1.sock"]
    holder_args = ["--holder", holders[0], "--holder", holders[1]]
    upstream = ["--upstream", f"{run}/web.sock"] if proxy else []
    argv = {
        f"socket_holder_{n}": [
            py, "-m", "supervise.socket_holder", "--host", str(values["HOST_IP"]),
            "--port", str(values["HOST_PORT"]), "--port-file", f"{run}/http.port", *upstream,
            *holder_args,
            "--lock", f"{run}/holder.lock", "--index", str(n),
        ]
        for n in (0, 1)
    }  # fmt: skip
    argv["web"] = [
        py, "-m", "supervise.serve_web", *holder_args, "--listener", "unix" if proxy else "tcp",
        "--", py, "-m", "gunicorn", "-c", f"{output_dir}/gunicorn.conf.py", "api.wsgi:application",
    ]  # fmt: skip
    if proxy:
        listen = ["--listen-conf", f"{run}/nginx-listen.conf"] if values["HOST_PORT"] == 0 else []
        argv["proxy"] = [
            py, "-m", "supervise.serve_proxy", *holder_args, *listen, "--",
            str(values["NGINX_BIN"]), "-p", f"{run}/", "-c", f"{output_dir}/nginx.conf",
            "-e", "stderr",
        ]  # fmt: skip
    if values["METRICS_PORT"] is not None:
        argv["metrics"] = [
            py, "-m", "api.metrics_exporter", "--host", str(values["METRICS_HOST"]),
            "--port", str(values["METRICS_PORT"]), "--port-file", f"{run}/metrics.port",
        ]  # fmt: skip
    if not web:
        argv = {name: words for name, words in argv.items() if name == "metrics"}
    for number in range(int(values["WS"]) if role != "web" else 0):
        argv[f"task_executor_{number:02d}"] = [
            py, "-m", "api.task_executor", "--consumer-num", str(number),
        ]  # fmt: skip
    return argv
