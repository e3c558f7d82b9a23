"""Agent text reaches a person's terminal inert: `orca status`, `logs`, `watch`, `doctor` and
`run --wait` show control characters (escape sequences, C1 controls, bare CR, backspace,
right-to-left overrides) as visible symbols; `--json` and `logs --raw` keep the text exact."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time

from conftest import DaemonProcess, agent, wait_until

from orca_client.terminal_text import one_line, visible

NASTY = "\x1b[2J\x1b[Hclear\x1b]0;pwned\x07 \x9b31mred\rover\x08\x08 \u202eevil\x7f"
"""What tests/agents/hostile_text.py puts in every piece of text it sends."""
SHOWN = "␛[2J␛[Hclear␛]0;pwned␇ \\x9b31mred␍over␈␈ \\u202eevil␡"
"""The same text as the CLI shows it."""
ON_STDERR = "clear \x9b31mred\rover\x08\x08 \u202eevil\x7f"
"""NASTY as orcad records it from the agent's stderr: without its terminal escape sequences."""
STDERR_SHOWN = "clear \\x9b31mred␍over␈␈ \\u202eevil␡"
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""Every character a terminal may act on, except newline and tab."""


def orca(daemon: DaemonProcess, *args: str) -> tuple[str, str]:
    """Run the real CLI; its stdout and stderr, byte for byte (no newline translation)."""
    result = subprocess.run(
        [sys.executable, "-m", "orca_client.cli", *args],
        env=daemon.env,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.decode(), result.stderr.decode()


def assert_inert(text: str) -> None:
    found = CONTROL.search(text)
    assert found is None, f"{found.group()!r} reached the terminal: {text!r}"


def test_agent_text_is_shown_inert_everywhere_but_json(daemon: DaemonProcess) -> None:
    command = ["run", "--wait", "--title", f"t {NASTY}", "--", *agent("hostile_text.py")]
    waiting = subprocess.Popen(
        [sys.executable, "-m", "orca_client.cli", *command],
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        run_id = wait_until(
            lambda: [r.run_id for r in daemon.status().runs if r.status == "waiting_for_answer"],
            "the hostile agent's question",
        )[0]
        for args in (["status"], ["status", run_id], ["doctor", run_id], ["status", "--all"]):
            out, err = orca(daemon, *args)
            assert_inert(out + err)
        table, _ = orca(daemon, "status")
        assert f"ask {SHOWN}"[:40] in table
        detail, _ = orca(daemon, "status", run_id)
        for words in (f"t {SHOWN}", f"head {SHOWN}: ask {SHOWN}", f"yes {SHOWN}: why {SHOWN}"):
            assert words in detail
        orca(daemon, "answer", run_id, "1")  # its only option, by number
        out_bytes, err_bytes = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, err_bytes
    streamed, told = out_bytes.decode(), err_bytes.decode()
    assert_inert(streamed + told)
    assert f"plain {SHOWN}\n" in streamed and f"json {SHOWN}\n" in streamed
    assert f"stderr {STDERR_SHOWN}\n" in told and f"sum {SHOWN}" in told

    detail, _ = orca(daemon, "status", run_id)
    assert_inert(detail)
    assert f"summary  sum {SHOWN}" in detail
    logs_out, logs_err = orca(daemon, "logs", run_id)
    assert_inert(logs_out + logs_err)
    assert f"plain {SHOWN}\n" in logs_out and f"stderr {STDERR_SHOWN}\n" in logs_err
    assert_inert(watched(daemon, run_id))

    raw_out, raw_err = orca(daemon, "logs", run_id, "--raw")
    assert f"plain {NASTY}\n" in raw_out and f"stderr {ON_STDERR}\n" in raw_err
    texts = [
        json.loads(line)["event"]["text"]
        for line in orca(daemon, "logs", run_id, "--json")[0].splitlines()
    ]
    assert f"json {NASTY}\n" in "".join(texts)
    as_json = json.loads(orca(daemon, "status", run_id, "--json")[0])
    assert as_json["sessions"][0]["summary"] == f"sum {NASTY}"
    assert as_json["title"] == f"t {NASTY}"


def watched(daemon: DaemonProcess, run_id: str) -> str:
    """What `orca watch RUN --after 0` printed up to the run's end."""
    watch = subprocess.Popen(
        [sys.executable, "-m", "orca_client.cli", "watch", run_id, "--after", "0"],
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert watch.stdout is not None
    lines: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            line = watch.stdout.readline()
            lines.append(line)
            if not line or (b"run_status_changed" in line and b"completed" in line):
                break
    finally:
        watch.terminate()
        watch.communicate(timeout=10)
    text = b"".join(lines).decode()
    assert "completed" in text and "output_appended" in text and SHOWN[:20] in text, text
    return text


def test_answering_on_a_terminal_shows_the_question_inert(daemon: DaemonProcess) -> None:
    run_id = orca(daemon, "run", "--", *agent("hostile_text.py"))[0].strip()
    daemon.wait_for_run(run_id, frozenset({"waiting_for_answer"}))
    primary, secondary = pty.openpty()
    answering = subprocess.Popen(
        [sys.executable, "-m", "orca_client.cli", "answer", run_id],
        env=daemon.env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    try:
        shown = read_until(primary, b"> ").decode()
        os.write(primary, b"1\n")
        shown += read_until(primary, b"the run is").decode()
        assert answering.wait(20) == 0
    finally:
        os.close(primary)
        if answering.poll() is None:
            answering.kill()
    assert_inert(shown.replace("\r\n", "\n"))  # the terminal's own line ends
    assert f"[q1] head {SHOWN}: ask {SHOWN}" in shown and f"1. yes {SHOWN} — why {SHOWN}" in shown
    assert daemon.wait_for_run(run_id).status == "completed"


def read_until(fd: int, needle: bytes, timeout: float = 20.0) -> bytes:
    """What the terminal `fd` shows, up to `needle`."""
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0 and select.select([fd], [], [], remaining)[0], seen
        chunk = os.read(fd, 4096)
        assert chunk, seen
        seen += chunk
    return seen


def test_visible_keeps_line_structure_and_shows_everything_else() -> None:
    assert visible("a\tb\r\nc\n") == "a\tb\r\nc\n"
    assert visible("x\ry\x00\x1b\x7f\x9b\u2066\udcff") == "x␍y␀␛␡\\x9b\\u2066\\udcff"
    assert one_line("a\nb\tc\r\nd\re") == "a ⏎ b c ⏎ d␍e"
