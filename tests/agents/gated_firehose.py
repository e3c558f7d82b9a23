"""Prints 'ready', waits until the file GATE exists, then writes MEGABYTES of plain output as fast
as it can and a 'done' result line whose summary is SUMMARY_BYTES long (a large event)."""

import json
import os
import sys
import time

gate, megabytes, summary_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print("ready", flush=True)
while not os.path.exists(gate):
    time.sleep(0.02)
line = ("y" * 1023 + "\n").encode()
out = sys.stdout.buffer
for _ in range(megabytes * 1024):
    out.write(line)
out.flush()
summary = "s" * summary_bytes
print(json.dumps({"type": "result", "outcome": "done", "summary": summary}), flush=True)
