"""`orca answer RUN_ID` asking on a real terminal (a pty that is its controlling terminal): an
empty Enter is refused and asked again, a question that allows only its options takes only
those, Ctrl-D and Ctrl-C end it cleanly with nothing sent; `orca status` says how to answer."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest
from conftest import DaemonProcess, events_of, output_of
from support.terminal import CTRL_C, CTRL_D, Terminal

from orca_client.answering import choose
from orca_client.views import Question, QuestionOption
from orca_client.wire import RunStarted, StartRun

DB = {
    "id": "db",
    "header": "Database",
    "question": "Which database?",
    "options": [{"label": "postgres", "description": "prod"}, {"label": "sqlite"}],
    "isOther": False,
}
TOKEN = {"id": "token", "header": "Token", "question": "Paste the API token", "isSecret": True}

ASKER = r"""
import hashlib, json, sys
sys.stdin.readline()
print(json.dumps({"type": "question", "questions": json.loads(sys.argv[1])}), flush=True)
answer = json.loads(sys.stdin.readline())["answers"]
values = {qid: body["answers"][0] for qid, body in answer.items()}
if "token" in values:
    values["token"] = hashlib.sha256(values["token"].encode()).hexdigest()
print(json.dumps({"type": "output", "text": json.dumps(values, sort_keys=True) + "\n"}), flush=True)
print(json.dumps({"type": "result", "outcome": "done"}), flush=True)
"""


def waiting_run(daemon: DaemonProcess, questions: list[dict[str, object]]) -> str:
    with daemon.client() as client:
        started: RunStarted = client.request(
            StartRun(
                command=[sys.executable, "-c", ASKER, json.dumps(questions)],
                cwd=str(daemon.home),
            )
        )
    daemon.wait_for_run(started.run_id, frozenset({"waiting_for_answer"}))
    return started.run_id


def answered(daemon: DaemonProcess, run_id: str) -> bool:
    return any(e["type"] == "question_answered" for e in events_of(daemon, run_id))


def test_an_empty_answer_or_one_that_is_not_an_option_is_asked_again(
    daemon: DaemonProcess,
) -> None:
    run_id = waiting_run(daemon, [DB, TOKEN])
    terminal = Terminal(daemon.env, "answer", run_id)
    try:
        terminal.read_until("number or option> ")
        terminal.type("\n")
        shown = terminal.read_until("number or option> ")
        assert "an empty answer is not accepted" in shown
        assert "--json" in shown  # how to send an empty answer on purpose
        terminal.type("mysql\n")
        shown = terminal.read_until("number or option> ")
        assert "db takes one of its options, by number or label: 1. postgres, 2. sqlite" in shown
        terminal.type("SQLite\n")
        terminal.read_until("not echoed")
        terminal.type("\n")  # an empty Enter at the secret prompt: asked again, not sent
        shown = terminal.read_until("not echoed")
        assert "an empty answer is not accepted" in shown
        terminal.type("s3cret\n")
        code = terminal.wait()
        screen = terminal.screen
    finally:
        terminal.close()
    assert code == 0, screen
    assert "answered request q1 of run" in screen and "s3cret" not in screen
    daemon.wait_for_run(run_id)
    digest = hashlib.sha256(b"s3cret").hexdigest()
    assert json.loads(output_of(daemon, run_id)) == {"db": "sqlite", "token": digest}


@pytest.mark.parametrize(
    ("key", "code", "says"),
    [
        (CTRL_D, 2, "no answer given (end of input); nothing was sent"),
        (CTRL_C, 130, "interrupted; nothing was sent"),
    ],
    ids=["ctrl-d", "ctrl-c"],
)
@pytest.mark.parametrize("at_secret", [False, True], ids=["first-prompt", "secret-prompt"])
def test_ctrl_d_and_ctrl_c_end_the_prompt_cleanly_with_nothing_sent(
    daemon: DaemonProcess, key: str, code: int, says: str, at_secret: bool
) -> None:
    run_id = waiting_run(daemon, [DB, TOKEN])
    terminal = Terminal(daemon.env, "answer", run_id)
    try:
        terminal.read_until("number or option> ")
        if at_secret:
            terminal.type("1\n")
            terminal.read_until("not echoed")
        terminal.type(key)
        status = terminal.wait()
        screen = terminal.screen
    finally:
        terminal.close()
    assert status == code, screen
    assert f"orca answer: {says}" in screen
    assert "Traceback" not in screen
    assert daemon.status(run_id).runs[0].status == "waiting_for_answer"
    assert not answered(daemon, run_id)


def test_status_shows_the_answer_command_that_works_for_the_questions_pending(
    daemon: DaemonProcess,
) -> None:
    plain = {"id": "color", "question": "Which color?", "isOther": True}
    several = waiting_run(daemon, [DB, plain])
    secret = waiting_run(daemon, [TOKEN])
    one = waiting_run(daemon, [plain])
    table = daemon.orca("status").stdout
    assert f"answer: orca answer {one} 'TEXT'" in table
    assert f"answer: orca answer {secret}   (asks each question here; secrets unechoed)" in table
    assert (
        f"answer: orca answer {several}   (asks each in turn), "
        """or --json '{"db": "…", "color": "…"}'"""
    ) in table
    assert f"orca answer {several} 'TEXT'" not in table
    # The --json form it shows is one that orcad takes.
    sent = daemon.orca("answer", several, "--json", '{"db": "postgres", "color": "red"}')
    assert sent.returncode == 0, sent.stderr
    daemon.wait_for_run(several)
    assert json.loads(output_of(daemon, several)) == {"color": "red", "db": "postgres"}


def test_status_names_request_ids_and_question_ids_apart(daemon: DaemonProcess) -> None:
    run_id = waiting_run(daemon, [DB, TOKEN])
    detail = daemon.orca("status", run_id).stdout
    assert "waiting for an answer (request id q1):" in detail
    assert "question db  Database: Which database?" in detail
    assert "question token [secret]  Token: Paste the API token" in detail


def question(is_other: bool) -> Question:
    options = [QuestionOption("Postgres"), QuestionOption("SQLite")]
    return Question(id="db", question="?", options=options, is_other=is_other)


def test_choose_takes_numbers_and_labels_and_text_only_where_other_answers_are_allowed() -> None:
    only = question(is_other=False)
    assert choose(only, "2") == ("SQLite", "")
    assert choose(only, " postgres ") == ("Postgres", "")
    assert choose(only, "3")[0] is None  # no option 3
    assert choose(only, "mysql")[0] is None
    other = question(is_other=True)
    assert choose(other, "3") == ("3", "")  # a number that is no option is text
    assert choose(other, "my sql ") == ("my sql ", "")  # free text, verbatim
    assert choose(other, "  ")[0] is None
    free = Question(id="why", question="Why?")
    assert choose(free, "because") == ("because", "")
    assert choose(free, "")[0] is None
