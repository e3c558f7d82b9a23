#!/usr/bin/env python3
"""A command agent that works until it is stopped, and says what it found when it gets SIGTERM
(what a real agent might flush on its way out)."""

import json
import signal
import sys
import time


def stopped(signum: int, frame: object) -> None:
    time.sleep(0.3)  # a little work before the last words
    print(json.dumps({"type": "output", "text": "FINAL-FINDINGS: the cache key omits the user\n"}))
    sys.stdout.flush()
    sys.exit(1)


signal.signal(signal.SIGTERM, stopped)
sys.stdin.readline()
print(json.dumps({"type": "output", "text": "investigating\n"}), flush=True)
while True:
    time.sleep(0.1)
