"""Prints exactly the lines given as arguments (each one a line of stdout), then exits with
$EXIT_CODE (default 0). Lines starting with 'stderr:' go to stderr."""

import os
import sys

for line in sys.argv[1:]:
    if line.startswith("stderr:"):
        print(line[len("stderr:") :], file=sys.stderr, flush=True)
    else:
        print(line, flush=True)
sys.exit(int(os.environ.get("EXIT_CODE", "0")))
