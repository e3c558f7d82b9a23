"""A command agent for bench_holder.py that prints COUNT lines, one every INTERVAL seconds, each
starting with the CLOCK_MONOTONIC time (ns) it was printed at (the clock every process shares),
flushed at once.

    stamp_agent.py COUNT INTERVAL
"""

import sys
import time

PAD = "x" * 64


def main() -> int:
    count, interval = int(sys.argv[1]), float(sys.argv[2])
    for number in range(count):
        stamp = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        sys.stdout.write(f"{stamp} {number} {PAD}\n")
        sys.stdout.flush()
        time.sleep(interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
