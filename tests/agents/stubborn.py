"""Ignores SIGTERM (printing that it did, and a 'done' result line) and keeps working:
only SIGKILL stops it. Writes its pid first."""

import json
import os
import signal
import time


def on_term(signum, frame):
    print(json.dumps({"type": "output", "text": "got SIGTERM, ignoring it\n"}), flush=True)
    print(json.dumps({"type": "result", "outcome": "done", "summary": "too late"}), flush=True)


signal.signal(signal.SIGTERM, on_term)
print(json.dumps({"type": "output", "text": f"pid {os.getpid()}\n"}), flush=True)
while True:
    time.sleep(0.1)
