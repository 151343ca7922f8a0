"""`python -m api.healthcheck [--url URL]`: exit 0 only when /v1/system/healthz answers OK.

For the container HEALTHCHECK and Kubernetes probes. Stdlib only; reads HOST_IP and HOST_PORT
(a wildcard HOST_IP is probed on loopback). Prints one line saying what was checked and why it
failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

HEALTHZ_PATH = "/v1/system/healthz"
DEFAULT_PORT = "9380"
WILDCARD_HOSTS = {"", "0.0.0.0", "::"}


def default_url(environ: Mapping[str, str]) -> str:
    host = environ.get("HOST_IP", "127.0.0.1").strip()
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    port = environ.get("HOST_PORT", DEFAULT_PORT).strip() or DEFAULT_PORT
    return f"http://{host}:{port}{HEALTHZ_PATH}"


def check(url: str, timeout: float) -> str | None:
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
    try:
        payload = json.loads(body)
    except ValueError:
        return f"{url} answered a body that is not JSON: {body[:200]!r}"
    if not isinstance(payload, dict) or payload.get("status") != "ok":
        return f"{url} answered status other than ok: {body[:300]!r}"
    return None


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.healthcheck", description=__doc__)
    parser.add_argument("--url", help="healthz URL (default: from HOST_IP and HOST_PORT)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    args = parser.parse_args(argv)
    url = args.url or default_url(environ)
    problem = check(url, args.timeout)
    if problem is None:
        print(f"healthy: {url}")
        return 0
    print(f"unhealthy: {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
