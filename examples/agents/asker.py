#!/usr/bin/env python3
"""An example command agent that asks the user a question before it works, and uses the answer.

It prints a `question` line, then reads stdin until the `answer` line arrives (a `cancel` line
means the run was cancelled). See docs/agent-protocol.md.
"""

import json
import sys


def say(message: dict) -> None:
    print(json.dumps(message), flush=True)


def main() -> int:
    prompt = json.loads(sys.stdin.readline())["text"]
    say({"type": "output", "text": f"planning: {prompt}\n"})
    say(
        {
            "type": "question",
            "questions": [
                {
                    "id": "runtime",
                    "header": "Runtime",
                    "question": "Which runtime should the fix target?",
                    "options": [
                        {"label": "python3.11", "description": "what CI uses"},
                        {"label": "python3.13", "description": "the newest"},
                    ],
                    "isOther": True,
                }
            ],
        }
    )
    for line in sys.stdin:
        message = json.loads(line)
        if message["type"] == "cancel":
            say({"type": "output", "text": f"cancelled: {message['reason']}\n"})
            return 1
        if message["type"] == "answer":
            choice = message["answers"]["runtime"]["answers"][0]
            say({"type": "output", "text": f"targeting {choice}\n"})
            say({"type": "result", "outcome": "done", "summary": f"planned for {choice}"})
            return 0
    say({"type": "result", "outcome": "failed", "error": "stdin closed before an answer came"})
    return 1


if __name__ == "__main__":
    sys.exit(main())
