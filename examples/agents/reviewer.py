#!/usr/bin/env python3
"""An example command agent: reads its prompt, "reviews" the files in its working directory,
and reports done with a summary. It speaks the command-agent protocol (docs/agent-protocol.md)
with nothing but the standard library."""

import json
import os
import sys
import time


def say(message: dict) -> None:
    print(json.dumps(message), flush=True)


def main() -> int:
    first = sys.stdin.readline()
    prompt = json.loads(first)["text"] if first.strip() else os.environ.get("ORCA_PROMPT", "")
    say({"type": "output", "text": f"reviewing for: {prompt}\n"})
    files = sorted(name for name in os.listdir(".") if not name.startswith("."))[:10]
    for name in files:
        time.sleep(0.05)
        say({"type": "output", "text": f"  looked at {name}\n"})
    print("a plain line is output too", flush=True)
    print("progress notes can go to stderr", file=sys.stderr, flush=True)
    say({"type": "result", "outcome": "done", "summary": f"reviewed {len(files)} files"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
