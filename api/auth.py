"""API keys: ``Authorization: Bearer <key>``, a bootstrap key from the environment, and
keys created by the admin CLI (stored as sha256 hashes). Each key maps to a tenant id."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from api.envelope import ApiError, Code
from api.storage import Storage

# The bootstrap key's tenant; keys created without --tenant share it.
DEFAULT_TENANT = uuid.uuid5(uuid.NAMESPACE_URL, "ragflow-bundle:default-tenant").hex
KEY_PREFIX = "ragflow-"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def tenant_for(authorization: str | None, bootstrap_key: str | None, storage: Storage) -> str:
    """The tenant of the request's key, or the ApiError RAGFlow answers."""
    if not authorization:
        raise ApiError(Code.SUCCESS, "`Authorization` can't be empty", data=False)
    parts = authorization.split()
    if len(parts) < 2:
        raise ApiError(Code.SUCCESS, "Please check your authorization format.", data=False)
    key = parts[1]
    if bootstrap_key and hmac.compare_digest(key.encode(), bootstrap_key.encode()):
        return DEFAULT_TENANT
    tenant = storage.key_tenant(hash_key(key))  # looked up by hash: no secret compared
    if tenant is None:
        raise ApiError(
            Code.AUTHENTICATION_ERROR, "Authentication error: API key is invalid!", data=False
        )
    return tenant
