#!/usr/bin/env python3
"""A command agent for the holder tests: it counts, asks once, and counts on.

    counter.py COUNT DELAY

It prints `line N` on stdout for N = 1..COUNT, one every DELAY seconds, and `err N` on stderr
for every tenth; after COUNT // 2 lines it asks one question and waits for its answer (printing
`answer: TEXT` once it comes); at the end it gives its result. See docs/agent-protocol.md.
"""

import json
import sys
import time


def say(message: dict) -> None:
    print(json.dumps(message), flush=True)


def main() -> int:
    count, delay = int(sys.argv[1]), float(sys.argv[2])
    sys.stdin.readline()  # the prompt
    for number in range(1, count + 1):
        print(f"line {number}", flush=True)
        if number % 10 == 0:
            print(f"err {number}", file=sys.stderr, flush=True)
        if number == count // 2:
            question = {"id": "go", "question": "Go on counting?"}
            say({"type": "question", "questions": [question]})
            for raw in sys.stdin:
                message = json.loads(raw)
                if message["type"] == "answer":
                    print(f"answer: {message['answers']['go']['answers'][0]}", flush=True)
                    break
                if message["type"] == "cancel":
                    return 1
            else:
                return 1
        time.sleep(delay)
    say({"type": "result", "outcome": "done", "summary": f"counted to {count}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
