"""What a person at a terminal sees of a run's progress, driving the real `orca` on a pty against
a real orcad: waiting commands that say what happens and what they wait for, a status table
that fits the terminal, a run's elapsed time and last output line, labelled fan-out logs, a
failed verify command's output, and who answered a question."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import AGENTS, EXAMPLES, DaemonProcess, wait_until
from support.terminal import Terminal

from orca_client.events import RunCreated, SessionCreated
from orca_client.plan import parse_plan
from orca_client.render_events import OutputLabels, RunProgress, decode
from orca_client.terminal_text import cells, clip_words
from orca_client.wire import Cancel, EventRecord, StartDebug, StartPlan, StartRun

QUESTIONS = [
    {
        "id": "db",
        "header": "Database",
        "question": "Which database?",
        "options": [{"label": "postgres"}, {"label": "sqlite"}],
    },
    {"id": "token", "question": "Paste the API token", "isSecret": True},
]
ASKER = r"""
import json, sys
sys.stdin.readline()
print(json.dumps({"type": "question", "questions": json.loads(sys.argv[1])}), flush=True)
answer = json.loads(sys.stdin.readline())["answers"]
print("using " + answer["db"]["answers"][0], flush=True)
print(json.dumps({"type": "result", "outcome": "done"}), flush=True)
"""
SECRET = "hunter2-not-for-logs"


def fan_agent(**script: Any) -> list[str]:
    """tests/agents/fan_agent.py with this script (see its docstring)."""
    return [sys.executable, str(AGENTS / "fan_agent.py"), json.dumps(script)]


def configure(home: Path, agents: dict[str, list[str]]) -> None:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = "".join(
        f"[agents.{name}]\ncommand = {json.dumps(argv)}\n" for name, argv in agents.items()
    )
    (home / "config.toml").write_text(text)


@pytest.fixture
def go(tmp_path: Path) -> Path:
    """The file whose creation lets held agents finish."""
    return tmp_path / "go"


@pytest.fixture
def configured(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, go: Path
) -> DaemonProcess:
    """orcad with agents `ok` (says two lines, done), `bad` (fails) and `held` (says a line,
    then waits for `go`)."""
    configure(
        orca_home,
        {
            "ok": fan_agent(say=["looked at cache.py", "the TTL is never refreshed"]),
            "bad": fan_agent(say=["tests crashed"], outcome="failed", summary="tests crashed"),
            "held": fan_agent(say=["held: waiting"], wait_file=str(go)),
        },
    )
    return make_daemon().start()


def request(daemon: DaemonProcess, message: Any) -> Any:
    with daemon.client() as client:
        return client.request(message)


def started_run(screen: str) -> str:
    found = re.search(r"orca: run ([0-9a-f]{12}) started", screen)
    assert found is not None, screen
    return found.group(1)


def orca(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    result = daemon.orca(*args)
    assert result.returncode == 0, result.stderr
    return result


# --------------------------------------------------------------------------- waiting commands


def test_a_waiting_run_names_its_questions_and_asks_them_on_the_terminal(
    daemon: DaemonProcess,
) -> None:
    argv = [sys.executable, "-c", ASKER, json.dumps(QUESTIONS)]
    with Terminal(daemon.env, "run", "--wait", "--cwd", str(daemon.home), "--", *argv) as term:
        screen = term.read_until("press Enter to answer here")
        run_id = started_run(screen)
        assert screen.index(f"run {run_id} started") < screen.index("waiting for an answer")
        assert (
            f"waiting for an answer: db, token [secret] — answer with: orca answer {run_id}   "
            "(asks each question here; secrets unechoed)"
        ) in screen
        term.type("\n")
        term.read_until("2. sqlite")
        term.type("2\n")
        term.read_until("not echoed")  # typed before, it would be echoed, then dropped
        term.type(SECRET + "\n")
        screen = term.read_until(f"run {run_id} completed")
        assert term.wait() == 0
    assert "answered by orca-cli" in screen and "db=sqlite, token=(secret)" in screen
    assert "using sqlite" in screen and SECRET not in screen


def test_a_question_offered_on_the_terminal_may_be_answered_elsewhere(
    daemon: DaemonProcess,
) -> None:
    argv = [sys.executable, str(EXAMPLES / "asker.py")]
    args = ["run", "--wait", "--prompt", "p", "--cwd", str(daemon.home), "--", *argv]
    with Terminal(daemon.env, *args) as term:
        screen = term.read_until("press Enter to answer here")
        run_id = started_run(screen)
        assert (
            f"waiting for an answer: runtime — answer with: orca answer {run_id} 'TEXT'"
        ) in screen
        orca(daemon, "answer", run_id, "python3.13")
        screen = term.read_until(f"run {run_id} completed")
        assert term.wait() == 0
    assert "answered by orca-cli" in screen and "runtime=python3.13" in screen


def test_ctrl_d_leaves_the_question_to_orca_answer_and_ctrl_c_stops_waiting(
    daemon: DaemonProcess,
) -> None:
    argv = [sys.executable, str(EXAMPLES / "asker.py")]
    args = ["run", "--wait", "--prompt", "p", "--cwd", str(daemon.home), "--", *argv]
    with Terminal(daemon.env, *args) as term:
        run_id = started_run(term.read_until("press Enter to answer here"))
        term.type("\x04")
        term.read_until("not asking here; the run waits for `orca answer`")
        term.type("\x03")
        screen = term.read_until("stopped waiting")
        assert term.wait() == 130
    assert f"stopped waiting; run {run_id} goes on (cancel it with: orca cancel {run_id})" in screen
    assert "Traceback" not in screen
    assert daemon.status(run_id).runs[0].status == "waiting_for_answer"


def test_a_waiting_run_in_a_background_job_only_says_what_it_waits_for(
    daemon: DaemonProcess,
) -> None:
    """A background job that touched the terminal would be stopped (SIGTTOU) by job control."""
    orca = shlex.join([sys.executable, "-m", "orca_client.cli"])
    asker = shlex.join([sys.executable, str(EXAMPLES / "asker.py")])
    script = f"{orca} run --wait --prompt p -- {asker} & wait $!; echo exit=$?"
    with Terminal(daemon.env, command=["sh", "-m", "-c", script]) as term:
        run_id = started_run(term.read_until("waiting for an answer: runtime"))
        daemon.orca("answer", run_id, "python3.11")
        screen = term.read_until("exit=")
        term.wait()
    assert f"run {run_id} completed" in screen and "exit=0" in screen
    assert "press Enter" not in screen


def test_a_waiting_run_without_a_keyboard_says_what_it_waits_for(daemon: DaemonProcess) -> None:
    argv = [sys.executable, "-c", ASKER, json.dumps(QUESTIONS)]
    args = ["run", "--wait", "--cwd", str(daemon.home), "--", *argv]
    with Terminal(daemon.env, *args, keyboard=False) as term:
        screen = term.read_until("waiting for an answer")
        run_id = started_run(screen)
        orca(daemon, "answer", run_id, "--json", json.dumps({"db": "postgres", "token": SECRET}))
        screen = term.read_until(f"run {run_id} completed")
        assert term.wait() == 0
    assert "press Enter" not in screen and "db=postgres, token=(secret)" in screen
    assert "using postgres" in screen


def test_debug_wait_prints_the_run_id_at_once_then_each_worker(
    configured: DaemonProcess, go: Path
) -> None:
    args = ["debug", "--agents", "ok,bad,held", "--cwd", str(configured.home), "--wait", "why?"]
    with Terminal(configured.env, *args) as term:
        screen = term.read_until("started: 3 workers (ok, bad, held)")
        run_id = started_run(screen)
        screen = term.read_until("worker 3 (held) started")
        screen = term.read_until("(2/3 workers ended)")  # the two end in either order
        assert "worker 1 (ok) completed" in screen
        assert "worker 2 (bad) failed: tests crashed" in screen
        assert configured.status(run_id).runs[0].status == "running"
        go.touch()
        screen = term.read_until(f"run {run_id} completed")
        assert term.wait() == 0
    assert "worker 3 (held) completed (3/3 workers ended)" in screen
    assert "orchestrator 4 (synthesizer) started" in screen

    logs = orca(configured, "logs", run_id).stdout.splitlines()
    assert "[1 ok] looked at cache.py" in logs and "[1 ok] the TTL is never refreshed" in logs
    assert "[2 bad] tests crashed" in logs and "[3 held] held: waiting" in logs


def test_plan_wait_prints_each_task_and_logs_show_a_failed_verify(
    configured: DaemonProcess, tmp_path: Path
) -> None:
    plan = {
        "title": "build then check",
        "tasks": [
            {
                "id": "build",
                "prompt": "build it",
                "agent": "ok",
                "max_retries": 1,
                "verify": [
                    "test -f built || { touch built; echo 'flaky: first build fails'; exit 3; }"
                ],
            },
            {"id": "check", "prompt": "check it", "agent": "ok", "depends_on": ["build"]},
        ],
    }
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    args = ["plan", "run", str(plan_file), "--cwd", str(tmp_path), "--wait"]
    with Terminal(configured.env, *args) as term:
        screen = term.read_until("started: a plan of 2 tasks")
        run_id = started_run(screen)
        screen = term.read_until(f"run {run_id} completed")
        assert term.wait() == 0
    lines = [line.removeprefix("orca: ") for line in screen.splitlines()]
    progress = [
        "task build started (attempt 1)",
        "task build: verify failed (exit status 3): test -f built",
        "task build retrying: attempt 1: verify command failed",
        "task build started (attempt 2)",
        "task build done (1/2 done)",
        "task check started (attempt 1)",
        "task check done (2/2 done)",
    ]
    shown = [next(i for i, line in enumerate(lines) if line.startswith(p)) for p in progress]
    assert shown == sorted(shown), screen

    logs = orca(configured, "logs", run_id)
    assert (
        "orca: task build attempt 1: verify command failed (exit status 3): test -f built"
        in logs.stderr
    )
    assert "flaky: first build fails\n" in logs.stderr
    assert "[build.2 ok] looked at cache.py" in logs.stdout.splitlines()


# --------------------------------------------------------------------------- orca status


def test_status_fits_80_columns_with_long_titles_fan_outs_and_plans(
    configured: DaemonProcess, go: Path
) -> None:
    cwd = str(configured.home)
    long = "make the flaky integration tests for the payment service pass again on CI"
    single = request(
        configured, StartRun(command=fan_agent(wait_file=str(go)), cwd=cwd, title=long)
    )
    asking = request(
        configured,
        StartRun(
            command=[sys.executable, str(EXAMPLES / "asker.py")], cwd=cwd, title="ask", prompt="p"
        ),
    )
    fanout = request(configured, StartDebug(cwd=cwd, agents=["ok", "held", "held"], prompt=long))
    tasks = [
        {"id": "one", "prompt": "p", "agent": "ok"},
        {"id": "two", "prompt": "p", "agent": "held"},
        {"id": "three", "prompt": "p", "agent": "held", "depends_on": ["two"]},
    ]
    document = parse_plan(json.dumps({"title": long, "tasks": tasks}))
    plan = request(configured, StartPlan(cwd=cwd, plan=document, title=f"plan: {long}"))
    wait_until(
        lambda: (
            configured.status(asking.run_id).runs[0].status == "waiting_for_answer"
            and configured.status(plan.run_id).runs[0].tasks[0].status == "done"
            and configured.status(fanout.run_id).sessions[0].status == "completed"
        ),
        "a question, a task done and a worker done",
    )
    try:
        with Terminal(configured.env, "status", columns=80) as term:
            assert term.wait() == 0
            narrow = term.screen
        with Terminal(configured.env, "status", columns=160) as term:
            assert term.wait() == 0
            wide = term.screen
    finally:
        for run in (single, asking, fanout, plan):
            request(configured, Cancel(run_id=run.run_id))

    rows = narrow.splitlines()
    assert all(cells(row) <= 80 for row in rows), narrow
    assert rows[0].split() == ["RUN", "STATUS", "ACTIVITY", "TITLE"]
    for run in (single, asking, fanout, plan):
        assert any(row.startswith(run.run_id) for row in rows), narrow
    titles = [
        row.split(maxsplit=4)[4] for row in rows if row.startswith((single.run_id, plan.run_id))
    ]
    for title, whole in zip(titles, [long, f"plan: {long}"], strict=True):
        assert title.endswith("…") and whole.startswith(title[:-1]), title
        assert whole[len(title) - 1] == " ", title  # cut at a word boundary
    assert "  · 1/3 workers done, 2 running" in rows
    assert "  · 1/3 done, 1 running" in rows
    assert any(row.startswith("  ↳ runtime: Which runtime") for row in rows)

    header = wide.splitlines()[0].split()
    assert header == ["RUN", "STATUS", "ACTIVITY", "PROGRESS", "TITLE"]
    fan_row = next(row for row in wide.splitlines() if row.startswith(fanout.run_id))
    assert "1/3 workers done, 2 running" in fan_row and long[:40] in fan_row


def test_status_of_a_run_shows_elapsed_time_and_its_last_output_line(
    daemon: DaemonProcess, go: Path
) -> None:
    say = ["compiling", "compiling module 3 of 10 \x1b[31mred\x1b[0m"]
    started = request(
        daemon, StartRun(command=fan_agent(say=say, wait_file=str(go)), cwd=str(daemon.home))
    )
    wait_until(
        lambda: daemon.status(started.run_id).sessions[0].last_output_line is not None,
        "the agent's output",
    )
    with Terminal(daemon.env, "status", started.run_id, columns=80) as term:
        assert term.wait() == 0
        screen = term.screen
    assert re.search(r"^elapsed  \d+s, last activity \d+s ago$", screen, re.M), screen
    assert re.search(r"^  elapsed  \d+s, last activity \d+s ago$", screen, re.M), screen
    assert "\n  latest   compiling module 3 of 10 ␛[31mred␛[0m\n" in screen
    assert "\x1b" not in screen

    go.touch()
    followed = orca(daemon, "logs", started.run_id, "--follow")
    assert followed.stdout.startswith("compiling\ncompiling module 3")  # one session: no label
    assert f"run {started.run_id} completed" in followed.stderr
    detail = orca(daemon, "status", started.run_id).stdout
    assert re.search(r"^took     \d+s, ended \d+s ago$", detail, re.M) and "latest" not in detail


# --------------------------------------------------------------------------- orca watch


def test_watch_shows_who_answered_and_what_but_never_a_secret(daemon: DaemonProcess) -> None:
    argv = [sys.executable, "-c", ASKER, json.dumps(QUESTIONS)]
    run_id = orca(daemon, "run", "--", *argv).stdout.strip()
    daemon.wait_for_run(run_id, frozenset({"waiting_for_answer"}))
    with Terminal(daemon.env, "watch", run_id, "--after", "0") as term:
        term.read_until("question_asked")
        orca(daemon, "answer", run_id, "--json", json.dumps({"db": "sqlite", "token": SECRET}))
        screen = term.read_until("completed")
    line = next(line for line in screen.splitlines() if "question_answered" in line)
    assert line.endswith("db=sqlite, token=(secret)") and "by orca-cli:" in line
    assert SECRET not in screen


# --------------------------------------------------------------------------- pure rendering


def test_titles_are_cut_at_a_word_boundary_in_terminal_cells() -> None:
    assert clip_words("fix the parser", 20) == "fix the parser"
    assert clip_words("fix the flaky parser test", 20) == "fix the flaky…"
    assert clip_words("x" * 30, 10) == "x" * 9 + "…"
    assert clip_words("修复解析器测试 again", 10) == "修复解析…"
    assert cells(clip_words("修复解析器测试 again", 10)) <= 10


def test_output_labels_keep_each_session_on_its_own_lines() -> None:
    labels = OutputLabels()
    labels.learn(RunCreated(run_id="r", title="t", cwd="/", kind="fanout"))
    for number, agent in ((1, "codex"), (2, "claude")):
        labels.learn(
            SessionCreated(
                run_id="r", session_id=f"r.{number}", agent=agent, command=[agent], cwd="/"
            )
        )
    shown = labels.label("r.1", "stdout", "a\n\nhalf")
    shown += labels.label("r.2", "stdout", "other\n")
    shown += labels.label("r.1", "stdout", " done\n")
    assert shown == "[1 codex] a\n[1 codex]\n[1 codex] half\n[2 claude] other\n[1 codex]  done\n"
    single = OutputLabels()
    single.learn(RunCreated(run_id="r", title="t", cwd="/", kind="single"))
    assert single.label("r.1", "stdout", "a\nb") == "a\nb"


def test_progress_names_each_waiting_request_when_several_sessions_ask() -> None:
    progress = RunProgress("r")

    def told(position: int, event: dict[str, Any]) -> list[str]:
        body = msgspec.json.encode({"run_id": "r", **event})
        record = EventRecord(position, "run-r", position, 0.0, 1, msgspec.Raw(body))
        return progress.lines(decode(record))

    told(1, {"type": "run_created", "title": "t", "cwd": "/", "kind": "fanout"})
    question = {"id": "q", "question": "Go?"}
    asked = {"type": "question_asked", "request_id": "q1", "questions": [question]}
    told(2, {**asked, "session_id": "r.1"})  # each session numbers its requests: both ask q1
    [line] = told(3, {**asked, "session_id": "r.2"})
    assert line == (
        "waiting for an answer: q — answer with: orca answer r --session 1 'TEXT'; "
        "q — answer with: orca answer r --session 2 'TEXT'"
    )
    answered = {"type": "question_answered", "session_id": "r.1", "request_id": "q1"}
    assert told(4, {**answered, "answered_by": "me", "answers": {"q": ["yes"]}}) == [
        "answered by me: q=yes"
    ]
    assert progress.waiting_line() == "waiting for an answer: q — answer with: orca answer r 'TEXT'"


def test_an_event_this_client_does_not_know_is_still_shown_by_its_type() -> None:
    """A newer orcad may record an event type, or a field, this client does not know: `orca
    watch` shows it by its type and whose it is, and `--wait` goes on."""
    from orca_client.render_events import event_line

    def record(body: dict[str, Any]) -> EventRecord:
        return EventRecord(7, "run-r", 7, 0.0, 1, msgspec.Raw(msgspec.json.encode(body)))

    new_type = record({"type": "run_paused", "run_id": "r", "until": 5})
    new_field = record(
        {"type": "session_started", "run_id": "r", "session_id": "r.1", "pid": 1, "x": 2}
    )
    for shown in (new_type, new_field):
        assert RunProgress("r").lines(decode(shown)) == []
    assert event_line(new_type, decode(new_type)).split()[2:] == ["r", "run_paused"]
    assert event_line(new_field, decode(new_field)).split()[2:] == ["r.1", "session_started"]
