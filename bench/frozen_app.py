"""Our app with `gc.freeze()` after import: with preload, Gunicorn imports this in the master
before forking, so the import-time objects move to the permanent generation and the workers'
garbage collector never writes to (and so never copies) their pages."""

from __future__ import annotations

import gc

from api.wsgi import application

__all__ = ["application"]

gc.freeze()
