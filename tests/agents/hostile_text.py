#!/usr/bin/env python3
"""A command agent whose every word carries terminal control sequences: on stdout (plain and as
`output`), on stderr, in a question (header, text, options) and in its result's summary.

It waits for one answer between the question and the result."""

import json
import sys

# Clear the screen and home the cursor; set the window title (OSC ... BEL); an 8-bit CSI (C1);
# a bare carriage return and backspaces that overwrite what came before; a right-to-left override.
NASTY = "\x1b[2J\x1b[Hclear\x1b]0;pwned\x07 \x9b31mred\rover\x08\x08 \u202eevil\x7f"


def say(message: dict) -> None:
    print(json.dumps(message), flush=True)


sys.stdin.readline()
print(f"plain {NASTY}", flush=True)
say({"type": "output", "text": f"json {NASTY}\n"})
print(f"stderr {NASTY}", file=sys.stderr, flush=True)
option = {"label": f"yes {NASTY}", "description": f"why {NASTY}"}
question = {"id": "q1", "header": f"head {NASTY}", "question": f"ask {NASTY}", "options": [option]}
say({"type": "question", "questions": [question]})
sys.stdin.readline()
say({"type": "result", "outcome": "done", "summary": f"sum {NASTY}"})
