"""A daemon dies; another takes its runs over (a PostgreSQL log shared by two daemons).

Daemon A runs a fan-out: one worker done, one still working. A is killed with SIGKILL and its
lease (3 s here) runs out: daemon B adopts the run (exactly once), ends the worker that ran on
A with the reason, and, every worker being terminal, starts the fan-out's one orchestrator
itself; its synthesis ends the run. A single run of A's is adopted and ended the same way.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from conftest import DaemonProcess, process_exists, two_daemons, wait_until
from support.fanouts import fan_agent, start_debug
from support.hooks import calls, hook, hooks_config, wait_hooks_settled
from support.notify import notify_config, receiving, wait_delivered
from support.snapshots import read_log

from orca_client.events import OrchestratorTriggered, QuestionAsked, RunAdopted, SessionTerminated
from orca_client.plan import Plan, PlanTask
from orca_client.views import Question
from orca_client.wire import RunStarted, StartPlan
from orca_daemon.log.store import DaemonIdentity, EventStore

LEASE = 3.0


pytestmark = pytest.mark.shared_log


def fanout_config(go: Path) -> str:
    """Two command agents (`ok` is done at once, `held` waits for the file `go`) and a short
    lease."""
    agents = {
        "ok": {"say": ["finding: the TTL is never refreshed"], "summary": "TTL bug"},
        "held": {"say": ["held: waiting"], "wait_file": str(go), "summary": "held done"},
    }
    lines = [f"[daemon]\nlease_seconds = {LEASE}"]
    for name, script in agents.items():
        command = json.dumps(fan_agent(**script))
        lines += [f"[agents.{name}]", 'adapter = "command"', f"command = {command}"]
    return "\n".join(lines) + "\n"


def test_a_dead_daemons_fanout_is_adopted_and_synthesized_once_by_another(
    make_daemon: Callable[..., DaemonProcess], other_home: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"  # never created: `held` works until it is ended
    a, b = two_daemons(make_daemon, other_home, fanout_config(go))
    a_name, b_name = a.name(), b.name()

    started = start_debug(a, ["ok", "held"])
    run_id = started.run_id

    def workers_placed() -> bool:
        sessions = {s.agent: s.status for s in a.status(run_id).sessions}
        return sessions == {"ok": "completed", "held": "running"}

    wait_until(workers_placed, "ok to complete and held to run on A")
    single = a.orca("run", "--title", "single on a", "--", "sleep", "60").stdout.strip()
    a.wait_for_run(single, frozenset({"running"}))
    assert {r.run_id: r.owner for r in b.status().runs} == {run_id: a_name, single: a_name}

    a.kill()  # its lease runs out in LEASE seconds; B looks every LEASE / 3
    final = b.wait_for_run(run_id, timeout=60)
    assert final.owner == b_name and final.status == "completed", final
    assert b.wait_for_run(single, timeout=30).status == "failed"

    events = [(e.stream, e.decode()) for e in read_log(b.log_source)]
    adoptions = [ev for _, ev in events if isinstance(ev, RunAdopted)]
    assert sorted((ev.run_id, ev.from_daemon, ev.daemon) for ev in adoptions) == sorted(
        [(run_id, a_name, b_name), (single, a_name, b_name)]
    )
    triggers = [ev for _, ev in events if isinstance(ev, OrchestratorTriggered)]
    assert len(triggers) == 1
    held = next(s for s in b.status(run_id).sessions if s.agent == "held")
    ends = [ev for _, ev in events if isinstance(ev, SessionTerminated)]
    [held_end] = [ev for ev in ends if ev.session_id == held.session_id]
    assert held_end.status == "failed" and held_end.cause == "orcad_restarted"
    assert held_end.reason == (
        f"orcad {a_name}, where it ran, stopped renewing its lease; orcad {b_name} took the "
        "run over"
    )
    orchestrator = [s for s in b.status(run_id).sessions if s.role == "orchestrator"]
    assert [s.status for s in orchestrator] == ["completed"]

    # `held`'s agent ran on in its holder on A's machine; A, back, stops it (its run is B's).
    assert held.pid is not None and process_exists(held.pid)
    a.start()
    wait_until(lambda: not process_exists(held.pid), "A to stop the agent of a run it lost")
    assert a.status(run_id).runs[0].owner == b_name
    assert b.stop() == 0


def test_a_plain_stop_keeps_the_runs_and_a_stop_that_ends_sessions_hands_them_over(
    make_daemon: Callable[..., DaemonProcess], other_home: Path, tmp_path: Path
) -> None:
    """A plain stop leaves sessions running in their holders for the same orcad to take back:
    no other daemon adopts its runs meanwhile (its lease is kept as long as the holders wait).
    A stop that ends them lets its lease run out at once: another daemon adopts its fan-out and
    synthesizes it."""
    go = tmp_path / "go"
    a, b = two_daemons(make_daemon, other_home, fanout_config(go))
    a_name, b_name = a.name(), b.name()
    run_id = start_debug(a, ["ok", "held"]).run_id
    wait_until(
        lambda: (
            {s.agent: s.status for s in a.status(run_id).sessions}
            == {"ok": "completed", "held": "running"}
        ),
        "held to run on A",
    )

    assert a.stop() == 0
    time.sleep(2.5 * LEASE)  # (well past a lease: nothing may happen, so no condition to wait on)
    assert b.status(run_id).runs[0].owner == a_name
    assert [s.status for s in b.status(run_id).sessions if s.agent == "held"] == ["running"]

    a.start()  # takes its session back
    assert a.status(run_id).runs[0].owner == a_name
    assert a.stop_ending_sessions() == 0
    final = b.wait_for_run(run_id, timeout=30)
    assert (final.owner, final.status) == (b_name, "completed")
    assert b.stop() == 0


def test_a_dead_daemons_plan_runs_its_lost_task_again_on_the_adopter(
    make_daemon: Callable[..., DaemonProcess], other_home: Path, tmp_path: Path
) -> None:
    """A plan on A: its first task done, its second (slow) running when A is killed. B adopts
    the run; the lost attempt is run again on B, uncounted (as after a restart), and the plan
    completes there."""
    marks = tmp_path / "marks"
    marks.mkdir()
    slow = (
        'touch "$0/$ORCA_SESSION_ID.started"; sleep 2;'
        ' echo \'{"type":"result","outcome":"done","summary":"slow done"}\''
    )
    config = (
        f"[daemon]\nlease_seconds = {LEASE}\n"
        '[agents.quick]\nadapter = "command"\n'
        f"command = {json.dumps(fan_agent(say=['quick'], summary='quick'))}\n"
        '[agents.slow]\nadapter = "command"\n'
        f"command = {json.dumps(['/bin/sh', '-c', slow, str(marks)])}\n"
    )
    a, b = two_daemons(make_daemon, other_home, config)
    b_name = b.name()
    plan = Plan(
        title="two steps",
        tasks=[
            PlanTask(id="first", prompt="do first", agent="quick"),
            PlanTask(id="second", prompt="do second", agent="slow", depends_on=["first"]),
        ],
    )
    with a.client() as client:
        started: RunStarted = client.request(StartPlan(cwd=str(tmp_path), plan=plan))
    run_id = started.run_id

    def second_running() -> bool:
        sessions = a.status(run_id).sessions
        return any(s.task_id == "second" and s.status == "running" for s in sessions)

    wait_until(second_running, "the second task to run on A")  # (its start recorded)

    a.kill()
    final = b.wait_for_run(run_id, timeout=60)
    assert (final.owner, final.status) == (b_name, "completed"), final
    tasks = {t.task_id: t for t in final.tasks}
    assert tasks["first"].status == tasks["second"].status == "done"
    seconds = [s for s in b.status(run_id).sessions if s.task_id == "second"]
    assert [(s.status, s.attempt) for s in seconds] == [("failed", 1), ("completed", 2)]
    assert tasks["second"].max_retries == 0  # the lost attempt was not counted as a failure
    assert b.stop() == 0


def test_a_hook_and_a_notification_the_dead_daemon_did_not_live_to_fire_come_once_from_the_adopter(
    make_daemon: Callable[..., DaemonProcess], other_home: Path, tmp_path: Path
) -> None:
    """A's agent asked a question, A committed it and died before its `on_question` hook ran
    and before it told the webhook. B adopts the run and fires that hook once; the run's end
    (B ends the session A lost) is told once; neither A back again nor B restarted does
    either a second time."""
    hook_log = tmp_path / "hooks.jsonl"
    with receiving() as receiver:
        webhook = f"http://127.0.0.1:{receiver.port}/orca"
        config = (
            f"[daemon]\nlease_seconds = {LEASE}\n"
            + hooks_config(on_question=hook(hook_log))
            + notify_config([(webhook, "json")])
        )
        a, b = two_daemons(make_daemon, other_home, config)
        a_name, b_name = a.name(), b.name()
        run_id = a.orca("run", "--title", "asks", "--", "sleep", "60").stdout.strip()
        [session] = a.wait_for_run(run_id, frozenset({"running"})).session_ids

        a.kill()
        asked = QuestionAsked(run_id, session, "1", [Question(id="q", question="which way?")])
        position = asyncio.run(append_as(a, a_name, run_id, asked))  # A's last commit

        wait_until(lambda: b.status(run_id).runs[0].owner == b_name, "B to adopt the run")
        wait_until(lambda: calls(hook_log), "the on_question hook")
        wait_hooks_settled(b, 1)
        wait_delivered(b, 1)  # the run's end (B ended its lost session): once
        a.start()
        assert b.stop() == 0
        b.start()
        time.sleep(1.0)  # (both daemons had the chance to do it again: nothing to wait for)
        fired = [(c["hook"], c["run_id"], c["position"]) for c in calls(hook_log)]
        assert fired == [("on_question", run_id, position)]
        told = [(p.json()["kind"], p.json()["run_id"]) for p in receiver.posts]
        assert told.count(("failed", run_id)) == 1
        # The question is told at most once: only if the adopter reached it before it ended
        # the session that asked it (a question nobody waits for any more is not told).
        assert told.count(("waiting", run_id)) <= 1
        assert b.stop() == 0


async def append_as(daemon: DaemonProcess, name: str, run_id: str, event: QuestionAsked) -> int:
    """Append `event` to the run as the (dead) daemon that owns it would have, and let that
    daemon's lease run out at once; returns the event's position."""
    identity = DaemonIdentity(name, str(daemon.paths.state_dir), LEASE)
    store = await EventStore.open_postgres(daemon.env["ORCA_LOG_URL"], daemon=identity)
    writer = asyncio.create_task(store.run_writer())
    try:
        [stored] = await store.append(f"run-{run_id}", [event])
    finally:
        store.stop_accepting()
        await writer
        store.keep_lease_after_close(0.0)
        await store.close()
    return stored.position


def test_a_daemon_that_loses_its_run_while_alive_stops_its_agent_and_records_nothing(
    make_daemon: Callable[..., DaemonProcess], other_home: Path, tmp_path: Path
) -> None:
    """A cannot renew its lease (here: its row no longer names its process) and B adopts its
    run, ending the session that ran on A. A, still running, follows the log: it stops the
    agent of that ended session, as after any cancel, and records nothing for the run."""
    config = f"[daemon]\nlease_seconds = {LEASE}\n"
    a, b = two_daemons(make_daemon, other_home, config)
    a_name, b_name = a.name(), b.name()
    run_id = a.orca("run", "--title", "long", "--", "sleep", "60").stdout.strip()
    a.wait_for_run(run_id, frozenset({"running"}))
    [session] = a.status(run_id).sessions
    assert session.pid is not None

    with psycopg.connect(a.env["ORCA_LOG_URL"]) as db:  # A's renewals now change nothing
        db.execute(
            "UPDATE daemons SET pid = -1, expires_at = now() - interval '1 s' WHERE name = %s",
            (a_name,),
        )
    final = b.wait_for_run(run_id, timeout=30)
    assert (final.owner, final.status) == (b_name, "failed")
    wait_until(lambda: not process_exists(session.pid), "A to stop the agent of its lost run")
    ends = [e for e in read_log(a.log_source) if e.type == "session_terminated"]
    assert len(ends) == 1  # B's; A recorded none
    assert a.status(run_id).runs[0].owner == b_name
    assert b.stop() == 0
