"""Benchmarks of the bundle: one module per benchmark (`python -m bench.NAME`).

See docs/BENCHMARKS.md for the figures and how to run them.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
