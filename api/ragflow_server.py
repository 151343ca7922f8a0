"""The Werkzeug development server: ``python api/ragflow_server.py [--debug]`` or
``python -m api.ragflow_server [--debug]``.

Threaded; ``--debug`` adds the reloader and the interactive debugger. Listens on
HOST_IP:HOST_PORT (0: a free port the kernel picks; ``--port-file`` names the file the bound
port is written to, shared/ports.py: the reloader's parent binds the socket and its serving
children inherit it, so the port stays the same across reloads). The serving process (the
reloader's child, or the only process without the reloader) also runs the task executor
in-process and, when RAGFLOW_DEBUGPY_LISTEN is set, a debugpy listener.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make `api` importable, and drop api/ from the
    # path, where api/queue.py would shadow the standard library's queue (debugpy imports it)
    sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "api"]

import socket  # noqa: E402

from werkzeug.serving import is_running_from_reloader, make_server, run_simple  # noqa: E402

from api import config, dev_reloader, logs  # noqa: E402
from api.app import create_app  # noqa: E402
from shared import parent_death, ports  # noqa: E402

log = logging.getLogger("api.ragflow_server")


RELOADER_PID_ENV = "RAGFLOW_RELOADER_PID"
DEV_SERVER_DEFAULTS = {"RAGFLOW_MODE": "dev"}


def die_with_reloader_parent(environ: Mapping[str, str]) -> None:
    """In the reloader's serving child: get SIGINT when the reloader parent dies.

    supervisord's stopasgroup covers a stop; this covers a SIGKILL of the parent, after which
    the child would otherwise keep the port and block the restarted server.
    """
    parent = environ.get(RELOADER_PID_ENV, "")
    # SIGINT: stop at once, the in-process executor handing its task back (as when supervisord
    # dies: the reloader gets SIGINT then and forwards it)
    if parent and not parent_death.die_with_parent(signal.SIGINT, int(parent)):
        os.kill(os.getpid(), signal.SIGINT)  # the parent died before prctl: no signal will come


def start_serving_process_extras(cfg: config.Config) -> None:
    """Hook run once in the process that serves requests (never in the reloader parent)."""
    if cfg.debugpy_listen is not None:
        import debugpy

        host, port = debugpy.listen(cfg.debugpy_listen)  # port 0: the one it bound
        log.info("debugpy listening on %s:%d", host, port)
    from api import task_executor

    task_executor.start_in_process()


def record_port(port_file: str | None, address: tuple[object, ...]) -> None:
    """Write the bound port to ``port_file`` and log where the server listens."""
    if port_file:
        ports.write_port(port_file, int(str(address[1])))
    log.info("listening on %s", ports.address_text(address))


def inherited_address(environ: Mapping[str, str]) -> tuple[object, ...]:
    """The address of the listening socket the reloader's parent bound (WERKZEUG_SERVER_FD)."""
    with socket.socket(fileno=os.dup(int(environ["WERKZEUG_SERVER_FD"]))) as sock:
        return tuple(sock.getsockname())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ragflow_server", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="reloader + interactive debugger")
    parser.add_argument("--port-file", help="file to write the bound port to (shared/ports.py)")
    args = parser.parse_args(argv)
    try:
        # the development server: dev mode (HOST_IP 127.0.0.1) unless RAGFLOW_MODE says otherwise
        cfg = config.load(fallback=DEV_SERVER_DEFAULTS)
        logs.setup(cfg.log_format, logging.DEBUG if args.debug else logging.INFO)
        serving = not args.debug or is_running_from_reloader()
        if not serving:
            os.environ[RELOADER_PID_ENV] = str(os.getpid())  # inherited by the serving child
        elif args.debug:
            die_with_reloader_parent(os.environ)
        if serving:
            start_serving_process_extras(cfg)
    except config.ConfigError as exc:
        print(f"ragflow_server: {exc}", file=sys.stderr)
        return 2
    app = create_app(cfg, debug=args.debug)
    if not args.debug:  # run_simple without the reloader, reading the bound port back
        server = make_server(cfg.host_ip, cfg.host_port, app, threaded=True)
        record_port(args.port_file, server.socket.getsockname())
        server.log_startup()
        server.serve_forever()
        return 0
    if serving:  # the reloader's child, on the socket its parent bound
        record_port(args.port_file, inherited_address(os.environ))
    run_simple(
        cfg.host_ip,
        cfg.host_port,
        app,
        use_reloader=True,
        use_debugger=True,
        threaded=True,
        reloader_type=dev_reloader.register(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
