"""Shared pytest fixtures. Each block names its owner's role; add new fixtures as new blocks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# --- process lifecycle (supervise/): real supervisord as PID 1 of a fresh PID namespace -------
from support.plumbing_conf import PlumbingSpec, write_plumbing_conf
from support.ports import HTTP_PORT_FILE
from support.supervised import SupervisedRun

StartPlumbing = Callable[..., SupervisedRun]


@pytest.fixture
def start_plumbing(tmp_path: Path) -> Iterator[StartPlumbing]:
    """Factory: write the hand-written supervise/ config on port 0 (the socket holders bind a
    free port and write it to the run's port file: run.port), start the launcher as
    PID 1 of a new PID namespace, wait until every program is RUNNING (unless wait=False).
    Teardown always kills the namespace, so no process outlives the test."""
    runs: list[SupervisedRun] = []

    def start(wait: bool = True, **spec_fields: Any) -> SupervisedRun:
        spec = PlumbingSpec(**spec_fields)
        run_dir = tmp_path / f"run{len(runs)}"
        run_dir.mkdir()
        conf = write_plumbing_conf(spec, run_dir)
        port = spec.port or run_dir / HTTP_PORT_FILE  # port 0: the holders write the bound one
        run = SupervisedRun(conf, run_dir / "supervisor.sock", run_dir, port)
        runs.append(run.start())
        if wait:
            run.wait_running()
        return run

    yield start
    for run in runs:
        run.kill()


StartBundle = Callable[..., SupervisedRun]


@pytest.fixture
def start_bundle(tmp_path: Path) -> Iterator[StartBundle]:
    """Factory: render the REAL bundle (render_config.py) with HOST_PORT=0 (run.port: the port
    it bound, from its port file; ``port``: a fixed one) and every path in tmp_path, start it
    with the launcher as PID 1 of a new PID namespace, wait until every program is RUNNING
    (unless wait=False). Teardown always kills the namespace."""
    from support.rendered_bundle import bundle_environment, render_bundle

    runs: list[SupervisedRun] = []

    def start(
        wait: bool = True,
        mode: str = "production",
        port: int | None = None,
        edit: Callable[[str], str] | None = None,
        **settings: str,
    ) -> SupervisedRun:
        """``edit``: applied to the rendered supervisord.conf's text before the start (an
        operator's edit after rendering)."""
        workdir = tmp_path / f"bundle{len(runs)}"
        env = bundle_environment(workdir, port or 0, settings)
        conf = render_bundle(env, mode)
        if edit is not None:
            conf.write_text(edit(conf.read_text(encoding="utf-8")), encoding="utf-8")
        run_dir = Path(env["SUPERVISOR_RUN_DIR"])
        run = SupervisedRun(conf, run_dir / "supervisor.sock", workdir,
                            port or run_dir / HTTP_PORT_FILE, env)  # fmt: skip
        runs.append(run.start())
        if wait:
            run.wait_running(60)
        return run

    def start_again(previous: SupervisedRun, **settings: str) -> SupervisedRun:
        """The same rendered bundle (same DATA_DIR; the same fixed port, or with HOST_PORT=0 the
        one it binds now) started anew, e.g. after a stop."""
        workdir = previous.stdout_path.parent / f"again{len(runs)}"
        workdir.mkdir()
        env = {**previous.env, **settings}
        port: int | Path
        if previous.port_file is not None:  # port 0: this run binds a port of its own
            previous.port_file.unlink(missing_ok=True)
            port = previous.port_file
        else:
            port = previous.port
        run = SupervisedRun(previous.conf, previous.socket_path, workdir, port, env)
        runs.append(run.start())
        run.wait_running(60)
        return run

    start.again = start_again  # type: ignore[attr-defined]
    yield start
    for run in runs:
        run.kill()


# --- application (api/): the WSGI app under Werkzeug's test client on a fresh DATA_DIR -------
from support.api_client import api  # noqa: E402,F401  (fixture `api`)

# --- storage backends (api/storage/postgres): a throwaway PostgreSQL cluster per session -------


def _throwaway_cluster() -> Iterator[Any]:
    """initdb into a temporary directory as a non-root user, on 127.0.0.1 and a free port;
    stopped and removed afterwards. Never a system cluster."""
    from support.postgres import start_cluster

    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """The session's cluster (_throwaway_cluster), shared by the tests' databases."""
    yield from _throwaway_cluster()


@pytest.fixture
def own_cluster() -> Iterator[Any]:
    """A cluster for one test alone (_throwaway_cluster): one it may stop and restart."""
    yield from _throwaway_cluster()


@pytest.fixture
def pg_database(pg_cluster: Any) -> Iterator[str]:
    """A fresh, empty database of the session's cluster: its URL (with the password). Dropped
    afterwards, with this process's pool of it."""
    from api.storage.postgres.connections import close_pools, drop_listener

    url = str(pg_cluster.create_database())
    yield url
    drop_listener(url, "ragflow_tasks")
    close_pools(url)
    pg_cluster.drop_database(url)
