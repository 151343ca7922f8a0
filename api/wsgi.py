"""``api.wsgi:application`` for Gunicorn.

Importing this module opens no connection, starts no thread and reads no file that
can change: settings are read and connections opened lazily in each process (after
Gunicorn's fork), so preload_app is safe.
"""

from __future__ import annotations

from api import storage
from api.app import create_app

storage.import_backends()
application = create_app()
