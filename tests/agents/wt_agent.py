"""A command agent for the worktree and doctor tests: says where it runs, then maybe works.

    wt_agent.py [--write NAME] [--wait PATH] [--tick SECONDS]

It prints `cwd=<its working directory>` and `branch=<git rev-parse --abbrev-ref HEAD>` (or
`branch=<error: ...>` outside a repository), writes the file NAME (relative to its working
directory) when asked, then waits until PATH exists (silently, or printing `tick N` every
SECONDS), and reports done. While it waits it gives up (exit 3) when its stdin ends (orcad
went away) or after MAX_WAIT seconds, so that a failed test leaves no agent behind.
"""

import argparse
import json
import os
import select
import subprocess
import sys
import time

MAX_WAIT = 60.0

parser = argparse.ArgumentParser()
parser.add_argument("--write")
parser.add_argument("--wait")
parser.add_argument("--tick", type=float)
args = parser.parse_args()

print(f"cwd={os.getcwd()}", flush=True)
done = subprocess.run(
    ["git", "rev-parse", "--abbrev-ref", "HEAD"], capture_output=True, text=True, check=False
)
branch = done.stdout.strip() if done.returncode == 0 else f"<error: {done.stderr.strip()}>"
print(f"branch={branch}", flush=True)

if args.write:
    with open(args.write, "w") as handle:
        handle.write(f"written by {os.environ.get('ORCA_SESSION_ID')}\n")
    print(f"wrote {os.path.abspath(args.write)}", flush=True)

if args.wait:
    ticks = 0
    interval = args.tick if args.tick else 0.05
    deadline = time.monotonic() + MAX_WAIT
    while not os.path.exists(args.wait):
        readable, _, _ = select.select([sys.stdin], [], [], interval)
        if (readable and not os.read(sys.stdin.fileno(), 4096)) or time.monotonic() > deadline:
            sys.exit(3)
        if args.tick:
            ticks += 1
            print(f"tick {ticks}", flush=True)

print(json.dumps({"type": "result", "outcome": "done", "summary": "where I ran"}), flush=True)
