"""Gunicorn's logger class for the bundle (rendered gunicorn.conf.py: logger_class).

Behind the proxy every connection comes from nginx over Gunicorn's unix socket, so the access
line's client address (``%(h)s``) would be empty. nginx sets X-Forwarded-For to the address of
its client, overwriting whatever that client sent; this logger shows that address, and only for
connections on a unix socket (only nginx can reach it: mode 0600, the bundle's user). On a TCP
socket (PROXY=none, or Gunicorn run on its own) the header is never believed.

Each access record also carries its fields as a mapping (``record.access``), which
shared.logformat.JsonFormatter writes as separate keys with LOG_FORMAT=json.
"""

from __future__ import annotations

import os
import traceback
from functools import cache
from typing import Any

from gunicorn.glogging import Logger

from shared.logformat import ACCESS_ATTRIBUTE

CODE_KEY = "ragflow.code"  # the WSGI environ key api.app fills in with the envelope code


def client_address(peer: Any, forwarded_for: str | None) -> str | None:
    """The address to log instead of the peer's, or None to keep the peer's."""
    if isinstance(peer, tuple) or not forwarded_for:
        return None  # an IP peer: believe only the connection
    return forwarded_for.rsplit(",", 1)[-1].strip() or None


@cache
def json_logs() -> bool:
    """LOG_FORMAT=json (the fields are only written in JSON lines)."""
    return os.environ.get("LOG_FORMAT", "").strip().lower() == "json"


def access_fields(atoms: dict[str, Any], environ: Any, request_time: Any) -> dict[str, Any]:
    """The access line's fields, for JSON logs."""
    size = atoms.get("B")
    return {
        "client": atoms.get("h"),
        "method": atoms.get("m"),
        "path": atoms.get("U"),
        "query": atoms.get("q") or "",
        "status": int(atoms["s"]) if str(atoms.get("s", "")).isdigit() else atoms.get("s"),
        "size": int(size) if isinstance(size, int) else 0,
        "user_agent": atoms.get("a"),
        "duration_ms": round(request_time.total_seconds() * 1000, 3),
        "code": environ.get(CODE_KEY),
    }


class ProxyAwareLogger(Logger):  # type: ignore[misc]
    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """Gunicorn's access(), with the fields attached to the record."""
        if not (self.cfg.accesslog or self.cfg.logconfig_dict):
            return
        atoms = self.atoms(resp, req, environ, request_time)
        fields = access_fields(atoms, environ, request_time) if json_logs() else None
        try:
            self.access_log.info(
                self.cfg.access_log_format,
                self.atoms_wrapper_class(atoms),
                extra={ACCESS_ATTRIBUTE: fields},
            )
        except Exception:
            self.error(traceback.format_exc())

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        client = client_address(req.peer_addr, environ.get("HTTP_X_FORWARDED_FOR"))
        if client is not None:
            atoms["h"] = client
        return atoms
