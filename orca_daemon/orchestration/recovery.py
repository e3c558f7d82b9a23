"""Start-up after an earlier orcad, and the order of a shutdown.

Start-up: sessions the log shows in flight are re-attached through their holders (which kept
them running); those whose holder is gone are ended, and those orcad decided on that never
started are started now; processes an earlier daemon left behind are stopped; every live
fan-out, plan and parent run is handed to the reactor to carry on from its log. Shutdown: no new
work; every session is let go to its holder (or, when asked, signalled, and every live session's
end recorded in one transaction).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable

import anyio

from orca_client.events import LOST_REASON, RunAdopted
from orca_client.views import TERMINAL_STATUSES, SessionInfo
from orca_daemon.runs.admission import Admission
from orca_daemon.runs.launcher import Launcher
from orca_daemon.runs.lifecycle import Lifecycle
from orca_daemon.runs.rules import live_sessions, parent_ended, restartable, superseded
from orca_daemon.runs.supervisor import Supervisor
from orca_daemon.sessions.held import (
    HeldAgent,
    HolderError,
    HolderGone,
    attach_holder,
    read_exit,
    remove_places,
)
from orca_daemon.sessions.link import AgentLink, SpooledAgent
from orca_daemon.sessions.procs import (
    pid_exited,
    process_start_ticks,
    processes_of_sessions,
    stop_group,
)
from orca_daemon.state.projection import State

log = logging.getLogger(__name__)

INTERRUPTED_PROMPT = (
    "You were interrupted: the machine or the program running you restarted while you worked "
    "on the task below, and whatever you were doing at that moment did not finish. Look at "
    "where things stand, then carry on with the task.\n\nThe task:\n{prompt}"
)
ATTACHING_AT_ONCE = 32
"""Holders re-attached at the same time on start-up."""
STOP_RECORD_SECONDS = 10.0
"""On shutdown, how long orcad waits to record the stopped sessions' ends (the log may be full);
what is not recorded by then, the next orcad reconciles."""


async def reconcile(
    state: State,
    lifecycle: Lifecycle,
    launcher: Launcher,
    supervisor: Supervisor,
    carry_on: Callable[[str], None],
    acts_for: Callable[[str], bool] | None = None,
) -> None:
    """Carry on the sessions that the log shows in flight from an earlier daemon: re-attach
    to each through its holder, which kept it running. End those whose holder is gone, and stop
    every process an earlier daemon left behind: by recorded pid (checked against its start
    time), and by the ORCA_SESSION_ID in its environment — which also finds agents whose pid
    never reached the log, and those of sessions recorded as ended just before a crash.

    A session orcad itself decided on (an orchestrator, a plan task) that never started is
    started now. Then every live fan-out, plan and parent run is handed to `carry_on`.

    With a log several daemons share, all of this is done for the runs this daemon acts for
    (`acts_for`) only: the others' sessions run on other daemons, which carry them on."""
    live = [s for s in state.live_sessions() if acts_for is None or acts_for(s.run_id)]
    held, unreachable = await _attach_all(state, supervisor, live)
    await _collect_ended(state, supervisor, acts_for)
    kept = set(held) | set(unreachable)  # sessions whose agents run on in their holders
    groups = {
        s.pid
        for s in live
        if s.session_id not in kept and s.pid is not None and _is_same_process(state, s)
    }
    found = processes_of_sessions(_sessions_acted_for(state, acts_for) - kept)
    for session_id, pids in found.items():
        for pid in pids:
            with contextlib.suppress(OSError):
                groups.add(os.getpgid(pid))
        log.warning("stopping orphaned processes %s of session %s", pids, session_id)
    groups.discard(os.getpgrp())
    async with anyio.create_task_group() as group:
        for pgid in groups:
            group.start_soon(stop_group, pgid, supervisor.cancel_grace)
    unstarted = [
        s
        for s in live
        if restartable(state, s) and s.session_id not in found and s.session_id not in kept
    ]
    for session in live:
        run_id, session_id = session.run_id, session.session_id
        agent = held.get(session_id)
        if agent is not None:
            problem = await _resume(state, launcher, supervisor, session, agent)
            if problem is not None:
                await lifecycle.finish_session(run_id, session_id, "failed", problem, "internal")
            elif parent_ended(state, session):
                await lifecycle.finish_session(
                    run_id, session_id, "cancelled", "its parent run has ended", "cancelled"
                )
        elif session_id in unreachable:
            why = unreachable[session_id]
            _reattach_later(state, lifecycle, launcher, supervisor, session, why)
        elif session in unstarted and superseded(state, session):
            await lifecycle.finish_session(
                run_id, session_id, "cancelled", "replaced by a retry", "cancelled"
            )
        elif session not in unstarted and parent_ended(state, session):
            await lifecycle.finish_session(
                run_id, session_id, "cancelled", "its parent run has ended", "cancelled"
            )
        elif session not in unstarted:
            await _holder_gone(state, lifecycle, launcher, supervisor, session)
    for session in [s for s in unstarted if not superseded(state, s)]:
        log.info("starting session %s, which an earlier orcad recorded", session.session_id)
        recorded = session.command if session.agent == "command" else ()
        prepared = await launcher.prepare(
            session.run_id,
            session.agent,
            state.prompts.get(session.session_id),
            session.cwd,
            recorded,
        )
        supervisor.begin_session(session.run_id, session.session_id, prepared)
    for request in list(state.relayed.values()):  # relayed to this daemon, not carried out
        carry_on(request.run_id)
    for run in list(state.runs.unpacked()):  # a packed run has ended
        if run.status not in TERMINAL_STATUSES and run.kind != "single":
            carry_on(run.run_id)  # in the background; the reactor leaves others' runs alone
    _check_worktrees(state)


async def _attach_all(
    state: State, supervisor: Supervisor, live: list[SessionInfo]
) -> tuple[dict[str, HeldAgent], dict[str, str]]:
    """Connect to the holder of each live session that has one, a few at a time. Returns the
    attached ones, and why for those whose holder is there but did not let us attach."""
    held: dict[str, HeldAgent] = {}
    unreachable: dict[str, str] = {}
    limit = anyio.CapacityLimiter(ATTACHING_AT_ONCE)

    async def attach(session: SessionInfo) -> None:
        session_id = session.session_id
        async with limit:
            try:
                held[session_id] = await _attach(state, supervisor, session)
            except HolderGone:
                return
            except HolderError as exc:
                log.error("session %s: its holder cannot be re-attached: %s", session_id, exc)
                unreachable[session_id] = str(exc)

    async with anyio.create_task_group() as attaching:
        for session in live:
            attaching.start_soon(attach, session)
    if held:
        log.info("re-attached to %d sessions that ran on while orcad was away", len(held))
    return held, unreachable


async def _attach(state: State, supervisor: Supervisor, session: SessionInfo) -> HeldAgent:
    """Attach to a session's holder, reading on from where the log's output ends."""
    session_id = session.session_id
    offsets = state.read_offsets.get(session_id, {})
    return await attach_holder(
        supervisor.places_of(session.run_id, session_id),
        offsets.get("stdout", 0),
        offsets.get("stderr", 0),
        state.holders.get(session_id),
    )


def _reattach_later(
    state: State,
    lifecycle: Lifecycle,
    launcher: Launcher,
    supervisor: Supervisor,
    session: SessionInfo,
    why: str,
) -> None:
    """A session whose holder is alive but refused or failed us: its agent runs on, and orcad
    tries again at each heartbeat (status shows why meanwhile) until it attaches, the holder is
    gone (then as `_holder_gone`), or the session ends (cancelled: its processes are stopped)."""
    run_id, session_id = session.run_id, session.session_id

    async def attempt() -> str | None:
        now = state.sessions[session_id]
        if now.status in TERMINAL_STATUSES:  # ended meanwhile (cancelled)
            await supervisor.stop_detached(session_id)
            return None
        try:
            agent = await _attach(state, supervisor, now)
        except HolderGone:
            await _holder_gone(state, lifecycle, launcher, supervisor, now)
            return None
        except HolderError as exc:
            return str(exc)
        log.info("session %s: re-attached to its holder", session_id)
        problem = await _resume(state, launcher, supervisor, now, agent)
        if problem is not None:
            await lifecycle.finish_session(run_id, session_id, "failed", problem, "internal")
        return None

    supervisor.reattach_later(session_id, why, attempt)


async def _resume(
    state: State,
    launcher: Launcher,
    supervisor: Supervisor,
    session: SessionInfo,
    agent: AgentLink,
) -> str | None:
    """Hand a re-attached session to the supervisor with a translator like its first; or stop
    its agent and say why it cannot be (its agent's binary is gone: nothing reads it)."""
    recorded = session.command if session.agent == "command" else ()
    prompt = state.prompts.get(session.session_id)
    prepared = await launcher.prepare(session.run_id, session.agent, prompt, session.cwd, recorded)
    if prepared.launch is None:
        await _end_held(agent, supervisor.cancel_grace)
        return f"orcad could not re-attach to it: {prepared.error}"
    supervisor.resume_session(session.run_id, session.session_id, agent, prepared.launch.translator)
    return None


async def _end_held(agent: AgentLink, grace: float) -> None:
    """Stop a held agent, take its exit and let its holder go."""
    await stop_group(agent.pid, grace, lambda: pid_exited(agent.pid, agent.start_ticks))
    with anyio.move_on_after(grace + 5.0), contextlib.suppress(HolderError):
        while await agent.read() is not None:
            pass
        await agent.acknowledge()
    agent.detach()


async def _collect_ended(
    state: State, supervisor: Supervisor, acts_for: Callable[[str], bool] | None
) -> None:
    """Holders of sessions that the log shows ended (orcad stopped before it let them go), or
    that belong to runs another daemon took over (a shared log): their agents are stopped, and
    they and their files go."""
    holders = supervisor.runtime_dir / "holders"
    try:
        names = os.listdir(holders)
    except OSError:
        return
    for session_id in names:
        session = state.sessions.get(session_id)
        if (
            session is not None
            and session.status not in TERMINAL_STATUSES
            and (acts_for is None or acts_for(session.run_id))
        ):
            continue
        if session is None:
            with contextlib.suppress(OSError):
                shutil.rmtree(holders / session_id)
            continue
        places = supervisor.places_of(session.run_id, session_id)
        try:
            agent = await attach_holder(places, 1 << 62, 1 << 62)
        except HolderError:
            agent = None
        if agent is not None:
            log.warning("session %s ended while its agent ran: stopping it", session_id)
            await _end_held(agent, supervisor.cancel_grace)
        with contextlib.suppress(OSError):
            remove_places(places)


async def _holder_gone(
    state: State,
    lifecycle: Lifecycle,
    launcher: Launcher,
    supervisor: Supervisor,
    session: SessionInfo,
) -> None:
    """A live session whose holder is gone. One that ended with nobody attached (its holder's
    orphan timeout) is finished from its spool and exit status, as if orcad had been there; an
    agent that can continue its own conversation (Codex, Claude) is started again on it, told
    that it was interrupted; any other session ends failed, saying why."""
    run_id, session_id = session.run_id, session.session_id
    places = supervisor.places_of(run_id, session_id)
    ended = read_exit(places)
    if ended is not None and session.pid is not None:
        offsets = state.read_offsets.get(session_id, {})
        spooled = SpooledAgent(
            places,
            ended,
            (offsets.get("stdout", 0), offsets.get("stderr", 0)),
            (session.pid, state.start_ticks.get(session_id)),
        )
        problem = await _resume(state, launcher, supervisor, session, spooled)
        if problem is not None:
            await lifecycle.finish_session(run_id, session_id, "failed", problem, "internal")
        return
    conversation = session.agent_session_id
    if conversation is not None and launcher.continues_conversations(session.agent):
        log.info("session %s: its agent is gone; continuing its conversation", session_id)
        await lifecycle.clear_question(run_id, session_id, "its agent was interrupted")
        prompt = INTERRUPTED_PROMPT.format(prompt=state.prompts.get(session_id) or "")
        prepared = await launcher.prepare(
            run_id, session.agent, prompt, session.cwd, resume=conversation
        )
        with contextlib.suppress(OSError):
            remove_places(places)
        note = f"{LOST_REASON}; orcad continues its conversation {conversation}"
        supervisor.begin_session(run_id, session_id, prepared, prompt, note)
        return
    await lifecycle.finish_session(run_id, session_id, "failed", LOST_REASON, "orcad_restarted")
    with contextlib.suppress(OSError):
        remove_places(places)


async def shutdown(
    admission: Admission,
    stop_reacting: Callable[[], None],
    supervisor: Supervisor,
    lifecycle: Lifecycle,
    end_sessions: bool,
) -> None:
    """Stop accepting runs and reacting; let go of every session (its holder keeps it running
    for the next orcad) — or, with `end_sessions`, signal every session's processes at once and
    record every live session's end in one transaction; wait for the sessions' tasks."""
    admission.close()  # from now on no session's process starts
    stop_reacting()
    if not end_sessions:
        kept = supervisor.detach_all()
        log.info("stopping: %d sessions keep running; the next orcad re-attaches to them", kept)
        if not await supervisor.wait_all_stopped(STOP_RECORD_SECONDS):
            log.error("sessions still recording after they were let go: cancelled")
        return
    signalled = supervisor.signal_all()
    log.info("stopping: signalled the processes of %d sessions", signalled)
    with anyio.move_on_after(STOP_RECORD_SECONDS) as waited:
        await admission.wait_started()  # runs being created now end stopped too
        await lifecycle.record_stopped()
    if waited.cancelled_caught:
        log.error(
            "could not record the stopped sessions' ends within %gs; the next orcad will",
            STOP_RECORD_SECONDS,
        )
    if not await supervisor.wait_all_stopped(supervisor.cancel_grace + STOP_RECORD_SECONDS):
        log.error("sessions still recording after their processes were stopped: cancelled")


def _sessions_acted_for(state: State, acts_for: Callable[[str], bool] | None) -> set[str]:
    """The ids of every session (of ended runs too) of the runs this daemon acts for (None:
    every run, a daemon's own log)."""
    every = set(state.sessions)
    if acts_for is None:
        return every
    return {sid for sid in every if (s := state.sessions.get(sid)) and acts_for(s.run_id)}


def _is_same_process(state: State, session: SessionInfo) -> bool:
    """True when the pid still names the process the session started (not a reused pid)."""
    assert session.pid is not None
    current = process_start_ticks(session.pid)
    return current is not None and current == state.start_ticks.get(session.session_id)


def _check_worktrees(state: State) -> None:
    """Say which recorded worktrees (not removed with `orca clean`) no longer exist."""
    for session in state.sessions.unpacked():  # a packed run's sessions left no worktree
        tree = session.worktree
        if tree is not None and not tree.removed and not os.path.isdir(tree.path):
            log.warning(
                "worktree %s of session %s (branch %s) no longer exists",
                tree.path,
                session.session_id,
                tree.branch,
            )


async def take_over(
    state: State,
    lifecycle: Lifecycle,
    launcher: Launcher,
    supervisor: Supervisor,
    run_id: str,
    adopted: RunAdopted,
) -> None:
    """Carry on a run this daemon adopted from one whose lease ran out. Its sessions that ran
    there end failed: their agents are on that daemon's machine, out of this one's reach (a plan
    runs such a task again, uncounted, as after a restart). Those orcad decided on that never
    started (an orchestrator, a plan task) start here."""
    reason = (
        f"orcad {adopted.from_daemon}, where it ran, stopped renewing its lease; orcad "
        f"{adopted.daemon} took the run over"
    )
    for session in live_sessions(state, run_id):
        session_id = session.session_id
        if restartable(state, session) and superseded(state, session):
            await lifecycle.finish_session(
                run_id, session_id, "cancelled", "replaced by a retry", "cancelled"
            )
        elif restartable(state, session):
            log.info(
                "session %s: starting it here, as orcad %s never did",
                session_id,
                adopted.from_daemon,
            )
            recorded = session.command if session.agent == "command" else ()
            prepared = await launcher.prepare(
                run_id, session.agent, state.prompts.get(session_id), session.cwd, recorded
            )
            supervisor.begin_session(run_id, session_id, prepared)
        else:
            await lifecycle.finish_session(run_id, session_id, "failed", reason, "orcad_restarted")
