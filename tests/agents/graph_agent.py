#!/usr/bin/env python3
"""A command agent for the plan and parent-run tests: one script, a behaviour per task (or per
repository) and per attempt.

    graph_agent.py SCRIPT_FILE

SCRIPT_FILE holds a JSON object, read when the agent starts:

    {"record": "/dir",                  where to record what each session got (optional)
     "steps": {KEY: {ATTEMPT: [STEP, ...], "*": [STEP, ...]}}}

KEY is $ORCA_TASK_ID (a plan task) or else $ORCA_REPO (a child run of a parent run); ATTEMPT is
$ORCA_TASK_ATTEMPT (1 outside plans). Without steps for the key and attempt, the agent reports
done with the summary "KEY done". With "record", the agent first writes
/dir/KEY.ATTEMPT.json: {"prompt", "env" (the ORCA_* variables), "cwd", "pid"} — written whole
(renamed into place), so its existence says the agent has started.

A STEP is an object with one key:

    {"say": "text"}                     an output line with text + "\\n"
    {"touch": "path"}                   create the file (relative: to the working directory)
    {"write": ["path", "text"]}         write the file (relative: to the working directory)
    {"say_file": "path"}                an output line with the file's text, or "no path"
    {"wait_file": "path"}               wait until it exists (30 s at most, then fail)
    {"ask": [QUESTION, ...]}            a question line, then wait for the answer line
    {"result": {...}}                   a result line ({"outcome": ..., "summary"/"error"})
    {"hang": true}                      wait for ever (until stopped)
    {"exit": 3}                         exit now with this status
"""

import json
import os
import sys
import time


def say(message: dict) -> None:
    print(json.dumps(message), flush=True)


def out(text: str) -> None:
    say({"type": "output", "text": text + "\n"})


def wait_file(path: str) -> None:
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            say({"type": "result", "outcome": "failed", "error": f"gave up waiting for {path}"})
            sys.exit(1)
        time.sleep(0.005)


def main() -> int:
    with open(sys.argv[1]) as handle:
        script = json.load(handle)
    first = sys.stdin.readline()
    prompt = json.loads(first)["text"] if first.strip() else ""
    key = os.environ.get("ORCA_TASK_ID") or os.environ.get("ORCA_REPO") or "run"
    attempt = os.environ.get("ORCA_TASK_ATTEMPT", "1")
    record = script.get("record")
    if record:
        target = os.path.join(record, f"{key}.{attempt}.json")
        body = {
            "prompt": prompt,
            "env": {k: v for k, v in os.environ.items() if k.startswith("ORCA_")},
            "cwd": os.getcwd(),
            "pid": os.getpid(),
        }
        partial = f"{target}.{os.getpid()}.tmp"
        with open(partial, "w") as handle:
            json.dump(body, handle)
        os.rename(partial, target)
    by_attempt = script.get("steps", {}).get(key, {})
    default = [{"result": {"outcome": "done", "summary": f"{key} done"}}]
    steps = by_attempt.get(attempt, by_attempt.get("*", default))
    for step in steps:
        ((kind, value),) = step.items()
        if kind == "say":
            out(value)
        elif kind == "touch":
            with open(value, "a"):
                pass
        elif kind == "write":
            with open(value[0], "w") as handle:
                handle.write(value[1])
        elif kind == "say_file":
            try:
                with open(value) as handle:
                    out(f"{value}: {handle.read()}")
            except FileNotFoundError:
                out(f"no {value}")
        elif kind == "wait_file":
            wait_file(value)
        elif kind == "ask":
            say({"type": "question", "questions": value})
            while True:
                line = sys.stdin.readline()
                if not line:
                    out("stdin closed before an answer came")
                    return 1
                if json.loads(line).get("type") == "answer":
                    break
        elif kind == "result":
            say({"type": "result", **value})
        elif kind == "hang":
            while True:
                time.sleep(1)
        elif kind == "exit":
            return int(value)
        else:
            raise SystemExit(f"graph_agent.py: unknown step {kind!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
