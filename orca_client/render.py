"""How the CLI shows runs, sessions and events to a person. Pure formatting; no I/O but writes.

Text from agents (and from anyone who can start a run) goes through `visible` or `one_line`
before it reaches a terminal, so an escape sequence is shown, never obeyed.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any

import msgspec

from orca_client.answering import answer_hint
from orca_client.wire import (
    TERMINAL_STATUSES,
    DoctorResult,
    EventRecord,
    RunInfo,
    SessionInfo,
    StatusResult,
)

RUN_ENDING_TYPE = "run_status_changed"


def _body(record: EventRecord) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.json.decode(record.event)
    return body


def _ago(at: float, now: float) -> str:
    seconds = max(0, int(now - at))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


_CONTROLS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE = re.compile(f"[{_CONTROLS}]|\r(?!\n)")
"""What a terminal may act on: C0 controls but tab, newline and the CR of a CRLF; DEL; C1
controls; bidirectional overrides and isolates; and lone surrogates (which cannot be printed)."""


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # the Unicode control picture: ESC is ␛, CR is ␍
    if code == 0x7F:
        return "␡"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` safe for a terminal: every control character shown as a symbol or an escape
    (ESC as ␛, a bare CR as ␍, C1 CSI as \\x9b), newlines and tabs kept."""
    return _UNSAFE.sub(_shown, text)


def one_line(text: str) -> str:
    """`text` safe for a terminal, on one line: newlines shown as ⏎, tabs as spaces."""
    return visible(text.replace("\r\n", "\n").replace("\n", " ⏎ ").replace("\t", " "))


def _clip(text: str, width: int) -> str:
    text = one_line(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def runs_table(result: StatusResult) -> str:
    """Every run, oldest first, one line each; under a waiting run, its pending questions."""
    if not result.runs:
        return "no runs yet; start one with: orca run -- CMD"
    now = time.time()
    sessions = {s.session_id: s for s in result.sessions}
    rows = [("RUN", "STATUS", "SESSIONS", "UPDATED", "TITLE")]
    notes: dict[int, list[str]] = {}
    for run in sorted(result.runs, key=lambda r: r.created_at):
        rows.append(
            (
                run.run_id,
                run.status,
                str(len(run.session_ids)),
                _ago(run.updated_at, now),
                _clip(run.title, 60),
            )
        )
        pending = [sessions[s].pending for s in run.session_ids if s in sessions]
        questions = [q for p in pending if p is not None for q in p.questions]
        notes[len(rows) - 1] = [
            f"  ↳ {one_line(q.id)}{' [secret]' if q.is_secret else ''}: {_clip(q.question, 90)}"
            for q in questions
        ]
        if questions:
            notes[len(rows) - 1].append(f"    answer: {answer_hint(run.run_id, questions)}")
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines: list[str] = []
    for index, row in enumerate(rows):
        lines.append(
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
        )
        lines.extend(notes.get(index, []))
    if result.ended_not_shown:
        lines.append(f"({result.ended_not_shown} older ended runs not shown: orca status --all)")
    return visible("\n".join(lines))


def run_detail(run: RunInfo, sessions: list[SessionInfo]) -> str:
    """One run with each of its sessions (a plan's tasks, a parent's children)."""
    now = time.time()
    lines = [
        f"run      {run.run_id}",
        f"title    {one_line(run.title)}",
        f"status   {run.status}" + (f" ({one_line(run.reason)})" if run.reason else ""),
        f"cwd      {one_line(run.cwd)}",
        f"created  {_ago(run.created_at, now)}, updated {_ago(run.updated_at, now)}",
    ]
    lines += _orchestration_lines(run, sessions)
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
        if session.exit_code is not None:
            lines.append(f"  exit     {session.exit_code}")
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


def _orchestration_lines(run: RunInfo, sessions: list[SessionInfo]) -> list[str]:
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
            lines.append(
                f"  {one_line(task.task_id).ljust(width)}  {task.status:<11}  "
                f"#{task.attempt}{after}  {_clip(detail, 80)}".rstrip()
            )
    return lines


def run_tree(result: StatusResult) -> str:
    """A run and its descendants, one line each, indented by depth."""
    runs = {run.run_id: run for run in result.runs}
    root = result.runs[0]
    lines: list[str] = []

    def walk(run: RunInfo, depth: int) -> None:
        where = f" [{one_line(run.repo)}]" if run.repo else ""
        lines.append(
            f"{'  ' * depth}{run.run_id}  {run.status:<18} {run.kind:<7}{where}  "
            f"{_clip(run.title, 60)}"
        )
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


def event_line(record: EventRecord) -> str:
    """One event as a single human-readable line."""
    body = _body(record)
    kind = str(body.get("type", "?"))
    stamp = time.strftime("%H:%M:%S", time.localtime(record.recorded_at))
    who = body.get("session_id") or body.get("run_id", "")
    detail = ""
    if kind == "output_appended":
        text = str(body.get("text", "")).rstrip("\n")
        detail = f"{body.get('stream')}: " + _clip(text.replace("\n", " ⏎ "), 100)
    elif kind == "run_created":
        detail = f"{body.get('title')!r} in {body.get('cwd')}"
    elif kind == "session_created":
        detail = " ".join(body.get("command", []))
    elif kind == "session_started":
        detail = f"pid {body.get('pid')}"
    elif kind in ("session_terminated", "run_status_changed"):
        detail = str(body.get("status")) + (f" ({body['reason']})" if body.get("reason") else "")
    elif kind == "question_asked":
        detail = ", ".join(q.get("id", "?") for q in body.get("questions", []))
    elif kind == "task_status_changed":
        detail = f"{body.get('task_id')} {body.get('status')}" + (
            f" ({body['reason']})" if body.get("reason") else ""
        )
    elif kind == "verify_finished":
        verdict = "passed" if body.get("ok") else f"failed ({body.get('exit_code')})"
        detail = f"{body.get('task_id')}: {verdict}: {body.get('command')}"
    elif kind == "orchestrator_triggered":
        detail = f"{body.get('session_id')} by {body.get('triggered_by')}"
    elif kind == "orchestration_finished":
        detail = f"{body.get('status')}: {body.get('task_file')}"
    elif kind in ("worktree_created", "worktree_removed"):
        detail = str(body.get("path")) + (f" on {body['branch']}" if body.get("branch") else "")
    return one_line(f"{record.position:>7} {stamp} {who:<15} {kind:<18} {detail}".rstrip())


def record_json(record: EventRecord) -> str:
    return msgspec.json.encode(record).decode()


def write_output(record: EventRecord, *, as_json: bool, raw: bool = False) -> None:
    """Print an output event's text to stdout or stderr, its control characters made visible
    (`raw`: exactly as the agent wrote it)."""
    body = _body(record)
    if body.get("type") != "output_appended":
        return
    if as_json:
        sys.stdout.write(record_json(record) + "\n")
        sys.stdout.flush()
        return
    out = sys.stderr if body.get("stream") == "stderr" else sys.stdout
    text = str(body.get("text", ""))
    out.write(text if raw else visible(text))
    out.flush()


def ends_run(record: EventRecord) -> bool:
    """True for the event that moves a run into a terminal status."""
    body = _body(record)
    return body.get("type") == RUN_ENDING_TYPE and body.get("status") in TERMINAL_STATUSES


def outcome_line(run: RunInfo, sessions: list[SessionInfo]) -> str:
    reason = f": {run.reason}" if run.reason else ""
    summaries = [run.result] if run.result else [s.summary for s in sessions if s.summary]
    summary = f" — {summaries[0]}" if (summaries and run.kind == "single") or run.result else ""
    return visible(f"run {run.run_id} {run.status}{reason}{summary}")


def long_texts(record: EventRecord) -> list[tuple[str, str]]:
    """The texts of an event that `orca status` shows only the start of (`view_text`), each
    with what it is: an agent's summary, a reason, a question, a prompt."""
    from orca_client.view_text import is_long

    body = _body(record)
    kind = body.get("type")
    who = body.get("session_id") or body.get("run_id", "")
    found: list[tuple[str, Any]] = []
    if kind in ("session_terminated", "run_status_changed", "task_status_changed"):
        what = f"task {body.get('task_id')}" if kind == "task_status_changed" else who
        found += [(f"{what} {field}", body.get(field)) for field in ("reason", "summary")]
    elif kind == "orchestration_finished":
        found.append((f"{who} result", body.get("summary")))
    elif kind == "run_created":
        found.append((f"{who} prompt", body.get("prompt")))
    elif kind == "question_asked":
        for question in body.get("questions", []):
            asked = f"{who} question {question.get('id')}"
            found += [(f"{asked} {field}", question.get(field)) for field in ("header", "question")]
            for number, option in enumerate(question.get("options") or [], 1):
                found += [
                    (f"{asked} option {number} {field}", option.get(field))
                    for field in ("label", "description")
                ]
    return [(what, text) for what, text in found if isinstance(text, str) and is_long(text)]


def write_long_texts(record: EventRecord, *, raw: bool = False) -> None:
    """On stderr, the whole of each text of an event that `orca status` shortens (its control
    characters made visible unless `raw`)."""
    for what, text in long_texts(record):
        shown = text if raw else visible(text)
        sys.stderr.write(f"orca: {visible(what)} ({len(text):,} characters):\n{shown}\n")
    sys.stderr.flush()
