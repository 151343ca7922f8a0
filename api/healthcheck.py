"""`python -m api.healthcheck [--live] [--url URL]`: exit 0 only when the service is healthy.

Readiness (default): /v1/system/healthz answers HTTP 200 with status ok, i.e. the configuration,
database, writes, files directory and free disk all pass. Liveness (``--live``):
/v1/system/ping answers "pong"; it never depends on the database or the disk, so an orchestrator
does not restart the service for a fault a restart cannot fix.

For the container HEALTHCHECK and Kubernetes probes. Reads HOST_IP and HOST_PORT through the
settings contract (shared/settings.py, as every program does; a wildcard HOST_IP is probed on
loopback); with HOST_PORT=0 the port is the one the bundle bound, from
SUPERVISOR_RUN_DIR/http.port (shared/ports.py). Prints one line saying what was checked and why
it failed. An invalid setting is reported as unhealthy (exit 1, not 2: Docker reserves a
HEALTHCHECK's exit code 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

from api import config
from shared import ports

HEALTHZ_PATH = "/v1/system/healthz"
PING_PATH = "/v1/system/ping"
WILDCARD_HOSTS = {"0.0.0.0", "::"}


class NoPortError(Exception):
    """HOST_PORT=0 and no port recorded (the bundle has not bound it yet, or no longer runs)."""


def default_url(environ: Mapping[str, str], path: str = HEALTHZ_PATH) -> str:
    """The URL at HOST_IP:HOST_PORT; config.ConfigError when either is invalid, NoPortError
    when HOST_PORT=0 and the port file names no port."""
    cfg = config.load(environ)
    host = "127.0.0.1" if cfg.host_ip in WILDCARD_HOSTS else cfg.host_ip
    if ":" in host:
        host = f"[{host}]"
    port = cfg.host_port
    if port == 0:
        port_file = cfg.run_dir / ports.HTTP_PORT_FILE
        try:
            port = ports.read_port(port_file) or 0
        except (OSError, ValueError) as exc:
            raise NoPortError(f"HOST_PORT=0 and {port_file} is unreadable: {exc}") from exc
        if not port:
            raise NoPortError(
                f"HOST_PORT=0 and {port_file} does not exist: the bundle has not bound its "
                "port (yet)"
            )
    return f"http://{host}:{port}{path}"


def check(url: str, timeout: float, live: bool = False) -> str | None:
    """None when healthy, otherwise one line saying what is wrong."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = response.status
            body = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace").strip()
        return f"{url} answered HTTP {exc.code}: {detail[:300]}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{url} is not reachable: {reason}"
    if status != 200:
        return f"{url} answered HTTP {status}"
    if live:
        return None if body == b"pong" else f"{url} answered {body[:100]!r}, not pong"
    try:
        payload = json.loads(body)
    except ValueError:
        return f"{url} answered a body that is not JSON: {body[:200]!r}"
    if not isinstance(payload, dict) or payload.get("status") != "ok":
        return f"{url} answered status other than ok: {body[:300]!r}"
    return None


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.healthcheck", description=__doc__)
    parser.add_argument(
        "--live", action="store_true", help="liveness: only check that the server answers ping"
    )
    parser.add_argument(
        "--url", help="URL to probe (default: healthz, or ping with --live, at HOST_IP:HOST_PORT)"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    args = parser.parse_args(argv)
    try:
        url = args.url or default_url(environ, PING_PATH if args.live else HEALTHZ_PATH)
    except config.ConfigError as exc:
        print(f"unhealthy: the configuration is invalid: {exc}", file=sys.stderr)
        return 1
    except NoPortError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    problem = check(url, args.timeout, args.live)
    if problem is None:
        print(f"{'alive' if args.live else 'healthy'}: {url}")
        return 0
    print(f"unhealthy: {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
