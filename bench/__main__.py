"""`python -m bench [NAME ...]`: run the benchmarks one after another, then refresh the figures in
docs/BENCHMARKS.md. Each benchmark runs in its own process; a failing one does not stop the rest."""

from __future__ import annotations

import subprocess
import sys

from bench import REPO_ROOT
from bench.summary import SECTIONS

BENCHMARKS = tuple(SECTIONS)  # every benchmark with a section in docs/BENCHMARKS.md, in its order


def main(argv: list[str]) -> int:
    unknown = [name for name in argv if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
        return 2
    failed = []
    for name in argv or BENCHMARKS:
        print(f"== bench.{name}", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=REPO_ROOT).returncode:
            failed.append(name)
    subprocess.run([sys.executable, "-m", "bench.summary"], cwd=REPO_ROOT, check=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
