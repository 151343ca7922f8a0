"""The internals of supervisor, Gunicorn, Werkzeug and prometheus_client the bundle relies on,
named one by one.

supervise/launcher.py embeds supervisord (no public API exists for that), supervise/ hooks into
Gunicorn's workers and logger, api/dev_reloader.py plugs a loop into Werkzeug's private reloader
module, api/metrics.py writes a histogram's buckets in batches. pyproject.toml caps each of these
packages below its next release; these tests fail with a message naming the internal when an
installed version lacks one, so an upgrade fails here and not in production.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import tomllib
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
CAPPED = ("supervisor", "gunicorn", "werkzeug", "prometheus-client")


class Internal(NamedTuple):
    package: str  # distribution name ("" for the standard library)
    module: str
    path: str  # dotted attribute path inside the module
    user: str  # our code that relies on it
    source_mentions: str = ""  # for instance attributes: a text the defining source contains


INTERNALS = (
    Internal("supervisor", "supervisor.options", "ServerOptions.execve", "supervise/launcher.py"),
    Internal("supervisor", "supervisor.options", "ServerOptions.make_http_servers",
             "supervise/launcher.py"),
    Internal("supervisor", "supervisor.options", "ServerOptions.get_socket_map",
             "supervise/launcher.py"),
    Internal("supervisor", "supervisor.options", "ServerOptions.close_httpservers",
             "supervise/launcher.py"),
    Internal("supervisor", "supervisor.options", "ServerOptions.close_logger",
             "supervise/launcher.py"),
    Internal("supervisor", "supervisor.supervisord", "Supervisor.runforever",
             "supervise/launcher.py"),
    Internal("supervisor", "supervisor.supervisord", "Supervisor.ordered_stop_groups_phase_1",
             "supervise/launcher.py"),
    Internal("supervisor", "supervisor.supervisord", "Supervisor.__init__",
             "supervise/launcher.py", "self.process_groups"),
    Internal("supervisor", "supervisor.supervisord", "Supervisor.runforever",
             "supervise/launcher.py", "self.stop_groups"),
    Internal("supervisor", "supervisor.process", "Subprocess.delay", "supervise/launcher.py"),
    Internal("supervisor", "supervisor.process", "Subprocess.spawnerr", "supervise/launcher.py"),
    Internal("supervisor", "supervisor.medusa.asyncore_25", "ExitNow", "supervise/launcher.py"),
    Internal("supervisor", "supervisor.events", "ProcessLogStderrEvent", "supervise/launcher.py"),
    Internal("supervisor", "supervisor.events", "SupervisorStoppingEvent",
             "supervise/launcher.py"),
    Internal("gunicorn", "gunicorn.workers.sync", "SyncWorker", "supervise/gunicorn_hooks.py"),
    Internal("gunicorn", "gunicorn.workers.base", "Worker.__init__",
             "supervise/gunicorn_hooks.py", "self.sockets"),
    Internal("gunicorn", "gunicorn.workers.base", "Worker.__init__",
             "supervise/gunicorn_hooks.py", "self.ppid"),
    Internal("gunicorn", "gunicorn.glogging", "Logger.atoms", "supervise/gunicorn_logging.py"),
    Internal("gunicorn", "gunicorn.http.message", "Message.__init__",
             "supervise/gunicorn_logging.py", "self.peer_addr"),
    Internal("werkzeug", "werkzeug._reloader", "StatReloaderLoop.restart_with_reloader",
             "api/dev_reloader.py"),
    Internal("werkzeug", "werkzeug._reloader", "_get_args_for_reloading", "api/dev_reloader.py"),
    Internal("werkzeug", "werkzeug._reloader", "reloader_loops", "api/dev_reloader.py"),
    Internal("", "threading", "_register_atexit", "api/task_executor.py"),
    Internal("prometheus-client", "prometheus_client.metrics", "Histogram._metric_init",
             "api/metrics.py", "self._buckets"),
    Internal("prometheus-client", "prometheus_client.metrics", "Histogram._metric_init",
             "api/metrics.py", "self._sum"),
)  # fmt: skip


def _installed(package: str) -> str:
    return importlib.metadata.version(package) if package else "(standard library)"


def _resolve(internal: Internal) -> Any:
    found: Any = importlib.import_module(internal.module)
    for name in internal.path.split("."):
        found = getattr(found, name)
    return found


@pytest.mark.parametrize(
    "internal", INTERNALS, ids=lambda i: f"{i.module}.{i.path}:{i.source_mentions or 'exists'}"
)
def test_each_internal_we_rely_on_exists(internal: Internal) -> None:
    where = f"{internal.module}.{internal.path}"
    advice = (
        f"{internal.user} relies on {where}"
        + (f" setting {internal.source_mentions}" if internal.source_mentions else "")
        + f", which {internal.package or 'Python'} {_installed(internal.package)} does not have;"
        f" keep the cap in pyproject.toml or adapt {internal.user}"
    )
    try:
        found = _resolve(internal)
    except (ImportError, AttributeError):
        pytest.fail(advice)
    if internal.source_mentions:
        assert internal.source_mentions in inspect.getsource(found), advice


def test_logger_atoms_keeps_its_signature() -> None:
    from gunicorn.glogging import Logger

    expected = ["self", "resp", "req", "environ", "request_time"]
    assert list(inspect.signature(Logger.atoms).parameters) == expected, (
        "supervise/gunicorn_logging.py overrides Logger.atoms(resp, req, environ, request_time)"
    )


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    parsed = (Requirement(text) for text in project["dependencies"])
    return {requirement.name: requirement for requirement in parsed}


@pytest.mark.parametrize("package", CAPPED)
def test_packages_whose_internals_we_use_are_capped_and_installed_within_the_cap(
    package: str,
) -> None:
    requirement = _requirements()[package]
    assert any(spec.operator in ("<", "<=", "==", "~=") for spec in requirement.specifier), (
        f"pyproject.toml: {package} has no upper bound, but supervise/ or api/ relies on its"
        " internals (see INTERNALS here); cap it below the next release"
    )
    installed = importlib.metadata.version(package)
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"{package} {installed} is installed, outside pyproject.toml's {requirement}; "
        "run `make venv` (uv sync --frozen)"
    )
    assert {i.package for i in INTERNALS} >= {package}
