"""``api.wsgi:application`` for Gunicorn.

Importing this module opens no connection, starts no thread and reads no file that
can change: settings are read and connections opened lazily in each process (after
Gunicorn's fork), so preload_app is safe.
"""

from __future__ import annotations

# Both storage backends, imported here so that preload_app imports them once in the master,
# shared by every worker, instead of in each worker at its first request (about 80 ms, 200 where
# no bytecode is written). Importing them opens nothing.
import api.storage.postgres
import api.storage.sqlite  # noqa: F401
from api.app import create_app

application = create_app()
