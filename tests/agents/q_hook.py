#!/usr/bin/env python3
"""A hook command for the hook tests.

    q_hook.py FILE [SLEEP_SECONDS [EXIT_STATUS]]

Reads the hook's JSON from stdin and appends one line to FILE (in one write, O_APPEND):
`{"hook": $ORCA_HOOK, "run_id": $ORCA_RUN_ID, "position": record.position, "pid": its pid,
"stdin": <the JSON>}`.
Then it sleeps SLEEP_SECONDS (default 0) and exits with EXIT_STATUS (default 0).
"""

import json
import os
import sys
import time


def main() -> int:
    path = sys.argv[1]
    pause = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    status = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    payload = json.loads(sys.stdin.read())
    line = {
        "hook": os.environ.get("ORCA_HOOK"),
        "run_id": os.environ.get("ORCA_RUN_ID"),
        "position": payload["record"]["position"],
        "pid": os.getpid(),
        "stdin": payload,
    }
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, (json.dumps(line) + "\n").encode())
    finally:
        os.close(descriptor)
    time.sleep(pause)
    print(f"hook {line['hook']} for position {line['position']} done")
    return status


if __name__ == "__main__":
    sys.exit(main())
