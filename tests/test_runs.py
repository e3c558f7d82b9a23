"""Runs with command agents against a real orcad over its real socket."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DaemonProcess, agent, events_of, output_of, process_exists, wait_until
from support.runs import start

from orca_client.client import RequestFailed
from orca_client.wire import Cancel, CancelResult, StartRun


@pytest.fixture
def log_env(any_log_env: dict[str, str]) -> dict[str, str]:
    """Every test here runs on the SQLite log and on a PostgreSQL one."""
    return any_log_env


def test_run_completes_when_the_agent_reports_done(daemon: DaemonProcess) -> None:
    started = start(daemon, agent("reviewer.py"), prompt="look at it", title="review")
    run = daemon.wait_for_run(started.run_id)
    assert run.status == "completed"
    assert run.title == "review"
    session = daemon.status(started.run_id).sessions[0]
    assert session.status == "completed"
    assert session.summary is not None and session.summary.startswith("reviewed ")
    assert session.exit_code == 0
    assert "reviewing for: look at it\n" in output_of(daemon, started.run_id)
    assert "a plain line is output too\n" in output_of(daemon, started.run_id)
    assert "progress notes can go to stderr\n" in output_of(daemon, started.run_id, "stderr")
    types = [e["type"] for e in events_of(daemon, started.run_id)]
    assert types[:3] == ["run_created", "session_created", "session_started"]
    assert types[-2:] == ["session_terminated", "run_status_changed"]


def test_run_fails_when_the_agent_reports_failure_even_with_exit_status_0(
    daemon: DaemonProcess,
) -> None:
    started = start(daemon, agent("failing.py"))
    run = daemon.wait_for_run(started.run_id)
    assert run.status == "failed"
    session = daemon.status(started.run_id).sessions[0]
    assert session.exit_code == 0
    assert session.reason == "1 test failed: test_parse"


def test_result_line_decides_over_a_nonzero_exit(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon(extra_env={"EXIT_CODE": "7"}).start()
    started = start(
        daemon, agent("scripted.py", '{"type":"result","outcome":"done","summary":"ok"}')
    )
    assert daemon.wait_for_run(started.run_id).status == "completed"
    assert daemon.status(started.run_id).sessions[0].exit_code == 7


@pytest.mark.parametrize(
    ("exit_code", "status", "reason"),
    [
        ("0", "completed", "exited with status 0 without a result line"),
        ("3", "failed", "exited with status 3 without a result line"),
    ],
)
def test_without_a_result_line_the_exit_status_decides(
    make_daemon: Callable[..., DaemonProcess], exit_code: str, status: str, reason: str
) -> None:
    daemon = make_daemon(extra_env={"EXIT_CODE": exit_code}).start()
    started = start(daemon, agent("scripted.py", "just text", '{"type":"unknown"}', "[1, 2]"))
    run = daemon.wait_for_run(started.run_id)
    assert (run.status, run.reason) == (status, reason)
    assert output_of(daemon, started.run_id) == 'just text\n{"type":"unknown"}\n[1, 2]\n'


def test_agent_gets_prompt_on_stdin_and_context_in_env(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    started = start(daemon, agent("echo_context.py"), prompt='say "hi"\nthen {stop}', cwd=tmp_path)
    daemon.wait_for_run(started.run_id)
    context = json.loads(output_of(daemon, started.run_id))
    assert json.loads(context["stdin"]) == {"type": "prompt", "text": 'say "hi"\nthen {stop}'}
    assert context["prompt_env"] == 'say "hi"\nthen {stop}'
    assert context["run_id"] == started.run_id
    assert context["session_id"] == started.session_id
    assert os.path.realpath(context["cwd"]) == os.path.realpath(tmp_path)
    assert context["pgid_is_own"] is True


def test_chatty_output_is_coalesced_into_few_events_and_nothing_is_lost(
    daemon: DaemonProcess,
) -> None:
    count = 5000
    started = start(daemon, agent("chatty.py", str(count)))
    daemon.wait_for_run(started.run_id)
    outputs = [e for e in events_of(daemon, started.run_id) if e["type"] == "output_appended"]
    assert "".join(str(e["text"]) for e in outputs) == "".join(f"{i}\n" for i in range(count))
    assert len(outputs) < count / 20


def test_a_huge_line_is_kept_in_bounded_pieces(daemon: DaemonProcess) -> None:
    size = 3 * 1024 * 1024
    started = start(daemon, agent("huge_line.py", str(size)))
    assert daemon.wait_for_run(started.run_id).status == "completed"
    outputs = [e for e in events_of(daemon, started.run_id) if e["type"] == "output_appended"]
    assert "".join(str(e["text"]) for e in outputs) == "x" * size + "\nafter\n"
    assert max(len(str(e["text"])) for e in outputs) <= 16_384


def test_cancel_stops_the_process_group_and_is_final(daemon: DaemonProcess) -> None:
    started = start(daemon, agent("long_task.py", "60"))
    daemon.wait_for_run(started.run_id, frozenset({"running"}))
    pid = daemon.status(started.run_id).sessions[0].pid
    assert pid is not None
    with daemon.client() as client:
        result: CancelResult = client.request(Cancel(run_id=started.run_id, reason="not needed"))
        assert (result.status, result.already_terminal) == ("cancelled", False)
        again: CancelResult = client.request(Cancel(run_id=started.run_id))
        assert (again.status, again.already_terminal) == ("cancelled", True)
    wait_until(lambda: not process_exists(pid))
    status = daemon.status(started.run_id)
    assert status.runs[0].status == "cancelled"
    assert status.runs[0].reason == "not needed"
    assert status.sessions[0].status == "cancelled"
    terminal = [e for e in events_of(daemon, started.run_id) if e["type"] == "session_terminated"]
    assert len(terminal) == 1


def test_cancel_kills_an_agent_that_ignores_sigterm_and_stays_cancelled(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    orca_home.mkdir(mode=0o700, parents=True)
    (orca_home / "config.toml").write_text("[daemon]\ncancel_grace_seconds = 0.5\n")
    daemon = make_daemon().start()
    started = start(daemon, agent("stubborn.py"))
    wait_until(lambda: output_of(daemon, started.run_id).startswith("pid "))
    pid = int(output_of(daemon, started.run_id).split()[1])
    with daemon.client() as client:
        client.request(Cancel(run_id=started.run_id))
    wait_until(lambda: not process_exists(pid))
    wait_until(lambda: "got SIGTERM" in output_of(daemon, started.run_id))
    status = daemon.status(started.run_id)
    assert status.runs[0].status == "cancelled"
    assert status.sessions[0].status == "cancelled"
    assert status.sessions[0].summary is None


def test_cancel_unknown_run_is_not_found(daemon: DaemonProcess) -> None:
    with daemon.client() as client, pytest.raises(RequestFailed) as error:
        client.request(Cancel(run_id="doesnotexist"))
    assert error.value.code == "not_found"


def test_a_program_that_cannot_start_fails_the_session(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    not_executable = tmp_path / "agent.txt"
    not_executable.write_text("hello")
    started = start(daemon, [str(not_executable)])
    run = daemon.wait_for_run(started.run_id)
    assert run.status == "failed"
    assert run.reason is not None and "could not start" in run.reason


@pytest.mark.parametrize(
    ("command", "cwd", "message"),
    [
        ([], "/tmp", "command must name a program"),
        (["true"], "relative/dir", "absolute path"),
        (["true"], "/no/such/dir", "is not a directory"),
    ],
)
def test_invalid_run_requests_are_refused(
    daemon: DaemonProcess, command: list[str], cwd: str, message: str
) -> None:
    with daemon.client() as client, pytest.raises(RequestFailed) as error:
        client.request(StartRun(command=command, cwd=cwd))
    assert error.value.code == "bad_request"
    assert message in str(error.value)
    assert daemon.status().runs == []


def test_status_accepts_a_unique_run_id_prefix(daemon: DaemonProcess) -> None:
    started = start(daemon, agent("reviewer.py"))
    assert daemon.status(started.run_id[:6]).runs[0].run_id == started.run_id


def test_a_prompt_too_long_for_the_environment_goes_on_stdin_only(daemon: DaemonProcess) -> None:
    prompt = "p" * 200_000
    started = start(daemon, agent("echo_context.py"), prompt=prompt)
    assert daemon.wait_for_run(started.run_id).status == "completed"
    context = json.loads(output_of(daemon, started.run_id))
    assert json.loads(context["stdin"])["text"] == prompt
    assert context["prompt_env"] == ""
