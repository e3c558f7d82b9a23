#!/usr/bin/env python3
"""A configurable command agent for the question and hook tests.

    q_ask.py SCRIPT_JSON

SCRIPT_JSON is an object:

    {"steps": [STEP, ...],        what to do, in order
     "on_cancel": [STEP, ...],    what to do once a `cancel` line arrives (default: nothing)
     "cancel_exit": 1,            exit status after the on_cancel steps
     "ignore_sigterm": false,     ignore SIGTERM (to act after a cancel)
     "exit": 0}                   exit status after the last step

A STEP is an object with one key:

    {"say": "text"}               an output line with text + "\\n"
    {"raw": "line"}               print the line as is
    {"phase": "planning"}         a phase line
    {"ask": [QUESTION, ...]}      a question line, then wait for the answer (or a cancel)
    {"ask_nowait": [QUESTION]}    a question line, without waiting
    {"clear": true}               a question_cleared line
    {"wait_answer": true}         wait for an answer line (or a cancel)
    {"wait_file": "/path"}        wait until the file exists (the test's go signal)
    {"drain": 0.5}                for this many seconds, print whatever arrives on stdin
    {"result": {"outcome": "done", "summary": "..."}}   a result line
    {"sleep": 0.1}
    {"kill": "SIGKILL"}           send itself a signal
    {"exit": 3}                   exit now with this status

Every line received on stdin after the prompt is printed as output
`received {JSON with sorted keys}`; answers to secret questions are replaced by
`sha256:<hex of the UTF-8 value>`, so a secret never appears in the agent's output.
"""

import hashlib
import json
import os
import select
import signal
import sys
import time

STDIN = 0


class Agent:
    def __init__(self, script: dict) -> None:
        self.script = script
        self.secret_ids: set[str] = set()
        self.buffer = b""
        self.eof = False

    # ------------------------------------------------------------------ stdin

    def read_line(self, timeout: float | None) -> str | None:
        """The next stdin line (without its newline); None on timeout or end of input."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buffer:
            if self.eof:
                return None
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([STDIN], [], [], remaining)
            if not ready:
                return None
            data = os.read(STDIN, 65536)
            if not data:
                self.eof = True
                if not self.buffer:
                    return None
                self.buffer += b"\n"
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    def show(self, message: dict) -> None:
        if message.get("type") == "answer" and isinstance(message.get("answers"), dict):
            shown = {}
            for qid, body in message["answers"].items():
                body = dict(body)
                if qid in self.secret_ids:
                    body["answers"] = [
                        "sha256:" + hashlib.sha256(v.encode()).hexdigest() for v in body["answers"]
                    ]
                shown[qid] = body
            message = {**message, "answers": shown}
        out("received " + json.dumps(message, sort_keys=True))

    def receive(self, timeout: float | None) -> dict | None:
        line = self.read_line(timeout)
        if line is None:
            return None
        try:
            message = json.loads(line)
        except ValueError:
            out(f"received a line that is not JSON: {line!r}")
            return {}
        self.show(message)
        if message.get("type") == "cancel":
            self.run(self.script.get("on_cancel", []))
            sys.exit(self.script.get("cancel_exit", 1))
        return message

    def wait_answer(self) -> None:
        while True:
            message = self.receive(None)
            if message is None:
                out("stdin closed before an answer came")
                sys.exit(1)
            if message.get("type") == "answer":
                return

    def wait_file(self, path: str) -> None:
        """Wait for the file; stdin is buffered meanwhile, and its end (orcad gone) ends us."""
        deadline = time.monotonic() + 60
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                out(f"gave up waiting for {path}")
                sys.exit(1)
            if not self.eof and select.select([STDIN], [], [], 0.01)[0]:
                data = os.read(STDIN, 65536)
                if data:
                    self.buffer += data
                else:
                    self.eof = True
            elif self.eof:
                out("stdin closed while waiting")
                sys.exit(1)
            else:
                time.sleep(0.005)

    # ------------------------------------------------------------------ steps

    def ask(self, questions: list) -> None:
        self.secret_ids = {q["id"] for q in questions if isinstance(q, dict) and q.get("isSecret")}
        say({"type": "question", "questions": questions})

    def run(self, steps: list) -> None:
        for step in steps:
            ((kind, value),) = step.items()
            if kind == "say":
                out(value)
            elif kind == "raw":
                print(value, flush=True)
            elif kind == "phase":
                say({"type": "phase", "phase": value})
            elif kind == "ask":
                self.ask(value)
                self.wait_answer()
            elif kind == "ask_nowait":
                self.ask(value)
            elif kind == "clear":
                say({"type": "question_cleared"})
            elif kind == "wait_answer":
                self.wait_answer()
            elif kind == "wait_file":
                self.wait_file(value)
            elif kind == "drain":
                deadline = time.monotonic() + value
                while time.monotonic() < deadline and not self.eof:
                    line = self.read_line(max(0.0, deadline - time.monotonic()))
                    if line is not None:
                        try:
                            self.show(json.loads(line))
                        except ValueError:
                            out(f"received a line that is not JSON: {line!r}")
            elif kind == "result":
                say({"type": "result", **value})
            elif kind == "sleep":
                time.sleep(value)
            elif kind == "kill":
                os.kill(os.getpid(), getattr(signal, value))
                time.sleep(10)
            elif kind == "exit":
                sys.exit(value)
            else:
                raise SystemExit(f"q_ask.py: unknown step {kind!r}")


def say(message: dict) -> None:
    print(json.dumps(message), flush=True)


def out(text: str) -> None:
    say({"type": "output", "text": text + "\n"})


def main() -> int:
    script = json.loads(sys.argv[1])
    if script.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    agent = Agent(script)
    prompt = agent.read_line(None)
    out(f"prompt {prompt}")
    out(f"pid {os.getpid()}")
    agent.run(script.get("steps", []))
    return int(script.get("exit", 0))


if __name__ == "__main__":
    sys.exit(main())
