"""How the CLI shows runs and sessions (`orca status`, `orca doctor`, how a run ended) to a
person. Pure formatting of orcad's views; every text goes through `visible` or `one_line`."""

from __future__ import annotations

import time
from collections.abc import Sequence

from orca_client.answering import answer_hint
from orca_client.terminal_text import cells, clip, clip_words, one_line, terminal_width, visible
from orca_client.views import TERMINAL_STATUSES, DoctorResult, RunInfo, SessionInfo, StatusResult


def _ago(at: float, now: float) -> str:
    seconds = max(0, int(now - at))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def duration(seconds: float) -> str:
    """`45s`, `3m12s`, `2h05m`, `3d04h`."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def last_activity(run: RunInfo, sessions: dict[str, SessionInfo]) -> float:
    """When the run or any of its sessions last did anything recorded."""
    times = [run.updated_at]
    for session_id in run.session_ids:
        session = sessions.get(session_id)
        if session is not None and session.last_activity_at is not None:
            times.append(session.last_activity_at)
    return max(times)


def progress(run: RunInfo, sessions: dict[str, SessionInfo], runs: dict[str, RunInfo]) -> str:
    """How far a fan-out (its workers), a plan (its tasks) or a parent (its children) is, e.g.
    `2/3 workers done, 1 running` or `3/7 done, 1 running, 1 failed`; "" for a single run."""
    if run.kind == "fanout":
        workers = [sessions[s] for s in run.session_ids if s in sessions]
        statuses = [s.status for s in workers if s.role == "worker"]
        counted = _counts(statuses, "workers", done="completed")
        orchestrator = sessions.get(run.orchestrator_session_id or "")
        if orchestrator is not None and orchestrator.status not in TERMINAL_STATUSES:
            counted += ", synthesizing"
        return counted
    if run.kind == "plan":
        return _counts([task.status for task in run.tasks], "", done="done")
    if run.kind == "parent":
        children = [runs[c].status for c in run.child_run_ids if c in runs]
        return _counts(children, "children", done="completed")
    return ""


_SHOWN_AS = {
    "created": "starting",
    "queued": "starting",
    "in_progress": "running",
    "planning": "running",
    "reviewing": "running",
    "waiting_for_answer": "waiting",
}


def _counts(statuses: Sequence[str], noun: str, *, done: str) -> str:
    """`2/3 workers done, 1 running, 1 failed` (pending ones are what is left)."""
    counts: dict[str, int] = {}
    for status in statuses:
        if status not in (done, "pending"):
            shown = _SHOWN_AS.get(status, status)
            counts[shown] = counts.get(shown, 0) + 1
    head = f"{statuses.count(done)}/{len(statuses)}{f' {noun}' if noun else ''} done"
    return ", ".join([head, *(f"{n} {status}" for status, n in counts.items())])


MIN_TITLE_CELLS = 30
"""Narrower than this, a title leaves the PROGRESS column for a line of its own."""


def runs_table(result: StatusResult, width: int | None = None) -> str:
    """Every run, oldest first, one line each, sized to `width` columns (the terminal's); under
    a waiting run, its pending questions; a fan-out, plan or parent shows its progress. With a
    log several daemons share, each run's owner too."""
    if not result.runs:
        return "no runs yet; start one with: orca run -- CMD"
    width = terminal_width() if width is None else width
    now = time.time()
    sessions = {s.session_id: s for s in result.sessions}
    runs = {r.run_id: r for r in result.runs}
    ordered = sorted(result.runs, key=lambda r: r.created_at)
    owners = any(r.owner for r in ordered)  # a log several daemons share: whose each run is
    rows = [["RUN", "STATUS", "ACTIVITY", *(["OWNER"] if owners else [])]]
    rows += [
        [
            r.run_id,
            r.status,
            _ago(last_activity(r, sessions), now),
            *([one_line(r.owner or "")] if owners else []),
        ]
        for r in ordered
    ]
    progresses = [progress(r, sessions, runs) for r in ordered]
    fixed = [max(cells(row[i]) for row in rows) for i in range(len(rows[0]))]
    below = any(progresses)
    progress_width = max((cells(p) for p in progresses), default=0)
    title_width = width - sum(fixed) - 2 * len(fixed)
    if below and title_width - progress_width - 2 >= MIN_TITLE_CELLS:
        rows[0].append("PROGRESS")
        progress_width = max(progress_width, len("PROGRESS"))
        for row, shown in zip(rows[1:], progresses, strict=True):
            row.append(shown)
        fixed.append(progress_width)
        title_width -= progress_width + 2
        below = False
    title_width = max(title_width, 10)
    rows[0].append("TITLE")
    for row, run in zip(rows[1:], ordered, strict=True):
        row.append(clip_words(run.title, title_width))
    lines = [_table_line(rows[0], fixed)]
    for row, run, shown in zip(rows[1:], ordered, progresses, strict=True):
        lines.append(_table_line(row, fixed))
        if below and shown:
            lines.append(clip(f"  · {shown}", width))
        pending = [sessions[s].pending for s in run.session_ids if s in sessions]
        questions = [q for p in pending if p is not None for q in p.questions]
        for q in questions:
            secret = " [secret]" if q.is_secret else ""
            lines.append(clip(f"  ↳ {one_line(q.id)}{secret}: {one_line(q.question)}", width))
        if questions:
            lines.append(f"    answer: {answer_hint(run.run_id, questions)}")
    if result.ended_not_shown:
        lines.append(f"({result.ended_not_shown} older ended runs not shown: orca status --all)")
    return visible("\n".join(lines))


def _table_line(row: list[str], widths: list[int]) -> str:
    padded = [cell + " " * (widths[i] - cells(cell)) for i, cell in enumerate(row[:-1])]
    return "  ".join([*padded, row[-1]]).rstrip()


def run_detail(run: RunInfo, sessions: list[SessionInfo], width: int | None = None) -> str:
    """One run with each of its sessions (a plan's tasks, a parent's children): how long it has
    run, its phase, its last activity, and each live session's last output line."""
    width = terminal_width() if width is None else width
    now = time.time()
    by_id = {s.session_id: s for s in sessions}
    status: str = run.status
    if run.paused_status is not None:
        status += f" (phase {run.paused_status})"
    if run.reason:
        status += f" ({one_line(run.reason)})"
    if run.status in TERMINAL_STATUSES:
        timing = f"took     {duration(run.updated_at - run.created_at)}, ended "
        timing += _ago(run.updated_at, now)
    else:
        timing = f"elapsed  {duration(now - run.created_at)}, last activity "
        timing += _ago(last_activity(run, by_id), now)
    lines = [
        f"run      {run.run_id}",
        f"title    {one_line(run.title)}",
        f"status   {status}",
        f"cwd      {one_line(run.cwd)}",
        timing,
    ]
    if run.owner is not None:  # a log several daemons share: pids and paths are the owner's
        lines.append(f"owner    orcad {one_line(run.owner)} (its sessions run there)")
    if (spent := usage_text(run.input_tokens, run.output_tokens, run.cost_usd)) is not None:
        lines.append(f"usage    {spent}")
    lines += _orchestration_lines(run, sessions, width)
    for session in sessions:
        lines.append("")
        lines.append(
            f"session  {session.session_id}  [{one_line(session.agent)}/{session.role}]  "
            f"{session.status}"
        )
        if session.task_id is not None:
            lines.append(f"  task     {one_line(session.task_id)} (attempt {session.attempt})")
        if session.worktree is not None:
            tree = session.worktree
            state = " (removed)" if tree.removed else ""
            where = f"{one_line(tree.path)} on branch {one_line(tree.branch)}"
            lines.append(f"  worktree {where}{state}")
        lines.append(f"  command  {one_line(' '.join(session.command))}")
        if session.pid is not None:
            lines.append(f"  pid      {session.pid}")
        if session.detached is not None and session.status not in TERMINAL_STATUSES:
            lines.append(f"  holder   not re-attached yet: {one_line(session.detached)}")
        if session.status not in TERMINAL_STATUSES:
            lines += _live_session_lines(session, now, width)
        if session.exit_code is not None:
            lines.append(f"  exit     {session.exit_code}")
        spent = usage_text(session.input_tokens, session.output_tokens, session.cost_usd)
        if spent is not None:
            lines.append(f"  usage    {spent}")
        if session.reason:
            lines.append(f"  reason   {one_line(session.reason)}")
        if session.summary:
            lines.append(f"  summary  {session.summary}")
        if session.pending is not None:
            request = one_line(session.pending.request_id)
            lines.append(f"  waiting for an answer (request id {request}):")
            for question in session.pending.questions:
                secret = " [secret]" if question.is_secret else ""
                secret += " [other answers allowed]" if question.is_other else ""
                header = f"{one_line(question.header)}: " if question.header else ""
                lines.append(
                    f"    question {one_line(question.id)}{secret}  {header}{question.question}"
                )
                for option in question.options or []:
                    lines.append(
                        f"      - {one_line(option.label)}"
                        + (f": {one_line(option.description)}" if option.description else "")
                    )
    return visible("\n".join(lines))


def usage_text(
    input_tokens: int | None, output_tokens: int | None, cost_usd: float | None
) -> str | None:
    """Tokens read and written and the cost, as far as the agent said them; None if nothing."""
    parts = []
    if input_tokens is not None or output_tokens is not None:
        parts.append(f"{input_tokens or 0:,} tokens in, {output_tokens or 0:,} out")
    if cost_usd is not None:
        parts.append(f"${cost_usd:.4f}")
    return ", ".join(parts) or None


def _live_session_lines(session: SessionInfo, now: float, width: int) -> list[str]:
    """How long a live session has run, when it last did something, what it last wrote."""
    lines = []
    if session.started_at is not None:
        activity = session.last_activity_at or session.started_at
        elapsed = duration(now - session.started_at)
        lines.append(f"  elapsed  {elapsed}, last activity {_ago(activity, now)}")
    if session.last_output_line is not None:
        lines.append(clip(f"  latest   {session.last_output_line}", width))
    return lines


def _orchestration_lines(run: RunInfo, sessions: list[SessionInfo], columns: int) -> list[str]:
    lines: list[str] = []
    if run.repo is not None:
        lines.append(f"repo     {one_line(run.repo)}")
    if run.parent_run_id is not None:
        lines.append(f"parent   {run.parent_run_id}")
    if run.kind == "fanout":
        workers = [s for s in sessions if s.role == "worker"]
        ended = sum(s.status in TERMINAL_STATUSES for s in workers)
        lines.append(f"fan-out  {run.debug_run_id}: {ended} of {len(workers)} workers ended")
        if run.orchestrator_session_id is None:
            lines.append("orchestrator  starts when every worker has ended")
        else:
            orchestrator = next(
                (s for s in sessions if s.session_id == run.orchestrator_session_id), None
            )
            state = orchestrator.status if orchestrator is not None else "?"
            lines.append(f"orchestrator  {run.orchestrator_session_id} ({state})")
        lines.append(f"task file     {one_line(run.task_file or '')}")
        if run.result:
            lines.append(f"result        {run.result}")
    if run.kind == "parent":
        lines.append(
            f"children {len(run.child_run_ids)} started, {run.orchestration_mode}: "
            f"{', '.join(run.child_run_ids) or 'none yet'} (orca status {run.run_id} --tree)"
        )
    if run.tasks:
        counts: dict[str, int] = {}
        for task in run.tasks:
            counts[task.status] = counts.get(task.status, 0) + 1
        lines.append("tasks    " + ", ".join(f"{n} {status}" for status, n in counts.items()))
        width = max(len(one_line(t.task_id)) for t in run.tasks)
        for task in run.tasks:
            detail = task.reason or ""
            if task.status == "done" and task.summary:
                detail = task.summary
            after = f" after {one_line(', '.join(task.depends_on))}" if task.depends_on else ""
            line = f"  {one_line(task.task_id).ljust(width)}  {task.status:<11}  #{task.attempt}"
            line += after
            room = columns - cells(line) - 2
            lines.append(f"{line}  {clip(detail, room)}".rstrip() if room > 10 else line)
    return lines


def run_tree(result: StatusResult, width: int | None = None) -> str:
    """A run and its descendants, one line each, indented by depth."""
    width = terminal_width() if width is None else width
    runs = {run.run_id: run for run in result.runs}
    root = result.runs[0]
    lines: list[str] = []

    def walk(run: RunInfo, depth: int) -> None:
        where = f" [{one_line(run.repo)}]" if run.repo else ""
        line = f"{'  ' * depth}{run.run_id}  {run.status:<18} {run.kind:<7}{where}"
        lines.append(f"{line}  {clip_words(run.title, max(10, width - cells(line) - 2))}")
        for child in run.child_run_ids:
            if child in runs:
                walk(runs[child], depth + 1)

    walk(root, 0)
    return visible("\n".join(lines))


def doctor_report(result: DoctorResult) -> str:
    """`orca doctor`: each live session, stuck ones first, with what to do about them."""
    now = time.time()
    if not result.sessions:
        return f"run {result.run_id} is {result.status}: no live sessions"
    lines = [f"run {result.run_id} is {result.status}; stuck after {result.stuck_after:g}s"]
    for health in sorted(result.sessions, key=lambda h: not h.stuck):
        flag = "STUCK" if health.stuck else "ok"
        task = f" task {one_line(health.task_id)}" if health.task_id else ""
        why = one_line(health.why)
        lines += ["", f"{flag:<5} {health.session_id}{task}  {health.status}: {why}"]
        if health.status != "verifying":  # the agent is done: orcad runs the commands
            lines.append(
                f"  pid {health.pid if health.pid is not None else '-'} "
                f"({'alive' if health.alive else 'not running'}), heartbeat "
                + (_ago(health.last_heartbeat, now) if health.last_heartbeat else "none")
                + ", last activity "
                + (_ago(health.last_activity_at, now) if health.last_activity_at else "none")
            )
        if health.output_tail:
            tail = health.output_tail.rstrip("\n").splitlines()[-5:]
            lines += ["  output tail:", *(f"    {one_line(line)}" for line in tail)]
        if health.stuck and health.retry_command:
            lines.append(f"  retry with: {one_line(health.retry_command)}")
    return visible("\n".join(lines))


def outcome_line(run: RunInfo, sessions: list[SessionInfo]) -> str:
    reason = f": {run.reason}" if run.reason else ""
    summaries = [run.result] if run.result else [s.summary for s in sessions if s.summary]
    summary = f" — {summaries[0]}" if (summaries and run.kind == "single") or run.result else ""
    return visible(f"run {run.run_id} {run.status}{reason}{summary}")
