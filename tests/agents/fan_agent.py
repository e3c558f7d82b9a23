#!/usr/bin/env python3
"""A fan-out worker or orchestrator for the fan-out tests.

    fan_agent.py SCRIPT_JSON

SCRIPT_JSON is an object, every key optional:

    {"say": ["line", ...],       output lines (one `output` message each), after the prompt
     "record": "/dir",           write /dir/$ORCA_SESSION_ID.json: the prompt and ORCA_* env
     "wait_file": "/path",       then wait until this file exists (the test's go signal)
     "synthesize": true,         then write "synthesis by $ORCA_SESSION_ID" to $ORCA_TASK_FILE
     "marker": "/path",          then create this file, just before the result line and exit
     "outcome": "done",          the result line's outcome ("done" or "failed"; none: no line)
     "summary": "text"}          the result line's summary (or error, when failed)
"""

import json
import os
import sys
import time


def say(message: dict[str, str]) -> None:
    print(json.dumps(message), flush=True)


def main() -> int:
    script = json.loads(sys.argv[1])
    first = sys.stdin.readline()
    prompt = json.loads(first)["text"] if first.strip() else ""
    for line in script.get("say", []):
        say({"type": "output", "text": line + "\n"})
    session = os.environ.get("ORCA_SESSION_ID", "unknown")
    if "record" in script:
        env = {k: v for k, v in os.environ.items() if k.startswith("ORCA_")}
        target = os.path.join(script["record"], f"{session}.json")
        with open(target + ".tmp", "w") as handle:
            json.dump({"prompt": prompt, "env": env}, handle)
        os.replace(target + ".tmp", target)
    if "wait_file" in script:
        deadline = time.monotonic() + 60
        while not os.path.exists(script["wait_file"]):
            if time.monotonic() > deadline:
                say({"type": "result", "outcome": "failed", "error": "no go signal"})
                return 1
            time.sleep(0.01)
    if script.get("synthesize"):
        with open(os.environ["ORCA_TASK_FILE"], "w") as handle:
            handle.write(f"synthesis by {session}\n")
    if "marker" in script:
        with open(script["marker"], "w") as handle:
            handle.write(session)
    outcome = script.get("outcome", "done")
    if outcome == "done":
        say({"type": "result", "outcome": "done", "summary": script.get("summary", "ok")})
    elif outcome == "failed":
        say({"type": "result", "outcome": "failed", "error": script.get("summary", "it broke")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
