"""The application with every retrieval ranking every match (api.storage.topk never used): the
"before" variant bench.retrieval_scale serves beside the application itself, in the same run.
Every match is ranked as the application does when the bound does not pay: on SQLite in the
full-text index first (the statement it replaced, which joined every match to its chunk before
ranking, was 1.3-2x slower still at 1M chunks: docs/BENCHMARKS.md); on PostgreSQL by BM25 in SQL
over the GIN index's candidates."""

from __future__ import annotations

from typing import Any

from api.storage import topk
from api.wsgi import application


def _never(*args: Any, **kwargs: Any) -> topk.SearchPath:
    return topk.SearchPath.UNBOUNDED


topk.best = _never

__all__ = ["application"]
