"""A command agent for bench_sessions.py: it prints a line of plain output every INTERVAL
seconds until the file STOP_FILE exists, then its result, and exits (its stdin, the prompt, is
never read).

    counted_agent.py STOP_FILE INTERVAL MAX_SECONDS

MAX_SECONDS is a safety cap, for a bench that died before it made the stop file: past it the
agent stops anyway, with a failed result (exit status 1), so that a round which ran out of time
shows as failed runs rather than as a measurement.

Only the standard library (not even json), so that a thousand of them start quickly; run it
with `python -I -S`.
"""

import os
import sys
import time


def main() -> int:
    stop_file, interval, max_seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    deadline = time.monotonic() + max_seconds
    padding = "x" * 60
    index = 0
    while not os.path.exists(stop_file):
        if time.monotonic() >= deadline:
            sys.stdout.write(
                '{"type": "result", "outcome": "failed", "error": "no stop file in time"}\n'
            )
            sys.stdout.flush()
            return 1
        sys.stdout.write(f"line {index} {padding}\n")
        sys.stdout.flush()
        index += 1
        time.sleep(interval)
    sys.stdout.write('{"type": "result", "outcome": "done"}\n')
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
