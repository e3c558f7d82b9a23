"""Writes one line of SIZE bytes (no JSON), then a short line and a result."""

import json
import sys

size = int(sys.argv[1])
sys.stdout.write("x" * size + "\n")
sys.stdout.write("after\n")
print(json.dumps({"type": "result", "outcome": "done"}), flush=True)
