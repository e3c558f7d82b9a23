"""A command agent for bench_sessions.py: it prints LINES lines of plain output, one every
INTERVAL seconds, then its result, and exits (its stdin, the prompt, is never read).

    counted_agent.py LINES INTERVAL

Only the standard library (not even json), so that a thousand of them start quickly; run it
with `python -I -S`.
"""

import sys
import time


def main() -> int:
    lines, interval = int(sys.argv[1]), float(sys.argv[2])
    padding = "x" * 60
    for index in range(lines):
        sys.stdout.write(f"line {index} {padding}\n")
        sys.stdout.flush()
        time.sleep(interval)
    sys.stdout.write('{"type": "result", "outcome": "done"}\n')
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
