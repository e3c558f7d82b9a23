"""Hooks end to end (finding 9: every hook fires exactly once): a real orcad configured with
`[hooks]` in its config.toml, hooks that record each call (tests/agents/q_hook.py), restarts
with SIGTERM and with kill -9.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import (
    DaemonProcess,
    all_events,
    all_records,
    process_exists,
    wait_until,
)
from support.homes import write_config
from support.hooks import calls, hook, hook_events, hooks_config, wait_hooks_settled
from support.questions import DONE, of_type, q, start, wait_pending


@pytest.fixture
def log_env(any_log_env: dict[str, str]) -> dict[str, str]:
    """Every test here runs on the SQLite log and on a PostgreSQL one."""
    return any_log_env


FAIL: dict[str, Any] = {"result": {"outcome": "failed", "error": "it broke"}}
RESTARTED_REASON = "orcad restarted while the hook ran"


def trigger(daemon: DaemonProcess, run_id: str, kind: str, status: str | None = None) -> int:
    """The log position of a run's event of `kind` (with `status`), which must be unique."""
    found = [
        position
        for position, event in all_events(daemon)
        if event["run_id"] == run_id
        and event["type"] == kind
        and (status is None or event.get("status") == status)
    ]
    assert len(found) == 1, found
    return found[0]


def assert_each_trigger_once(daemon: DaemonProcess) -> None:
    """No trigger has more than one hook_started or hook_finished in the whole log."""
    for kind in ("hook_started", "hook_finished"):
        keys = Counter((e["hook"], e["trigger_position"]) for e in hook_events(daemon, kind))
        assert all(n == 1 for n in keys.values()), (kind, keys)


def completing_run(daemon: DaemonProcess) -> str:
    run_id = start(daemon, {"steps": [DONE]})
    assert daemon.wait_for_run(run_id).status == "completed"
    return run_id


# --------------------------------------------------------------------------- exactly once


def test_finding_09_each_hook_fires_exactly_once_with_its_event(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path
) -> None:
    log = tmp_path / "hooks.jsonl"
    write_config(
        orca_home,
        hooks_config(on_complete=hook(log), on_error=hook(log), on_question=hook(log)),
    )
    daemon = make_daemon().start()

    completed = completing_run(daemon)
    failed = start(daemon, {"steps": [FAIL]})
    assert daemon.wait_for_run(failed).status == "failed"
    asking = start(daemon, {"steps": [{"ask": [q("q1", "Deploy?", header="Deploy")]}, DONE]})
    wait_pending(daemon, asking)
    wait_until(lambda: any(c["hook"] == "on_question" for c in calls(log)))
    assert daemon.orca("answer", asking, "yes").returncode == 0
    assert daemon.wait_for_run(asking).status == "completed"
    finished = wait_hooks_settled(daemon, 4)

    expected = {
        ("on_complete", completed, trigger(daemon, completed, "run_status_changed", "completed")),
        ("on_error", failed, trigger(daemon, failed, "run_status_changed", "failed")),
        ("on_question", asking, trigger(daemon, asking, "question_asked")),
        ("on_complete", asking, trigger(daemon, asking, "run_status_changed", "completed")),
    }
    assert sorted((c["hook"], c["run_id"], c["position"]) for c in calls(log)) == sorted(expected)
    assert sorted((e["hook"], e["run_id"], e["trigger_position"]) for e in finished) == sorted(
        expected
    )
    assert all(e["ok"] and e["exit_code"] == 0 for e in finished)
    assert all("done" in e["output_tail"] for e in finished)
    assert_each_trigger_once(daemon)

    # Each hook got the triggering event's record, exactly as the log holds it.
    records = {r.position: r for r in all_records(daemon)}
    for call in calls(log):
        payload = call["stdin"]
        assert payload["hook"] == call["hook"]
        record = records[call["position"]]
        assert payload["record"]["stream"] == record.stream == f"run-{call['run_id']}"
        assert payload["record"]["version"] == record.version
        assert payload["record"]["event"] == msgspec.json.decode(record.event)
    by_hook = {c["hook"]: c["stdin"]["record"]["event"] for c in calls(log)}
    assert by_hook["on_question"]["questions"][0]["id"] == "q1"
    assert by_hook["on_question"]["questions"][0]["header"] == "Deploy"
    assert by_hook["on_error"]["status"] == "failed"
    assert by_hook["on_error"]["reason"] == "it broke"

    # Two restarts (SIGTERM): nothing fires again. A run after each restart is the barrier:
    # hooks are handled in log order, so once its hook has finished, a repeat would have shown.
    before = calls(log)
    for restart in range(2):
        assert daemon.stop() == 0
        daemon = make_daemon().start()
        barrier = completing_run(daemon)
        wait_hooks_settled(daemon, 5 + restart)
        assert calls(log)[: len(before)] == before
        new = calls(log)[len(before) :]
        assert [(c["hook"], c["run_id"]) for c in new] == [("on_complete", barrier)]
        before = calls(log)
        assert_each_trigger_once(daemon)


def test_finding_09_a_run_ended_by_a_daemon_stop_fires_on_error_once(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path
) -> None:
    """A run still waiting when orcad stops ending sessions (`--cancel-sessions`) ends failed;
    its on_error hook must run exactly once, whether the stopping daemon runs it (it has
    cancel_grace_seconds for hooks) or the next one does. Several stop/start cycles, since the
    stop races the hook runner."""
    log = tmp_path / "hooks.jsonl"
    write_config(orca_home, hooks_config(on_complete=hook(log), on_error=hook(log)))
    daemon = make_daemon().start()
    stopped_runs: list[str] = []
    for _ in range(4):
        waiting = start(daemon, {"steps": [{"ask": [q("q1")]}, DONE]})
        wait_pending(daemon, waiting)
        stopped_runs.append(waiting)
        assert daemon.stop_ending_sessions() == 0
        daemon = make_daemon().start()
        assert daemon.status(waiting).runs[0].status == "failed"
    barrier = completing_run(daemon)
    wait_until(lambda: any(c["run_id"] == barrier for c in calls(log)))
    wait_hooks_settled(daemon, 1)

    finished = hook_events(daemon, "hook_finished")
    outcomes = {e["run_id"]: (e["ok"], e["reason"]) for e in finished if e["hook"] == "on_error"}
    ran = Counter(c["run_id"] for c in calls(log) if c["hook"] == "on_error")
    assert {r: ran[r] for r in stopped_runs} == dict.fromkeys(stopped_runs, 1), outcomes
    for run_id in stopped_runs:
        position = trigger(daemon, run_id, "run_status_changed", "failed")
        assert [c["position"] for c in calls(log) if c["run_id"] == run_id] == [position]
        assert outcomes[run_id] == (True, "exited with status 0")
    assert_each_trigger_once(daemon)


# --------------------------------------------------------------------------- failing hooks


def test_finding_09_a_failing_or_slow_hook_is_recorded_and_the_run_is_unaffected(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path
) -> None:
    log = tmp_path / "hooks.jsonl"
    write_config(
        orca_home,
        hooks_config(
            timeout=1.0,
            on_complete=hook(log, "0", "3"),  # exits 3
            on_error=hook(log, "60"),  # outlives timeout_seconds
            on_question=[str(tmp_path / "no-such-hook")],  # cannot start
        ),
    )
    daemon = make_daemon().start()
    completed = completing_run(daemon)
    failed = start(daemon, {"steps": [FAIL]})
    assert daemon.wait_for_run(failed).status == "failed"
    asking = start(daemon, {"steps": [{"ask": [q("q1")]}, DONE]})
    wait_pending(daemon, asking)
    wait_until(lambda: of_type(daemon, asking, "hook_finished"))
    assert daemon.status(asking).runs[0].status == "waiting_for_answer"
    assert daemon.orca("answer", asking, "go on").returncode == 0
    assert daemon.wait_for_run(asking).status == "completed"

    finished = wait_hooks_settled(daemon, 4)
    by_run = {(e["run_id"], e["hook"]): e for e in finished}
    exited = by_run[(completed, "on_complete")]
    assert (exited["ok"], exited["exit_code"]) == (False, 3)
    assert exited["reason"] == "exited with status 3"
    assert "done" in exited["output_tail"]
    timed_out = by_run[(failed, "on_error")]
    assert timed_out["ok"] is False
    assert "timed out" in timed_out["reason"]
    missing = by_run[(asking, "on_question")]
    assert missing["ok"] is False
    assert "could not start" in missing["reason"]
    assert by_run[(asking, "on_complete")]["ok"] is False
    assert len(finished) == 4
    assert_each_trigger_once(daemon)

    # The runs are unaffected: statuses as their agents reported, no further status change.
    assert daemon.status(completed).runs[0].status == "completed"
    assert daemon.status(failed).runs[0].status == "failed"
    assert daemon.status(failed).runs[0].reason == "it broke"
    for run_id, last in ((completed, "completed"), (failed, "failed"), (asking, "completed")):
        statuses = [e["status"] for e in of_type(daemon, run_id, "run_status_changed")]
        assert statuses[-1] == last and statuses.count(last) == 1

    # The timed-out hook was stopped, not left running.
    [slow] = [c for c in calls(log) if c["hook"] == "on_error"]
    wait_until(lambda: not process_exists(slow["pid"]), timeout=10, what="the slow hook stopped")
    # A failed hook is not retried, not even by a restarted daemon.
    assert daemon.stop() == 0
    daemon = make_daemon().start()
    barrier = completing_run(daemon)
    wait_hooks_settled(daemon, 5)
    assert [c["run_id"] for c in calls(log)].count(barrier) == 1
    assert len(calls(log)) == 4  # on_complete x3 (exit 3) + on_error (timed out); no retries
    assert_each_trigger_once(daemon)


# --------------------------------------------------------------------------- kill -9


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.3])
def test_finding_09_kill_9_right_after_a_run_completes_never_fires_twice(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path, delay: float
) -> None:
    log = tmp_path / "hooks.jsonl"
    write_config(orca_home, hooks_config(on_complete=hook(log)))
    daemon = make_daemon().start()
    run_id = completing_run(daemon)
    time.sleep(delay)  # where in the hook's life the crash lands; the test holds for any
    daemon.kill()
    daemon = make_daemon().start()
    barrier = completing_run(daemon)
    wait_until(lambda: any(c["run_id"] == barrier for c in calls(log)))
    wait_hooks_settled(daemon, 2)

    position = trigger(daemon, run_id, "run_status_changed", "completed")
    started = [e for e in hook_events(daemon, "hook_started") if e["trigger_position"] == position]
    finished = [
        e for e in hook_events(daemon, "hook_finished") if e["trigger_position"] == position
    ]
    assert len(started) == 1 and len(finished) == 1
    fired = sum(1 for e in finished if e["ok"])
    interrupted = sum(1 for e in finished if not e["ok"] and e["reason"] == RESTARTED_REASON)
    assert fired + interrupted == 1, finished
    ran = [c for c in calls(log) if c["position"] == position]
    if fired:
        assert len(ran) == 1
    else:
        for call in ran:  # the interrupted hook may still be finishing on its own
            wait_until(lambda call=call: not process_exists(call["pid"]))
        assert len([c for c in calls(log) if c["position"] == position]) <= 1
    assert_each_trigger_once(daemon)


def test_finding_09_a_hook_interrupted_by_kill_9_is_recorded_and_not_run_again(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path
) -> None:
    log = tmp_path / "hooks.jsonl"
    write_config(orca_home, hooks_config(on_complete=hook(log, "1.5")))
    daemon = make_daemon().start()
    run_id = completing_run(daemon)
    wait_until(lambda: calls(log), what="the hook started")
    daemon.kill()  # while the hook sleeps
    daemon = make_daemon().start()
    barrier = completing_run(daemon)
    wait_until(lambda: any(c["run_id"] == barrier for c in calls(log)))
    wait_hooks_settled(daemon, 2)

    position = trigger(daemon, run_id, "run_status_changed", "completed")
    [finished] = [
        e for e in hook_events(daemon, "hook_finished") if e["trigger_position"] == position
    ]
    assert (finished["ok"], finished["reason"]) == (False, RESTARTED_REASON)
    [first] = [c for c in calls(log) if c["position"] == position]
    wait_until(lambda: not process_exists(first["pid"]), what="the orphaned hook ended")
    assert [c["position"] for c in calls(log)].count(position) == 1
    assert daemon.status(run_id).runs[0].status == "completed"
    assert_each_trigger_once(daemon)


# --------------------------------------------------------------------------- configuration


def test_hooks_do_not_fire_for_events_from_before_they_were_configured(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path
) -> None:
    """By design (hooks.py): the hook runner follows the log from where the last daemon left
    it, and a first start begins at the head; so enabling hooks does not replay history."""
    daemon = make_daemon().start()
    old_done = completing_run(daemon)
    old_failed = start(daemon, {"steps": [FAIL]})
    daemon.wait_for_run(old_failed)
    assert daemon.stop() == 0

    log = tmp_path / "hooks.jsonl"
    write_config(orca_home, hooks_config(on_complete=hook(log), on_error=hook(log)))
    daemon = make_daemon().start()
    barrier = completing_run(daemon)
    wait_hooks_settled(daemon, 1)
    assert [(c["hook"], c["run_id"]) for c in calls(log)] == [("on_complete", barrier)]
    assert not of_type(daemon, old_done, "hook_started")
    assert not of_type(daemon, old_failed, "hook_started")


def test_a_hook_as_a_shell_string_gets_its_environment(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "hook.txt"
    command = f'printf "%s %s " "$ORCA_HOOK" "$ORCA_RUN_ID" >> {out}; cat >> {out}; echo >> {out}'
    write_config(orca_home, hooks_config(on_complete=command))
    daemon = make_daemon().start()
    run_id = completing_run(daemon)
    wait_hooks_settled(daemon, 1)
    [line] = out.read_text().splitlines()
    name, run, payload = line.split(" ", 2)
    assert (name, run) == ("on_complete", run_id)
    body = json.loads(payload)
    assert body["hook"] == "on_complete"
    assert body["record"]["position"] == trigger(daemon, run_id, "run_status_changed", "completed")
    assert body["record"]["event"]["status"] == "completed"


def test_finding_09_many_runs_ended_by_a_daemon_stop_each_fire_on_error_once(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path
) -> None:
    """Several runs end failed as orcad stops ending sessions: each on_error hook fires exactly
    once, whether the stopping daemon runs it or the next one does; none is skipped, none
    repeated."""
    log = tmp_path / "hooks.jsonl"
    write_config(orca_home, hooks_config(on_complete=hook(log), on_error=hook(log)))
    daemon = make_daemon().start()
    waiting = [start(daemon, {"steps": [{"ask": [q("q1")]}, DONE]}) for _ in range(30)]
    for run_id in waiting:
        wait_pending(daemon, run_id)
    assert daemon.stop_ending_sessions() == 0
    daemon = make_daemon().start()
    barrier = completing_run(daemon)
    wait_until(lambda: any(c["run_id"] == barrier for c in calls(log)))
    wait_hooks_settled(daemon, 1)
    fired = Counter(c["run_id"] for c in calls(log) if c["hook"] == "on_error")
    assert {run_id: fired[run_id] for run_id in waiting} == dict.fromkeys(waiting, 1)
    assert_each_trigger_once(daemon)


# --------------------------------------------------------------------------- plan task hooks


def test_task_hooks_fire_once_per_task_outcome_not_per_attempt(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path
) -> None:
    from conftest import EXAMPLES

    from orca_client.plan import Plan, PlanTask
    from orca_client.wire import StartPlan

    log = tmp_path / "hooks.jsonl"
    agents = (
        f'[agents.good]\ncommand = ["{sys.executable}", "{EXAMPLES / "reviewer.py"}"]\n'
        f'[agents.bad]\ncommand = ["{sys.executable}", "{EXAMPLES / "failing.py"}"]\n'
    )
    write_config(
        orca_home,
        hooks_config(on_task_complete=hook(log), on_task_fail=hook(log)) + agents,
    )
    daemon = make_daemon().start()
    plan = Plan(
        title="hooks",
        tasks=[
            PlanTask(id="ok", prompt="fine", agent="good"),
            PlanTask(id="broken", prompt="fails twice", agent="bad", max_retries=1),
        ],
    )
    with daemon.client() as client:
        run_id = client.request(StartPlan(cwd=str(tmp_path), plan=plan)).run_id
    assert daemon.wait_for_run(run_id).status == "failed"
    wait_hooks_settled(daemon, 2)
    daemon.kill()  # a restart right after must not fire them again
    daemon = make_daemon().start()
    # Hooks fire in log order: once a later task's hook has fired, a wrongly repeated one
    # for the earlier tasks would have fired before it.
    later = Plan(title="later", tasks=[PlanTask(id="after", prompt="fine", agent="good")])
    with daemon.client() as client:
        after = client.request(StartPlan(cwd=str(tmp_path), plan=later)).run_id
    assert daemon.wait_for_run(after).status == "completed"
    wait_until(lambda: any(c["run_id"] == after for c in calls(log)), "the later task's hook")
    assert_each_trigger_once(daemon)
    fired = sorted((c["hook"], c["stdin"]["record"]["event"]["task_id"]) for c in calls(log))
    assert fired == [
        ("on_task_complete", "after"),
        ("on_task_complete", "ok"),
        ("on_task_fail", "broken"),
    ]
    attempts = [
        e
        for _, e in all_events(daemon)
        if e["type"] == "task_status_changed" and e["task_id"] == "broken"
    ]
    assert [e["status"] for e in attempts] == ["in_progress", "pending", "in_progress", "failed"]
