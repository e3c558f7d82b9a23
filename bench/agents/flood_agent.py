"""A command agent for bench_holder.py that prints LINES lines of 100 bytes as fast as it can and
exits (stdout as Python buffers it on a pipe: 8 KiB writes).

    flood_agent.py LINES
"""

import sys

LINE = "flood " + "x" * 93 + "\n"


def main() -> int:
    write = sys.stdout.write
    for _ in range(int(sys.argv[1])):
        write(LINE)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
