"""Leaves processes behind: MODE=detached starts a child in its own session that keeps stdout
open; MODE=background starts one that closes its pipes; MODE=linger prints its result and then
keeps running. Writes the child's pid to $PID_FILE."""

import json
import os
import subprocess
import sys
import time

mode = sys.argv[1]
pid_file = sys.argv[2]
if mode == "detached":
    child = subprocess.Popen(["sleep", "300"], start_new_session=True)
elif mode == "background":
    child = subprocess.Popen(
        ["sleep", "301"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
else:
    child = None
with open(pid_file, "w") as handle:
    handle.write(str(child.pid if child else os.getpid()))
print(json.dumps({"type": "result", "outcome": "done", "summary": mode}), flush=True)
if mode == "linger":
    time.sleep(300)
