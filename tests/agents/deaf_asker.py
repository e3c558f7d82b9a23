"""Never reads its stdin (not even the prompt): asks ROUNDS question requests of PER_ROUND
questions (ids a1, a2, ...), one request at a time, the next once the test creates DIR/next<N>;
then waits for DIR/done and reports done.

    deaf_asker.py DIR ROUNDS [PER_ROUND]
"""

import json
import os
import sys
import time


def wait_for(path: str) -> None:
    deadline = time.monotonic() + 120
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.exit(f"gave up waiting for {path}")
        time.sleep(0.01)


directory, rounds = sys.argv[1], int(sys.argv[2])
per_round = int(sys.argv[3]) if len(sys.argv) > 3 else 1
for number in range(1, rounds + 1):
    if number > 1:
        wait_for(os.path.join(directory, f"next{number}"))
    questions = [{"id": f"a{i}", "question": f"{number}.{i}?"} for i in range(1, per_round + 1)]
    print(json.dumps({"type": "question", "questions": questions}), flush=True)
wait_for(os.path.join(directory, "done"))
print(json.dumps({"type": "result", "outcome": "done", "summary": "never read"}), flush=True)
