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
  --hold-db PATH    take SQLite's write lock on PATH (so orcad cannot commit), write
                    DIR/<ORCA_SESSION_ID>.locked, and hold the lock until orcad is gone
  --report-env      print which systemd variables the agent inherited
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
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
    parser.add_argument("--hold-db", type=Path)
    parser.add_argument("--report-env", action="store_true")
    args = parser.parse_args()
    session_id = os.environ.get("ORCA_SESSION_ID", "unknown")
    parent = os.getppid()

    if args.pid_dir is not None:
        write_atomically(args.pid_dir / f"{session_id}.pid", str(os.getpid()))
        if args.child:
            child = subprocess.Popen(["sleep", "120"], stdin=subprocess.DEVNULL)
            write_atomically(args.pid_dir / f"{session_id}.child", str(child.pid))

    if args.hold_db is not None:
        assert args.pid_dir is not None, "--hold-db needs --pid-dir"
        connection = sqlite3.connect(args.hold_db, timeout=10, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        write_atomically(args.pid_dir / f"{session_id}.locked", str(os.getpid()))
        deadline = time.monotonic() + 60
        while os.getppid() == parent and time.monotonic() < deadline:
            time.sleep(0.02)
        connection.execute("ROLLBACK")
        connection.close()

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
