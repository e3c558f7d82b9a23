"""Writes MEGABYTES of plain output as fast as it can, then a result line."""

import json
import sys

megabytes = int(sys.argv[1])
line = ("y" * 1023 + "\n").encode()
out = sys.stdout.buffer
for _ in range(megabytes * 1024):
    out.write(line)
out.flush()
print(json.dumps({"type": "result", "outcome": "done"}), flush=True)
