"""Writes COUNT tiny lines as fast as it can (many writes), then a result line."""

import json
import sys

count = int(sys.argv[1])
for i in range(count):
    sys.stdout.write(f"{i}\n")
    sys.stdout.flush()
print(json.dumps({"type": "result", "outcome": "done"}), flush=True)
