"""The orchestration commands of `orca` as a user runs them: debug, orchestrate, plan, doctor,
clean, status --tree, cancel --session, run over configured repositories."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import EXAMPLES, DaemonProcess, events_of, wait_until

ORCHESTRATION_COMMANDS = [["debug"], ["orchestrate"], ["plan"], ["plan", "run"], ["doctor"]]


def _config(home: Path, extra: str = "") -> None:
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    python = sys.executable
    (home / "config.toml").write_text(
        f"""
[agents.reviewer]
command = ["{python}", "{EXAMPLES / "reviewer.py"}"]
[agents.tester]
command = ["{python}", "{EXAMPLES / "failing.py"}"]
[agents.asker]
command = ["{python}", "{EXAMPLES / "asker.py"}"]
[agents.slow]
command = ["{python}", "{EXAMPLES / "long_task.py"}", "600"]
{extra}
"""
    )


@pytest.fixture
def configured(make_daemon: Callable[..., DaemonProcess], orca_home: Path) -> DaemonProcess:
    _config(orca_home)
    return make_daemon().start()


@pytest.mark.parametrize("args", ORCHESTRATION_COMMANDS)
def test_orchestration_commands_explain_themselves(
    configured: DaemonProcess, args: list[str]
) -> None:
    result = configured.orca(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: orca" in result.stdout


def test_debug_answers_and_prints_the_synthesis_path(configured: DaemonProcess) -> None:
    started = configured.orca("debug", "--agents", "reviewer,tester,asker", "--json", "why?")
    assert started.returncode == 0, started.stderr
    reply = json.loads(started.stdout)
    run_id = reply["run_id"]
    assert len(reply["session_ids"]) == 3
    configured.wait_for_run(run_id, frozenset({"waiting_for_answer"}))
    shown = configured.orca("status", run_id)
    assert "orchestrator  starts when every worker has ended" in shown.stdout
    answered = configured.orca("answer", run_id, "python3.11")
    assert answered.returncode == 0, answered.stderr
    run = configured.wait_for_run(run_id)
    assert run.status == "completed"
    shown = configured.orca("status", run_id)
    assert f"orchestrator  {run.orchestrator_session_id} (completed)" in shown.stdout
    assert f"task file     {reply['task_file']}" in shown.stdout
    synthesis = Path(reply["task_file"]).read_text()
    assert "Synthesis of 3 agents" in synthesis
    assert "1 test failed: test_parse" in synthesis
    again = configured.orca("orchestrate", run_id)
    assert again.returncode == 0
    assert f"already has its orchestrator: {run.orchestrator_session_id}" in again.stdout


def test_two_sessions_waiting_with_the_same_request_id_are_answered_each_by_its_session(
    configured: DaemonProcess,
) -> None:
    """Each session numbers its requests on its own, so two askers of a fan-out both wait on
    request `q1`: `--session` picks one (its full id, or the part after the run id), with the
    option before the answer or after it, as `orca status` and the progress lines say."""
    started = configured.orca("debug", "--agents", "asker,asker", "--json", "which runtime?")
    reply = json.loads(started.stdout)
    run_id, first, second = reply["run_id"], *reply["session_ids"]
    wait_until(
        lambda: all(s.pending is not None for s in configured.status(run_id).sessions),
        "both askers waiting",
    )
    assert {s.pending.request_id for s in configured.status(run_id).sessions if s.pending} == {"q1"}
    ambiguous = configured.orca("answer", run_id, "python3.11")
    assert ambiguous.returncode == 1
    assert (
        f"pick one by its session (session_id; orca answer --session): {first} (request q1), "
        f"{second} (request q1)"
    ) in ambiguous.stderr
    one = configured.orca("answer", run_id, "--session", second.removeprefix(f"{run_id}."), "3.13")
    assert one.returncode == 0, one.stderr
    other = configured.orca("answer", run_id, "python3.11", "--session", first)
    assert other.returncode == 0, other.stderr
    assert configured.wait_for_run(run_id).status == "completed"
    answered = {
        e["session_id"]: e["answers"]
        for e in events_of(configured, run_id)
        if e["type"] == "question_answered"
    }
    assert answered == {first: {"runtime": ["python3.11"]}, second: {"runtime": ["3.13"]}}


def test_cancel_one_worker_then_orchestrate_by_hand(configured: DaemonProcess) -> None:
    started = configured.orca("debug", "--agents", "slow,slow", "--json", "take your time")
    reply = json.loads(started.stdout)
    run_id, first, second = reply["run_id"], *reply["session_ids"]
    wait_until(
        lambda: all(s.status == "running" for s in configured.status(run_id).sessions),
        "both workers running",
    )
    cancelled = configured.orca("cancel", run_id, "--session", first)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"session {first} cancelled" in cancelled.stdout
    assert configured.status(run_id).runs[0].status == "running"
    triggered = configured.orca("orchestrate", run_id, "--json")
    assert triggered.returncode == 0, triggered.stderr
    result = json.loads(triggered.stdout)
    assert result["cancelled_workers"] == [second]
    assert result["already_triggered"] is False
    assert configured.wait_for_run(run_id).status == "completed"


def test_debug_refuses_an_unknown_agent(configured: DaemonProcess) -> None:
    refused = configured.orca("debug", "--agents", "reviewer,nobody", "x")
    assert refused.returncode == 1
    assert "no agent named 'nobody'" in refused.stderr
    assert configured.status().runs == []


def test_plan_validate_names_the_cycle(configured: DaemonProcess, tmp_path: Path) -> None:
    plan = {
        "title": "loop",
        "tasks": [
            {"id": "a", "prompt": "p", "depends_on": ["c"]},
            {"id": "b", "prompt": "p", "depends_on": ["a"]},
            {"id": "c", "prompt": "p", "depends_on": ["b"]},
        ],
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    refused = configured.orca("plan", "validate", str(path))
    assert refused.returncode == 2
    assert "cycle" in refused.stderr and "a -> c -> b -> a" in refused.stderr
    ran = configured.orca("plan", "run", str(path), "--agent", "reviewer")
    assert ran.returncode == 2
    assert configured.status().runs == []
    demo = str(EXAMPLES.parent / "plans" / "demo.json")
    missing = configured.orca("plan", "validate", demo)
    assert missing.returncode == 2
    assert "task investigate: no agent named 'investigator'" in missing.stderr
    investigator = f'[agents.investigator]\ncommand = ["{sys.executable}", "x.py"]\n'
    _config(configured.home, extra=investigator)
    assert configured.orca("daemon", "reload").returncode == 0
    ok = configured.orca("plan", "validate", demo)
    assert ok.returncode == 0, ok.stderr
    assert "valid: 4 tasks, 4 dependencies" in ok.stdout


def test_plan_run_wait_shows_every_task_done(configured: DaemonProcess, tmp_path: Path) -> None:
    plan = {
        "title": "two steps",
        "tasks": [
            {"id": "first", "prompt": "look"},
            {"id": "second", "prompt": "look again", "depends_on": ["first"]},
        ],
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    done = configured.orca("plan", "run", str(path), "--agent", "reviewer", "--wait")
    assert done.returncode == 0, done.stderr
    run_id = configured.status().runs[0].run_id
    shown = configured.orca("status", run_id)
    assert "tasks    2 done" in shown.stdout
    assert "second  done" in shown.stdout and "after first" in shown.stdout


def test_doctor_shows_a_running_session(configured: DaemonProcess) -> None:
    started = configured.orca("run", "--agent", "slow", "wait")
    run_id = started.stdout.strip()
    wait_until(lambda: configured.status(run_id).sessions[0].status == "running", "session running")
    report = configured.orca("doctor", run_id)
    assert report.returncode == 0, report.stderr
    assert f"{run_id}.1" in report.stdout and "alive" in report.stdout
    configured.orca("cancel", run_id)
    ended = configured.orca("doctor", run_id)
    assert "no live sessions" in ended.stdout


def test_run_over_repositories_and_the_tree(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path
) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    _config(
        orca_home,
        f"""
[[repos]]
name = "one"
path = "{first}"
projects = ["shop"]
[[repos]]
name = "two"
path = "{second}"
projects = ["shop"]
""",
    )
    daemon = make_daemon().start()
    started = daemon.orca("run", "--agent", "reviewer", "--project", "shop", "--json", "check")
    assert started.returncode == 0, started.stderr
    reply = json.loads(started.stdout)
    parent = reply["run_id"]
    assert reply["session_id"] is None
    assert daemon.wait_for_run(parent).status == "completed"
    tree = daemon.orca("status", parent[:6], "--tree")
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    assert lines[0].startswith(parent) and "parent" in lines[0]
    assert lines[1].startswith(f"  {parent}-1") and "[one]" in lines[1]
    assert lines[2].startswith(f"  {parent}-2") and "[two]" in lines[2]
    none = daemon.orca("run", "--agent", "reviewer", "--project", "x", "--repo", "nope", "hi")
    assert none.returncode == 1
    assert "no repository named 'nope'" in none.stderr


def test_run_with_no_repositories_configured_is_refused(configured: DaemonProcess) -> None:
    refused = configured.orca("run", "--agent", "reviewer", "--project", "shop", "go")
    assert refused.returncode == 1
    assert (
        "no repositories configured for project shop: pass --repo or add [[repos]] to "
        "config.toml" in refused.stderr
    )
    assert configured.status().runs == []


def test_watch_describes_orchestration_events(configured: DaemonProcess, tmp_path: Path) -> None:
    plan = {
        "title": "watched",
        "tasks": [{"id": "only", "prompt": "look", "verify": ["true"]}],
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    ran = configured.orca("plan", "run", str(path), "--agent", "reviewer", "--wait")
    assert ran.returncode == 0, ran.stderr
    fanned = configured.orca("debug", "--agents", "reviewer", "--wait", "look")
    assert fanned.returncode == 0, fanned.stderr
    from orca_client.render_events import decode, event_line
    from orca_client.wire import ReadEvents

    with configured.client() as client:
        lines = [event_line(r, decode(r)) for r in client.request(ReadEvents(limit=1000)).events]
    text = "\n".join(lines)
    assert "task_status_changed only in_progress (attempt 1)" in text
    assert "verify_finished    only: passed: true" in text
    assert "task_status_changed only done (done; 1 verify command passed)" in text
    assert " by " in next(line for line in lines if "orchestrator_triggered" in line)
    assert "synthesis.md" in next(line for line in lines if "orchestration_finished" in line)
