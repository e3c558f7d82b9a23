"""Questions and answers end to end: a real orcad, its real socket, the real `orca` CLI, and a
command agent (tests/agents/q_ask.py) that asks what a test tells it to and prints what it gets.

Each `test_finding_NN_*` is the acceptance test for finding NN of ../shared/PRODUCT.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    DaemonProcess,
    events_of,
    output_of,
    process_exists,
    records_of,
    wait_until,
)
from support.homes import write_config
from support.questions import DONE, of_type, q, start, wait_pending

from orca_client.client import RequestFailed
from orca_client.wire import (
    Answer,
    AnswerResult,
)


@pytest.fixture
def log_env(any_log_env: dict[str, str]) -> dict[str, str]:
    """Every test here runs on the SQLite log and on a PostgreSQL one."""
    return any_log_env


# --------------------------------------------------------------------------- helpers


def received(daemon: DaemonProcess, run_id: str) -> list[dict[str, Any]]:
    """Every stdin line the agent says it received after its prompt, in order."""
    return [
        json.loads(line[len("received ") :])
        for line in output_of(daemon, run_id).splitlines()
        if line.startswith("received ")
    ]


def wait_received(daemon: DaemonProcess, run_id: str, count: int) -> list[dict[str, Any]]:
    wait_until(lambda: len(received(daemon, run_id)) >= count, what=f"{count} lines received")
    return received(daemon, run_id)


def answer(daemon: DaemonProcess, run_id: str, **kwargs: Any) -> AnswerResult:
    with daemon.client() as client:
        result: AnswerResult = client.request(Answer(run_id=run_id, answered_by="test", **kwargs))
    return result


def refused(daemon: DaemonProcess, run_id: str, **kwargs: Any) -> RequestFailed:
    with daemon.client() as client, pytest.raises(RequestFailed) as error:
        client.request(Answer(run_id=run_id, answered_by="test", **kwargs))
    return error.value


def statuses_of(daemon: DaemonProcess, run_id: str) -> list[str]:
    return [str(e["status"]) for e in of_type(daemon, run_id, "run_status_changed")]


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_socket()]


def files_containing(root: Path, needle: bytes, skip: tuple[Path, ...] = ()) -> list[Path]:
    return [p for p in files_under(root) if p not in skip and needle in p.read_bytes()]


# --------------------------------------------------------------------------- finding 1


def test_finding_01_cancel_while_waiting_stays_cancelled(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path
) -> None:
    # A long grace period: the agent ignores SIGTERM and acts after the cancel, on our signal.
    write_config(orca_home, "[daemon]\ncancel_grace_seconds = 30\n")
    daemon = make_daemon().start()
    go = tmp_path / "go"
    run_id = start(
        daemon,
        {
            "ignore_sigterm": True,
            "steps": [{"ask": [q("q1", "Proceed?")]}, DONE],
            "on_cancel": [
                {"wait_file": str(go)},
                {"drain": 0.5},
                {"clear": True},
                {"result": {"outcome": "done", "summary": "done anyway"}},
                {"say": "exiting 0 after the cancel"},
            ],
            "cancel_exit": 0,
        },
    )
    wait_pending(daemon, run_id)
    pid = daemon.status(run_id).sessions[0].pid
    assert pid is not None

    cancelled = daemon.orca("cancel", run_id, "--reason", "changed my mind")
    assert cancelled.returncode == 0, cancelled.stderr
    assert wait_received(daemon, run_id, 1) == [{"type": "cancel", "reason": "changed my mind"}]
    status = daemon.status(run_id)
    assert (status.runs[0].status, status.sessions[0].status) == ("cancelled", "cancelled")
    assert status.sessions[0].pending is None

    # A late answer is refused, over the socket and from the CLI, while the agent still listens.
    error = refused(daemon, run_id, text="yes")
    assert error.code == "invalid_state"
    late = daemon.orca("answer", run_id, "yes")
    assert late.returncode == 1
    assert "invalid_state" in late.stderr

    # The agent now clears its question, reports done and exits 0: nothing changes.
    go.touch()
    wait_until(lambda: "exiting 0 after the cancel" in output_of(daemon, run_id))
    wait_until(lambda: not process_exists(pid), what="the agent exited")
    assert received(daemon, run_id) == [{"type": "cancel", "reason": "changed my mind"}]
    status = daemon.status(run_id)
    assert status.runs[0].status == "cancelled"
    assert status.runs[0].reason == "changed my mind"
    assert status.sessions[0].status == "cancelled"
    assert status.sessions[0].summary is None
    events = events_of(daemon, run_id)
    assert len([e for e in events if e["type"] == "session_terminated"]) == 1
    assert statuses_of(daemon, run_id) == ["running", "waiting_for_answer", "cancelled"]
    assert not [e for e in events if e["type"] in ("question_answered", "question_cleared")]
    # A terminal status that could be reached is checked once more, after the agent ended.
    assert daemon.orca("cancel", run_id).stdout.strip().endswith("had already ended: cancelled")


# --------------------------------------------------------------------------- finding 2


def test_finding_02_a_multi_question_answer_must_name_exactly_the_pending_ids(
    daemon: DaemonProcess,
) -> None:
    run_id = start(
        daemon,
        {
            "steps": [
                {"ask": [q("q1", "Which runtime?"), q("q2", "Which targets?")]},
                {"ask": [q("q3", "Name?"), q("q4", "Tags?")]},
                DONE,
            ]
        },
    )
    wait_pending(daemon, run_id, "q1")

    missing = refused(daemon, run_id, answers={"q1": ["python3.11"]})
    assert missing.code == "bad_request"
    named = str(missing).split("(pending")[0]
    assert "missing" in named and "q2" in named and "q1" not in named
    unknown = refused(daemon, run_id, answers={"q1": ["a"], "q2": ["b"], "nope": ["c"]})
    assert unknown.code == "bad_request"
    assert "nope" in str(unknown)
    both_wrong = refused(daemon, run_id, answers={"q1": ["a"], "zzz": ["c"]})
    assert "zzz" in str(both_wrong) and "q2" in str(both_wrong).split("(pending")[0]
    lone_text = refused(daemon, run_id, text="python3.11")
    assert lone_text.code == "bad_request"
    assert "q1" in str(lone_text) and "q2" in str(lone_text)

    cli_missing = daemon.orca("answer", run_id, "--json", '{"q1": "python3.11"}')
    assert cli_missing.returncode == 1
    assert "q2" in cli_missing.stderr.split("(pending")[0]
    cli_unknown = daemon.orca("answer", run_id, "--json", '{"q1": "a", "q2": "b", "nope": "c"}')
    assert cli_unknown.returncode == 1
    assert "nope" in cli_unknown.stderr

    # Nothing reached the agent, and the run still waits for the same request.
    assert received(daemon, run_id) == []
    assert daemon.status(run_id).runs[0].status == "waiting_for_answer"
    assert not of_type(daemon, run_id, "question_answered")
    assert wait_pending(daemon, run_id).request_id == "q1"

    # Short form, by id: delivered exactly as given.
    ok = daemon.orca("answer", run_id, "--json", '{"q1": "python3.11", "q2": ["linux", "macOS"]}')
    assert ok.returncode == 0, ok.stderr
    assert wait_received(daemon, run_id, 1) == [
        {
            "type": "answer",
            "answers": {"q1": {"answers": ["python3.11"]}, "q2": {"answers": ["linux", "macOS"]}},
        }
    ]

    # Long form (the Codex shape), on the next request: delivered exactly as given.
    wait_pending(daemon, run_id, "q2")
    assert refused(daemon, run_id, answers={"q3": ["x"]}).code == "bad_request"
    long_form = {"answers": {"q3": {"answers": ["  spaced  "]}, "q4": {"answers": ["ünï {x}", ""]}}}
    ok = daemon.orca("answer", run_id, "--json", json.dumps(long_form))
    assert ok.returncode == 0, ok.stderr
    assert wait_received(daemon, run_id, 2)[1] == {"type": "answer", **long_form}
    assert daemon.wait_for_run(run_id).status == "completed"
    assert len(received(daemon, run_id)) == 2


# --------------------------------------------------------------------------- finding 3


def test_finding_03_a_lone_question_takes_text_verbatim_even_if_it_starts_with_a_brace(
    daemon: DaemonProcess,
) -> None:
    texts = ['{"useMigration":true}', "{not json", '  {"a": [1, 2]}\t']
    run_id = start(
        daemon, {"steps": [*[{"ask": [q("choice", f"ask {i}")]} for i in range(4)], DONE]}
    )
    for index, text in enumerate(texts):
        wait_pending(daemon, run_id, f"q{index + 1}")
        result = daemon.orca("answer", run_id, text)
        assert result.returncode == 0, result.stderr
        got = wait_received(daemon, run_id, index + 1)[index]
        assert got == {"type": "answer", "answers": {"choice": {"answers": [text]}}}
    # From stdin with `-`: one trailing newline is dropped, nothing else.
    wait_pending(daemon, run_id, "q4")
    result = daemon.orca("answer", run_id, "-", input='{"from": "stdin"}\n')
    assert result.returncode == 0, result.stderr
    got = wait_received(daemon, run_id, 4)[3]
    assert got == {"type": "answer", "answers": {"choice": {"answers": ['{"from": "stdin"}']}}}
    assert daemon.wait_for_run(run_id).status == "completed"
    recorded = [e["answers"] for e in of_type(daemon, run_id, "question_answered")]
    assert recorded == [{"choice": [t]} for t in [*texts, '{"from": "stdin"}']]


def test_a_question_that_takes_only_its_options_refuses_other_answers_and_takes_numbers(
    daemon: DaemonProcess,
) -> None:
    """`isOther: false`: what the terminal enforces, orcad enforces for every client (a
    notification's pasted command, a script, an MCP tool): an option by label, number or case;
    anything else is refused and nothing reaches the agent. Free-text questions stay verbatim."""
    options = [{"label": "staging"}, {"label": "production"}]
    run_id = start(
        daemon,
        {
            "steps": [
                {"ask": [q("env", "Where?", options=options, isOther=False)]},
                {"ask": [q("env2", "And then?", options=options, isOther=False), q("why")]},
                {"ask": [q("free", "Any?", options=options, isOther=True)]},
                DONE,
            ]
        },
    )
    wait_pending(daemon, run_id, "q1")
    wrong = refused(daemon, run_id, text="TEXT")
    assert wrong.code == "bad_request"
    assert "env takes only one of its options, by label or number: 1. staging, 2. production" in (
        str(wrong)
    )
    assert "TEXT" not in str(wrong)
    assert refused(daemon, run_id, text="3").code == "bad_request"
    cli = daemon.orca("answer", run_id, "qa")
    assert cli.returncode == 1 and "1. staging, 2. production" in cli.stderr
    assert received(daemon, run_id) == []
    answer(daemon, run_id, text="2")
    pending = wait_pending(daemon, run_id, "q2")
    answer(
        daemon, run_id, request_id=pending.request_id, answers={"env2": [" STAGING "], "why": ["1"]}
    )
    wait_pending(daemon, run_id, "q3")
    answer(daemon, run_id, text="2")  # other answers allowed: verbatim, as before
    assert daemon.wait_for_run(run_id).status == "completed"
    answers = [line["answers"] for line in received(daemon, run_id)]
    assert answers[:3] == [
        {"env": {"answers": ["production"]}},
        {"env2": {"answers": ["staging"]}, "why": {"answers": ["1"]}},
        {"free": {"answers": ["2"]}},
    ]


# --------------------------------------------------------------------------- finding 4


@pytest.mark.parametrize("phase", ["planning", "reviewing"])
def test_finding_04_after_an_answer_the_run_returns_to_its_phase(
    daemon: DaemonProcess, tmp_path: Path, phase: str
) -> None:
    go = tmp_path / "go"
    run_id = start(
        daemon,
        {
            "steps": [
                {"phase": phase},
                {"ask": [q("q1", "Use a migration?")]},
                {"say": "answered"},
                {"wait_file": str(go)},
                DONE,
            ]
        },
    )
    wait_pending(daemon, run_id)
    result = daemon.orca("answer", run_id, "yes")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"the run is {phase}")
    wait_until(lambda: "answered\n" in output_of(daemon, run_id))
    assert daemon.status(run_id).runs[0].status == phase
    assert daemon.status(run_id).runs[0].paused_status is None
    go.touch()
    assert daemon.wait_for_run(run_id).status == "completed"
    assert statuses_of(daemon, run_id) == [
        "running",
        phase,
        "waiting_for_answer",
        phase,
        "completed",
    ]


def test_finding_04_a_socket_answer_reports_the_phase_it_returned_to(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    run_id = start(
        daemon,
        {
            "steps": [
                {"phase": "planning"},
                {"ask": [q("q1")]},
                {"wait_file": str(go)},
                {"phase": "running"},
                {"ask": [q("q2")]},
                DONE,
            ]
        },
    )
    wait_pending(daemon, run_id, "q1")
    assert answer(daemon, run_id, text="a").status == "planning"
    go.touch()
    wait_pending(daemon, run_id, "q2")
    assert answer(daemon, run_id, text="b").status == "running"
    assert daemon.wait_for_run(run_id).status == "completed"
    assert statuses_of(daemon, run_id) == [
        "running",
        "planning",
        "waiting_for_answer",
        "planning",
        "running",
        "waiting_for_answer",
        "running",
        "completed",
    ]


def test_finding_04_after_the_agent_clears_its_question_the_run_returns_to_its_phase(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    clear, go = tmp_path / "clear", tmp_path / "go"
    run_id = start(
        daemon,
        {
            "steps": [
                {"phase": "reviewing"},
                {"ask_nowait": [q("q1", "Ship it?")]},
                {"wait_file": str(clear)},
                {"clear": True},
                {"say": "cleared"},
                {"wait_file": str(go)},
                DONE,
            ]
        },
    )
    wait_pending(daemon, run_id)
    clear.touch()
    wait_until(lambda: "cleared\n" in output_of(daemon, run_id))
    assert daemon.status(run_id).runs[0].status == "reviewing"
    go.touch()
    assert daemon.wait_for_run(run_id).status == "completed"
    assert statuses_of(daemon, run_id) == [
        "running",
        "reviewing",
        "waiting_for_answer",
        "reviewing",
        "completed",
    ]


# --------------------------------------------------------------------------- finding 5


def test_finding_05_secret_answers_never_touch_disk(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    daemon = make_daemon().start()
    first = "s3cr3t-" + secrets.token_hex(16)
    second = "pw-" + secrets.token_hex(16)
    run_id = start(
        daemon,
        {
            "steps": [
                {"ask": [q("token", "API token?", header="Token", isSecret=True)]},
                {"ask": [q("password", "Password?", isSecret=True), q("user", "User name?")]},
                DONE,
            ]
        },
        prompt="needs credentials",
    )
    wait_pending(daemon, run_id, "q1")

    # Refused answers name ids, never the secret value.
    bad = daemon.orca("answer", run_id, "--json", json.dumps({"token": first, "bogus": "x"}))
    assert bad.returncode == 1
    assert "bogus" in bad.stderr
    assert first not in bad.stderr + bad.stdout
    error = refused(daemon, run_id, answers={"token": [first], "other": [first]})
    assert error.code == "bad_request"
    assert first not in str(error)
    assert received(daemon, run_id) == []

    result = daemon.orca("answer", run_id, first)
    assert result.returncode == 0, result.stderr
    assert first not in result.stdout + result.stderr
    sha_first = "sha256:" + hashlib.sha256(first.encode()).hexdigest()
    assert wait_received(daemon, run_id, 1)[0] == {
        "type": "answer",
        "answers": {"token": {"answers": [sha_first]}},
    }

    wait_pending(daemon, run_id, "q2")
    missing = daemon.orca("answer", run_id, "--json", "-", input=json.dumps({"password": second}))
    assert missing.returncode == 1
    assert "user" in missing.stderr
    assert second not in missing.stderr + missing.stdout
    result = daemon.orca(
        "answer", run_id, "--json", "-", input=json.dumps({"password": second, "user": "bob"})
    )
    assert result.returncode == 0, result.stderr
    sha_second = "sha256:" + hashlib.sha256(second.encode()).hexdigest()
    assert wait_received(daemon, run_id, 2)[1] == {
        "type": "answer",
        "answers": {"password": {"answers": [sha_second]}, "user": {"answers": ["bob"]}},
    }
    assert daemon.wait_for_run(run_id).status == "completed"

    answered = of_type(daemon, run_id, "question_answered")
    assert [(e["answers"], e["redacted_ids"]) for e in answered] == [
        ({}, ["token"]),
        ({"user": ["bob"]}, ["password"]),
    ]
    assert all(e["answered_by"] for e in answered)
    for record in records_of(daemon, run_id):
        assert first.encode() not in bytes(record.event)
        assert second.encode() not in bytes(record.event)

    def leaks() -> list[str]:
        found = [str(p) for s in (first, second) for p in files_containing(orca_home, s.encode())]
        found += [f"orcad stderr: {s}" for s in (first, second) if s in daemon.output()]
        return found

    assert leaks() == []  # while orcad runs (the WAL holds the latest events)
    daemon.stop()
    assert leaks() == []  # after it stopped (and checkpointed)
    assert files_under(orca_home), "the scan found no files at all"


# --------------------------------------------------------------------------- finding 6


def test_finding_06_status_shows_every_pending_question_with_its_id(
    daemon: DaemonProcess,
) -> None:
    questions = [
        q(
            "runtime",
            "Which runtime should the fix target?",
            header="Runtime",
            options=[
                {"label": "python3.11", "description": "what CI uses"},
                {"label": "python3.13", "description": "the newest"},
            ],
            isOther=True,
        ),
        q("api_key", "Which API key may it use?", header="Key", isSecret=True),
    ]
    run_id = start(daemon, {"steps": [{"ask": questions}, DONE]}, title="two questions")
    other = start(daemon, {"steps": [{"ask": [q("lonely", "Anyone there?")]}, DONE]})
    wait_pending(daemon, run_id)
    wait_pending(daemon, other)

    table = daemon.orca("status")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert any(run_id in line and "waiting_for_answer" in line for line in lines)
    assert any(
        "runtime" in line and "Which runtime should the fix target?" in line for line in lines
    )
    assert any("api_key [secret]" in line and "Which API key may it use?" in line for line in lines)
    assert any("lonely" in line and "Anyone there?" in line for line in lines)
    # Each question is listed under its own run.
    blocks: dict[str, list[str]] = {}
    current = ""
    for line in lines:
        if line.startswith((run_id, other)):
            current = line.split()[0]
        elif current:
            blocks.setdefault(current, []).append(line)
    assert any("runtime" in line for line in blocks[run_id])
    assert any("api_key" in line for line in blocks[run_id])
    assert not any("lonely" in line for line in blocks[run_id])
    assert any("lonely" in line for line in blocks[other])

    detail = daemon.orca("status", run_id)
    assert detail.returncode == 0, detail.stderr
    assert "waiting for an answer (request id q1)" in detail.stdout
    text = detail.stdout.split("waiting for an answer")[1]  # not the command line above it
    assert re.search(r"runtime .*Runtime: Which runtime should the fix target\?", text)
    assert "- python3.11: what CI uses" in text
    assert "- python3.13: the newest" in text
    assert re.search(r"api_key \[secret\].*Key: Which API key may it use\?", text)

    everything = json.loads(daemon.orca("status", "--json").stdout)
    pending = [s["pending"] for s in everything["sessions"] if s["pending"] is not None]
    ids = {
        s["run_id"]: [q["id"] for q in s["pending"]["questions"]] for s in everything["sessions"]
    }
    assert ids == {run_id: ["runtime", "api_key"], other: ["lonely"]}
    assert all(p["request_id"] == "q1" for p in pending)
    one = json.loads(daemon.orca("status", run_id, "--json").stdout)
    assert one["status"] == "waiting_for_answer"
    [session] = one["sessions"]
    assert session["pending"]["questions"][0]["options"][0]["label"] == "python3.11"
    assert session["pending"]["questions"][1]["isSecret"] is True
    assert session["pending"]["questions"][1]["header"] == "Key"

    assert (
        daemon.orca("answer", run_id, "--json", '{"runtime": "a", "api_key": "k"}').returncode == 0
    )
    assert daemon.orca("answer", other, "here").returncode == 0
    assert daemon.wait_for_run(run_id).status == "completed"
    assert daemon.wait_for_run(other).status == "completed"
    assert "↳" not in daemon.orca("status").stdout


# --------------------------------------------------------------------------- finding 7


def test_finding_07_a_question_the_agent_clears_is_no_longer_pending(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    cleared, finish = tmp_path / "clear", tmp_path / "finish"
    run_id = start(
        daemon,
        {
            "steps": [
                {"ask_nowait": [q("q1", "Shall I?")]},
                {"wait_file": str(cleared)},
                {"clear": True},
                {"say": "cleared it"},
                {"wait_file": str(finish)},
                DONE,
            ]
        },
    )
    wait_pending(daemon, run_id)
    assert "q1" in daemon.orca("status").stdout
    cleared.touch()
    wait_until(lambda: "cleared it\n" in output_of(daemon, run_id))
    status = daemon.status(run_id)
    assert status.runs[0].status == "running"
    assert status.sessions[0].status == "running"
    assert status.sessions[0].pending is None
    assert "Shall I?" not in daemon.orca("status").stdout
    assert "waiting for an answer" not in daemon.orca("status", run_id).stdout
    [event] = of_type(daemon, run_id, "question_cleared")
    assert event["request_id"] == "q1"
    assert event["reason"] == "the agent cleared its question"

    late = daemon.orca("answer", run_id, "yes")
    assert late.returncode == 1
    assert "invalid_state" in late.stderr and "not waiting" in late.stderr
    error = refused(daemon, run_id, text="yes")
    assert error.code == "invalid_state"
    assert "not waiting" in str(error)
    # An answer naming the cleared request is refused just as clearly.
    error = refused(daemon, run_id, text="yes", request_id="q1")
    assert error.code == "invalid_state"
    assert "q1" in str(error)

    finish.touch()
    assert daemon.wait_for_run(run_id).status == "completed"
    assert received(daemon, run_id) == []
    assert not of_type(daemon, run_id, "question_answered")
    assert statuses_of(daemon, run_id) == ["running", "waiting_for_answer", "running", "completed"]


@pytest.mark.parametrize(
    ("ending", "exit_code", "status", "reason"),
    [
        ([DONE], 0, "completed", "the agent reported done"),
        ([{"result": {"outcome": "failed", "error": "gave up"}}], 0, "failed", "gave up"),
        ([], 3, "failed", "exited with status 3 without a result line"),
        ([], 0, "completed", "exited with status 0 without a result line"),
    ],
)
def test_finding_07_a_question_pending_when_the_agent_exits_is_cleared(
    daemon: DaemonProcess, ending: list[dict[str, Any]], exit_code: int, status: str, reason: str
) -> None:
    run_id = start(
        daemon,
        {"steps": [{"ask_nowait": [q("q1", "Still there?")]}, *ending], "exit": exit_code},
    )
    run = daemon.wait_for_run(run_id)
    assert (run.status, run.reason) == (status, reason)
    session = daemon.status(run_id).sessions[0]
    assert session.pending is None
    assert (session.status, session.exit_code) == (status, exit_code)
    [event] = of_type(daemon, run_id, "question_cleared")
    assert event["request_id"] == "q1"
    assert event["reason"] == "the agent's output ended"
    types = [e["type"] for e in events_of(daemon, run_id)]
    assert types.index("question_asked") < types.index("question_cleared")
    assert types.index("question_cleared") < types.index("session_terminated")
    assert statuses_of(daemon, run_id)[-1] == status
    late = daemon.orca("answer", run_id, "yes")
    assert late.returncode == 1 and "invalid_state" in late.stderr


# --------------------------------------------------------------------------- finding 8


@pytest.mark.parametrize(
    ("steps", "exit_code", "status", "reason", "recorded_exit"),
    [
        (
            [{"result": {"outcome": "failed", "error": "3 tests fail"}}],
            0,
            "failed",
            "3 tests fail",
            0,
        ),
        ([{"result": {"outcome": "done", "summary": "ok"}}], 3, "completed", None, 3),
        ([{"say": "no verdict"}], 0, "completed", None, 0),
        ([{"kill": "SIGKILL"}], 0, "failed", "SIGKILL", -9),
        ([{"kill": "SIGTERM"}], 0, "failed", "SIGTERM", -15),
    ],
    ids=["failed-exit-0", "done-exit-3", "no-result-exit-0", "sigkill", "sigterm"],
)
def test_finding_08_success_is_what_the_agent_reports_at_its_terminal_marker(
    daemon: DaemonProcess,
    steps: list[dict[str, Any]],
    exit_code: int,
    status: str,
    reason: str | None,
    recorded_exit: int,
) -> None:
    run_id = start(daemon, {"steps": steps, "exit": exit_code})
    run = daemon.wait_for_run(run_id)
    session = daemon.status(run_id).sessions[0]
    assert (run.status, session.status) == (status, status)
    assert session.exit_code == recorded_exit
    if reason is not None:
        assert run.reason is not None and reason in run.reason
        assert session.reason is not None and reason in session.reason
    terminated = of_type(daemon, run_id, "session_terminated")
    assert len(terminated) == 1 and terminated[0]["status"] == status
    assert statuses_of(daemon, run_id)[-1] == status


def test_finding_08_only_the_first_result_line_counts(daemon: DaemonProcess) -> None:
    run_id = start(
        daemon,
        {
            "steps": [
                {"result": {"outcome": "failed", "error": "first verdict"}},
                {"result": {"outcome": "done", "summary": "second verdict"}},
            ]
        },
    )
    run = daemon.wait_for_run(run_id)
    assert (run.status, run.reason) == ("failed", "first verdict")
    assert "second verdict" in output_of(daemon, run_id)


# --------------------------------------------------------------------------- finding 11


def test_finding_11_the_token_is_private_and_written_nowhere_else(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path
) -> None:
    write_config(orca_home, f"[hooks]\non_complete = 'cat > {tmp_path / 'hook-stdin'}'\n")
    daemon = make_daemon().start()
    token_file = daemon.paths.token_file
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(daemon.paths.runtime_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(daemon.paths.state_dir.stat().st_mode) == 0o700
    assert token_file.stat().st_uid == os.getuid()
    token = token_file.read_text().strip()
    assert len(token) >= 32

    # Some traffic: a run that asks, is answered over the CLI and completes (firing a hook),
    # and one that prints its whole environment.
    run_id = start(daemon, {"steps": [{"ask": [q("q1")]}, DONE]})
    wait_pending(daemon, run_id)
    assert daemon.orca("answer", run_id, "fine").returncode == 0
    assert daemon.orca("status", "--json").returncode == 0
    daemon.wait_for_run(run_id)
    env_run = daemon.orca("run", "--wait", "--", "/usr/bin/env")
    assert env_run.returncode == 0, env_run.stderr
    assert token not in env_run.stdout, "the agent's environment carries the token"
    wait_until(lambda: (tmp_path / "hook-stdin").exists())

    def leaks() -> list[str]:
        found = [str(p) for p in files_containing(orca_home, token.encode(), skip=(token_file,))]
        if token in daemon.output():
            found.append("orcad stderr")
        if token.encode() in (tmp_path / "hook-stdin").read_bytes():
            found.append("hook stdin")
        return found

    assert leaks() == []
    daemon.stop()
    assert leaks() == []
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


# --------------------------------------------------------------------------- the rest


def test_answering_an_unknown_run_is_not_found(daemon: DaemonProcess) -> None:
    assert refused(daemon, "doesnotexist", text="x").code == "not_found"
    result = daemon.orca("answer", "doesnotexist", "x")
    assert result.returncode == 1
    assert "not_found" in result.stderr


def test_answer_with_both_text_and_json_is_a_usage_error(daemon: DaemonProcess) -> None:
    run_id = start(daemon, {"steps": [{"ask": [q("q1")]}, DONE]})
    wait_pending(daemon, run_id)
    result = daemon.orca("answer", run_id, "text", "--json", '{"q1": "x"}')
    assert result.returncode == 2
    assert "not both" in result.stderr
    assert refused(daemon, run_id, text="a", answers={"q1": ["b"]}).code == "bad_request"
    assert received(daemon, run_id) == []
    assert daemon.status(run_id).runs[0].status == "waiting_for_answer"


def test_answer_without_an_answer_and_without_a_terminal_is_a_usage_error(
    daemon: DaemonProcess,
) -> None:
    run_id = start(daemon, {"steps": [{"ask": [q("q1")]}, DONE]})
    wait_pending(daemon, run_id)
    result = daemon.orca("answer", run_id, input="")
    assert result.returncode == 2
    assert "no terminal" in result.stderr
    assert "--json" in result.stderr
    assert received(daemon, run_id) == []


def test_answer_with_invalid_json_is_a_usage_error(daemon: DaemonProcess) -> None:
    run_id = start(daemon, {"steps": [{"ask": [q("q1")]}, DONE]})
    wait_pending(daemon, run_id)
    for bad in ("{not json", '["q1"]', '{"q1": 3}'):
        result = daemon.orca("answer", run_id, "--json", bad)
        assert result.returncode == 2, bad
        assert "--json" in result.stderr
    assert received(daemon, run_id) == []


@pytest.mark.parametrize(
    "questions",
    [
        [q("same", "one?"), q("same", "two?")],
        [{"question": "no id at all?"}],
        [q("", "empty id?")],
        [],
        [q("q1", "")],
        "not a list",
    ],
    ids=["duplicate-ids", "no-id", "empty-id", "no-questions", "no-text", "not-a-list"],
)
def test_a_malformed_question_line_is_ignored_with_a_note(
    daemon: DaemonProcess, questions: Any
) -> None:
    line = json.dumps({"type": "question", "questions": questions})
    run_id = start(daemon, {"steps": [{"raw": line}, {"say": "carried on"}, DONE]})
    assert daemon.wait_for_run(run_id).status == "completed"
    assert "ignored a malformed question line" in output_of(daemon, run_id, "orca")
    assert line + "\n" in output_of(daemon, run_id)
    assert "carried on\n" in output_of(daemon, run_id)
    assert not of_type(daemon, run_id, "question_asked")
    assert "waiting_for_answer" not in statuses_of(daemon, run_id)


def test_a_second_question_after_the_first_was_answered_is_pending_and_answerable(
    daemon: DaemonProcess,
) -> None:
    run_id = start(
        daemon,
        {
            "steps": [
                {"ask": [q("first", "First?")]},
                {"say": "between"},
                {"ask": [q("second", "Second?", header="Two")]},
                DONE,
            ]
        },
    )
    assert wait_pending(daemon, run_id).questions[0].id == "first"
    assert daemon.orca("answer", run_id, "one").returncode == 0
    pending = wait_pending(daemon, run_id, "q2")
    assert [x.id for x in pending.questions] == ["second"]
    shown = daemon.orca("status", run_id).stdout.split("waiting for an answer")[1]
    assert "request id q2" in shown and "second" in shown and "Second?" in shown
    assert "First?" not in shown
    assert daemon.orca("answer", run_id, "--json", '{"second": "two"}').returncode == 0
    assert daemon.wait_for_run(run_id).status == "completed"
    assert received(daemon, run_id) == [
        {"type": "answer", "answers": {"first": {"answers": ["one"]}}},
        {"type": "answer", "answers": {"second": {"answers": ["two"]}}},
    ]
    answered = of_type(daemon, run_id, "question_answered")
    assert [e["request_id"] for e in answered] == ["q1", "q2"]
    assert all(e["answered_by"].startswith("orca-cli") for e in answered)


def test_a_new_question_replaces_a_pending_one(daemon: DaemonProcess, tmp_path: Path) -> None:
    go = tmp_path / "go"
    run_id = start(
        daemon,
        {
            "steps": [
                {"ask_nowait": [q("old", "Old?")]},
                {"wait_file": str(go)},
                {"ask": [q("new", "New?")]},
                DONE,
            ]
        },
    )
    wait_pending(daemon, run_id, "q1")
    go.touch()
    pending = wait_pending(daemon, run_id, "q2")
    assert [x.id for x in pending.questions] == ["new"]
    assert refused(daemon, run_id, answers={"old": ["x"]}).code == "bad_request"
    assert refused(daemon, run_id, text="x", request_id="q1").code == "invalid_state"
    assert answer(daemon, run_id, text="yes").request_id == "q2"
    assert daemon.wait_for_run(run_id).status == "completed"
    [cleared] = of_type(daemon, run_id, "question_cleared")
    assert cleared["request_id"] == "q1"
    assert received(daemon, run_id) == [
        {"type": "answer", "answers": {"new": {"answers": ["yes"]}}}
    ]
