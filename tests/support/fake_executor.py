"""Stand-in task executor for supervisor-level tests: idles until SIGTERM, then finishes its task.

`python fake_executor.py --consumer-num N [--finish-seconds S] [--crash]`. On SIGTERM it spends
S seconds "finishing the task in hand" and prints `consumer N finished task` before exiting 0, so a
test can see that it was asked to stop early enough to finish. A second SIGTERM is a no-op.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--consumer-num", type=int, required=True)
    parser.add_argument("--finish-seconds", type=float, default=0.0)
    parser.add_argument("--crash", action="store_true")
    args = parser.parse_args()
    if args.crash:
        print(f"consumer {args.consumer_num}: cannot open the task queue", file=sys.stderr)
        return 3
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    print(f"consumer {args.consumer_num} started", flush=True)
    signal.sigtimedwait([signal.SIGTERM], 600)
    time.sleep(args.finish_seconds)
    print(f"consumer {args.consumer_num} finished task", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
