"""HTTP handlers, one module per resource; api.app maps URLs to them."""

from __future__ import annotations

from dataclasses import dataclass

from werkzeug.wrappers import Request

from api.config import Config
from api.storage import Storage


@dataclass(frozen=True)
class Ctx:
    """What every handler gets: the request, storage, the caller's tenant and the config."""

    request: Request
    storage: Storage
    tenant_id: str
    config: Config
