#!/usr/bin/env python3
"""A command agent that writes a lot of text where status shows it.

    big_text.py summary CHARS     reports done with a summary of CHARS characters
    big_text.py question CHARS    asks one question whose text, option label and option
                                  description share CHARS characters, then waits

Each text starts with its kind and ends with "END", so a test can tell a whole text from a
shortened one.
"""

import json
import sys


def text(kind: str, chars: int) -> str:
    return (kind + ":" + "x" * chars)[: chars - 3] + "END"


def main() -> int:
    kind, chars = sys.argv[1], int(sys.argv[2])
    sys.stdin.readline()  # the prompt
    if kind == "summary":
        message = {"type": "result", "outcome": "done", "summary": text("summary", chars)}
    else:
        third = chars // 3
        option = {"label": text("label", third), "description": text("description", third)}
        question = {"id": "q1", "question": text("question", third), "options": [option]}
        message = {"type": "question", "questions": [question]}
    print(json.dumps(message), flush=True)
    if kind == "question":
        sys.stdin.readline()  # the answer
        print(json.dumps({"type": "result", "outcome": "done", "summary": "answered"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
