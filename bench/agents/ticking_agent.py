"""A long-running command agent for bench_holder.py: it prints `tick N` every INTERVAL seconds
until its stdin ends or a line on it cancels it (the prompt and anything else are ignored).

    ticking_agent.py INTERVAL

Only the standard library (no json), so that many of them start quickly; run it with `python -I`.
"""

import os
import select
import sys


def main() -> int:
    interval = float(sys.argv[1])
    sys.stdout.write("started\n")
    sys.stdout.flush()
    tick = 0
    while True:
        readable, _, _ = select.select([0], [], [], interval)
        if readable:
            data = os.read(0, 65536)
            if not data or b'"cancel"' in data:
                return 0
            continue
        tick += 1
        sys.stdout.write(f"tick {tick}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
