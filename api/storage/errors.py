"""The errors that cross the storage seam: what a caller may catch, whatever the backend.

A backend translates its driver's errors into these at its edge; nothing above
``api.storage`` ever sees ``sqlite3.Error`` (or a PostgreSQL driver's errors)."""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error storage raises."""


class NotFound(StorageError):
    pass


class Conflict(StorageError):
    """The change clashes with stored data (a duplicate name, id or content)."""


class Unavailable(StorageError):
    """Storage cannot serve right now, through no fault of the request.

    ``component`` is the health check that reports the same cause (``db``: the database
    is unreachable, deleted or replaced; ``writes``: writes are blocked by a held lock, a
    full disk or a read-only file system; ``storage``: the files directory). The message
    names the cause and what to do."""

    def __init__(self, component: str, message: str) -> None:
        super().__init__(message)
        self.component = component
        self.message = message


class BackendError(StorageError):
    """The backend failed in a way that is neither the request's fault nor a known cause of
    unavailability (a bug, or a driver error not classified yet); the message names the
    database and the driver's own words."""
