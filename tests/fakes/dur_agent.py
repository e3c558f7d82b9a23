"""A command agent for the durability, lifecycle and systemd tests.

It speaks the command-agent protocol (docs/agent-protocol.md): plain lines and
`{"type":"output",...}` lines are output, a `{"type":"result",...}` line is its verdict.

Options:
  --lines N         print N lines of output (alternating plain and JSON output lines)
  --sleep S         sleep S seconds before the result
  --outcome X       done | failed | none (no result line)
  --exit CODE       exit status (default 0)
  --pid-dir DIR     write this process's pid to DIR/<ORCA_SESSION_ID>.pid first thing
  --child           also start a grandchild (`sleep`) in the same process group and write its
                    pid to DIR/<ORCA_SESSION_ID>.child
  --report-env      print which systemd variables the agent inherited
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=0)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--outcome", choices=["done", "failed", "none"], default="done")
    parser.add_argument("--exit", type=int, default=0)
    parser.add_argument("--pid-dir", type=Path)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--report-env", action="store_true")
    args = parser.parse_args()
    session_id = os.environ.get("ORCA_SESSION_ID", "unknown")

    if args.pid_dir is not None:
        write_atomically(args.pid_dir / f"{session_id}.pid", str(os.getpid()))
        if args.child:
            child = subprocess.Popen(["sleep", "120"], stdin=subprocess.DEVNULL)
            write_atomically(args.pid_dir / f"{session_id}.child", str(child.pid))

    if args.report_env:
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            print(f"env {name}={'set' if name in os.environ else 'unset'}", flush=True)

    for index in range(args.lines):
        if index % 2:
            print(json.dumps({"type": "output", "text": f"json line {index} of {session_id}\n"}))
        else:
            print(f"plain line {index} of {session_id}")
    sys.stdout.flush()

    if args.sleep:
        time.sleep(args.sleep)

    if args.outcome == "done":
        print(json.dumps({"type": "result", "outcome": "done", "summary": f"{session_id} done"}))
    elif args.outcome == "failed":
        print(json.dumps({"type": "result", "outcome": "failed", "error": "asked to fail"}))
    sys.stdout.flush()
    return args.exit


if __name__ == "__main__":
    sys.exit(main())
