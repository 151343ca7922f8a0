"""Program that leaves orphans: forks a child that forks a grandchild and exits at once.

The grandchild is re-parented to PID 1 and exits after a moment; unless PID 1 reaps it, it stays a
zombie. Prints the grandchild pid, then idles until terminated.
"""

from __future__ import annotations

import os
import signal
import sys
import time

ORPHANS = 3


def main() -> int:
    for _ in range(ORPHANS):
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:
            grandchild = os.fork()
            if grandchild == 0:
                os.close(read_end)
                os.close(write_end)
                time.sleep(0.5)
                os._exit(0)
            os.write(write_end, str(grandchild).encode())
            os._exit(0)
        os.close(write_end)
        grandchild_pid = os.read(read_end, 32).decode()
        os.close(read_end)
        os.waitpid(child, 0)
        print(f"orphan {grandchild_pid}", flush=True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    signal.sigtimedwait([signal.SIGTERM], 600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
