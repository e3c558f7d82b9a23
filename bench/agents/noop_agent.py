"""A command agent for bench_orchestration.py that does nothing: it reads the prompt line and
reports done at once.

Only the standard library (and no json import), so that it starts as fast as Python can; run it
with `python -I`.
"""

import sys


def main() -> int:
    sys.stdin.readline()  # the prompt line
    sys.stdout.write('{"type":"result","outcome":"done","summary":"ok"}\n')
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
