"""`orca answer RUN_ID` with no answer, on a real terminal (a pty): it asks each question in turn,
shows the options, reads secret answers without echo, and sends them by id."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import select
import subprocess
import sys
import time

from conftest import DaemonProcess, output_of
from support.runs import start

from orca_client.wire import StartRun

QUESTIONS = [
    {
        "id": "db",
        "header": "Database",
        "question": "Which database?",
        "options": [
            {"label": "postgres", "description": "prod"},
            {"label": "sqlite", "description": ""},
        ],
    },
    {"id": "token", "header": "Token", "question": "Paste the API token", "isSecret": True},
]

ASKER = r"""
import hashlib, json, sys
sys.stdin.readline()
print(json.dumps({"type": "question", "questions": json.loads(sys.argv[1])}), flush=True)
answer = json.loads(sys.stdin.readline())["answers"]
token = hashlib.sha256(answer["token"]["answers"][0].encode()).hexdigest()
text = "db=" + answer["db"]["answers"][0] + " token-sha=" + token + "\n"
print(json.dumps({"type": "output", "text": text}), flush=True)
print(json.dumps({"type": "result", "outcome": "done"}), flush=True)
"""


def read_until(fd: int, needle: bytes, timeout: float = 20.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{needle!r} not shown; the terminal showed {seen!r}"
        if select.select([fd], [], [], remaining)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_answer_on_a_terminal_asks_each_question_and_hides_secrets(daemon: DaemonProcess) -> None:
    started = start(daemon, [sys.executable, "-c", ASKER, json.dumps(QUESTIONS)])
    daemon.wait_for_run(started.run_id, frozenset({"waiting_for_answer"}))
    primary, secondary = pty.openpty()
    process = subprocess.Popen(  # the run by a prefix, the session by the part after the run's
        [sys.executable, "-m", "orca_client.cli", "answer", started.run_id[:6], "--session", "1"],
        env=daemon.env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    try:
        shown = read_until(primary, b"> ")
        assert b"[db] Database: Which database?" in shown
        assert b"1. postgres" in shown and b"2. sqlite" in shown
        os.write(primary, b"1\n")
        shown = read_until(primary, b"not echoed")
        assert b"[token] Token: Paste the API token" in shown
        os.write(primary, b"s3cret-value\n")
        rest = read_until(primary, b"the run is")
        assert b"s3cret-value" not in rest
        assert process.wait(20) == 0
    finally:
        os.close(primary)
        if process.poll() is None:
            process.kill()
    daemon.wait_for_run(started.run_id)
    digest = hashlib.sha256(b"s3cret-value").hexdigest()
    assert f"db=postgres token-sha={digest}" in output_of(daemon, started.run_id)


def test_answer_without_a_terminal_and_without_an_answer_is_a_usage_error(
    daemon: DaemonProcess,
) -> None:
    with daemon.client() as client:
        started = client.request(
            StartRun(
                command=[sys.executable, "-c", ASKER, json.dumps(QUESTIONS)], cwd=str(daemon.home)
            )
        )
    daemon.wait_for_run(started.run_id, frozenset({"waiting_for_answer"}))
    result = daemon.orca("answer", started.run_id, input="")
    assert result.returncode == 2
    assert "no terminal" in result.stderr
    assert daemon.status(started.run_id).runs[0].status == "waiting_for_answer"
