"""Reports what orcad handed it: the first stdin line and the ORCA_* environment."""

import json
import os
import sys

first = sys.stdin.readline()
context = {
    "stdin": first,
    "prompt_env": os.environ.get("ORCA_PROMPT"),
    "run_id": os.environ.get("ORCA_RUN_ID"),
    "session_id": os.environ.get("ORCA_SESSION_ID"),
    "cwd": os.getcwd(),
    "pgid_is_own": os.getpgid(0) == os.getpid(),
}
print(json.dumps({"type": "output", "text": json.dumps(context)}), flush=True)
print(json.dumps({"type": "result", "outcome": "done", "summary": "echoed"}), flush=True)
