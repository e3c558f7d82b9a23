#!/usr/bin/env python3
"""An example command agent that works for a long time, printing progress: cancel it with
`orca cancel RUN_ID`. Usage: long_task.py [SECONDS] (default 600)."""

import json
import sys
import time


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 600.0
    started = time.monotonic()
    step = 0
    while time.monotonic() - started < seconds:
        step += 1
        print(json.dumps({"type": "output", "text": f"step {step}\n"}), flush=True)
        time.sleep(0.2)
    print(json.dumps({"type": "result", "outcome": "done", "summary": f"{step} steps"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
