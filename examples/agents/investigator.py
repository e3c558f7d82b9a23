#!/usr/bin/env python3
"""An example command agent that investigates its prompt in the files of its working directory:
it looks for the prompt's words and reports where they occur. Standard library only; it speaks
the command-agent protocol (docs/agent-protocol.md)."""

import json
import os
import re
import sys

MAX_FILES = 300
MAX_MATCHES = 12


def say(message: dict) -> None:
    print(json.dumps(message), flush=True)


def words_of(prompt: str) -> list[str]:
    return sorted({w.lower() for w in re.findall(r"[A-Za-z_]{5,}", prompt)})


def main() -> int:
    first = sys.stdin.readline()
    prompt = json.loads(first)["text"] if first.strip() else os.environ.get("ORCA_PROMPT", "")
    words = words_of(prompt)
    say({"type": "output", "text": f"investigating: {prompt}\nlooking for: {', '.join(words)}\n"})
    matches = 0
    seen = 0
    for root, dirs, files in os.walk("."):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for name in sorted(files):
            seen += 1
            if seen > MAX_FILES or matches >= MAX_MATCHES:
                break
            path = os.path.join(root, name)
            try:
                with open(path, encoding="utf-8") as handle:
                    lines = handle.readlines()
            except (OSError, UnicodeDecodeError):
                continue
            for number, line in enumerate(lines, start=1):
                hits = [w for w in words if w in line.lower()]
                if hits and matches < MAX_MATCHES:
                    matches += 1
                    say(
                        {"type": "output", "text": f"{path}:{number}: mentions {', '.join(hits)}\n"}
                    )
    places = "place mentions" if matches == 1 else "places mention"
    verdict = f"{matches} {places} the prompt's words in {min(seen, MAX_FILES)} files"
    say({"type": "output", "text": f"conclusion: {verdict}\n"})
    say({"type": "result", "outcome": "done", "summary": verdict})
    return 0


if __name__ == "__main__":
    sys.exit(main())
