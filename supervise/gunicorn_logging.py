"""Gunicorn's logger class for the bundle (rendered gunicorn.conf.py: logger_class).

Behind the proxy every connection comes from nginx over Gunicorn's unix socket, so the access
line's client address (``%(h)s``) would be empty. nginx sets X-Forwarded-For to the address of
its client, overwriting whatever that client sent; this logger shows that address, and only for
connections on a unix socket (only nginx can reach it: mode 0600, the bundle's user). On a TCP
socket (PROXY=none, or Gunicorn run on its own) the header is never believed.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger


def client_address(peer: Any, forwarded_for: str | None) -> str | None:
    """The address to log instead of the peer's, or None to keep the peer's."""
    if isinstance(peer, tuple) or not forwarded_for:
        return None  # an IP peer: believe only the connection
    return forwarded_for.rsplit(",", 1)[-1].strip() or None


class ProxyAwareLogger(Logger):  # type: ignore[misc]
    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        client = client_address(req.peer_addr, environ.get("HTTP_X_FORWARDED_FOR"))
        if client is not None:
            atoms["h"] = client
        return atoms
