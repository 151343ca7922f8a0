"""Benchmarks of the bundle: one module per benchmark (`python -m bench.NAME`).

See docs/BENCHMARKS.md for the figures and how to run them.
"""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The test support package (tests/support, imported as `support` as in the tests) is the one
# home of the helpers benchmarks share with the tests: ports read back after binding port 0.
if str(REPO_ROOT / "tests") not in sys.path:
    sys.path.append(str(REPO_ROOT / "tests"))
RESULTS_DIR = REPO_ROOT / "bench" / "results"
TARGET_COLUMNS = ["target", "measured", "goal", "verdict"]  # every benchmark's targets table


@contextmanager
def postgres_url(given: str) -> Iterator[str]:
    """``given`` (a benchmark's --database-url), or a database of a throwaway cluster
    (tests/support/postgres.py: initdb as a non-root user, 127.0.0.1), stopped at the end."""
    if given:
        yield given
        return
    from support.postgres import start_cluster

    cluster = start_cluster()
    try:
        yield cluster.create_database()
    finally:
        cluster.stop()
