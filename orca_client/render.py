"""How the CLI shows runs, sessions and events to a person. Pure formatting; no I/O but writes.

Text from agents (and from anyone who can start a run) goes through `visible` or `one_line`
before it reaches a terminal, so an escape sequence is shown, never obeyed.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
import unicodedata
from collections.abc import Sequence
from typing import Any

import msgspec

from orca_client.answering import answer_hint
from orca_client.wire import (
    TERMINAL_STATUSES,
    DoctorResult,
    EventRecord,
    Question,
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
    """`text` on one line, cut to `width` terminal cells with `…`."""
    text = one_line(text)
    if cells(text) <= width:
        return text
    return _cut(text, width - 1) + "…"


def clip_words(text: str, width: int) -> str:
    """`text` on one line in at most `width` terminal cells, cut at a word boundary (unless
    that loses more than half of it) with `…`."""
    text = one_line(text)
    if cells(text) <= width:
        return text
    cut = _cut(text, width - 1)
    space = cut.rfind(" ")
    if space >= len(cut) // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def cells(text: str) -> int:
    """How many terminal columns `text` takes: wide characters two, combining ones none."""
    return sum(_cell(char) for char in text)


def _cell(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in "WF" else 1


def _cut(text: str, width: int) -> str:
    """The longest start of `text` that fits in `width` cells."""
    used = 0
    for index, char in enumerate(text):
        used += _cell(char)
        if used > width:
            return text[:index]
    return text


def terminal_width() -> int:
    """The terminal's columns (`$COLUMNS` first; 80 when stdout is not a terminal)."""
    return max(40, shutil.get_terminal_size((80, 24)).columns)


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
    a waiting run, its pending questions; a fan-out, plan or parent shows its progress."""
    if not result.runs:
        return "no runs yet; start one with: orca run -- CMD"
    width = terminal_width() if width is None else width
    now = time.time()
    sessions = {s.session_id: s for s in result.sessions}
    runs = {r.run_id: r for r in result.runs}
    ordered = sorted(result.runs, key=lambda r: r.created_at)
    rows = [["RUN", "STATUS", "ACTIVITY"]]
    rows += [[r.run_id, r.status, _ago(last_activity(r, sessions), now)] for r in ordered]
    progresses = [progress(r, sessions, runs) for r in ordered]
    fixed = [max(cells(row[i]) for row in rows) for i in range(3)]
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
            lines.append(_clip(f"  · {shown}", width))
        pending = [sessions[s].pending for s in run.session_ids if s in sessions]
        questions = [q for p in pending if p is not None for q in p.questions]
        for q in questions:
            secret = " [secret]" if q.is_secret else ""
            lines.append(_clip(f"  ↳ {one_line(q.id)}{secret}: {one_line(q.question)}", width))
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
        lines.append(_clip(f"  latest   {session.last_output_line}", width))
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
            lines.append(f"{line}  {_clip(detail, room)}".rstrip() if room > 10 else line)
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
    elif kind == "question_answered":
        detail = f"{body.get('request_id')} by {body.get('answered_by')}: " + answers_text(body)
    elif kind == "question_cleared":
        detail = f"{body.get('request_id')}: {body.get('reason')}"
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


def answers_text(answered: dict[str, Any]) -> str:
    """A `question_answered` event's answers, `db=postgres, token=(secret)`: secret answers
    are never recorded, so none can be shown."""
    shown = [f"{qid}={'; '.join(map(str, a))}" for qid, a in answered.get("answers", {}).items()]
    shown += [f"{qid}=(secret)" for qid in answered.get("redacted_ids", [])]
    return ", ".join(shown) or "(no answers)"


def record_json(record: EventRecord) -> str:
    return msgspec.json.encode(record).decode()


def write_output(
    record: EventRecord, *, as_json: bool, raw: bool = False, labels: OutputLabels | None = None
) -> None:
    """Print an output event's text to stdout or stderr, its control characters made visible
    (`raw`: exactly as the agent wrote it); with `labels`, each line says whose it is."""
    body = _body(record)
    if labels is not None:
        labels.learn(body)
    if body.get("type") != "output_appended":
        return
    if as_json:
        sys.stdout.write(record_json(record) + "\n")
        sys.stdout.flush()
        return
    stream = "stderr" if body.get("stream") == "stderr" else "stdout"
    out = sys.stderr if stream == "stderr" else sys.stdout
    text = str(body.get("text", ""))
    text = text if raw else visible(text)
    if labels is not None:
        text = labels.label(str(body.get("session_id", "")), stream, text)
    out.write(text)
    out.flush()


class OutputLabels:
    """Puts the session's name before each line of a fan-out's or plan's output, as in
    `[2 codex] ` or `[build.1 codex] ` (its id after the run's, and its agent); the output of a
    run of one session is left as it is. Learns from the run's events, which come first."""

    def __init__(self) -> None:
        self.several_sessions = False
        self._names: dict[str, str] = {}
        self._unended: dict[str, str] = {}
        """Per output stream: the session whose last line has not ended yet."""

    def learn(self, body: dict[str, Any]) -> None:
        if body.get("type") == "run_created":
            self.several_sessions = body.get("kind", "single") in ("fanout", "plan")
        elif body.get("type") == "session_created":
            session_id = str(body.get("session_id"))
            short = session_id.removeprefix(f"{body.get('run_id')}.")
            self._names[session_id] = one_line(f"[{short} {body.get('agent')}] ")

    def label(self, session_id: str, stream: str, text: str) -> str:
        """`text` with the session's label at the start of each of its lines."""
        if not self.several_sessions or not text:
            return text
        name = self._names.get(session_id, one_line(f"[{session_id}] "))
        unended = self._unended.pop(stream, None)
        at_start = unended != session_id
        parts = ["\n"] if unended is not None and at_start else []  # end another's line
        lines = text.split("\n")
        for index, line in enumerate(lines):
            last = index == len(lines) - 1
            if line or not last:
                label = (name if line else name.rstrip()) if at_start else ""
                parts += [label, line, "" if last else "\n"]
            at_start = True
        if lines[-1]:
            self._unended[stream] = session_id
        return "".join(parts)


def write_notes(record: EventRecord, *, raw: bool = False) -> None:
    """On stderr, what orcad itself found that `orca logs` should show: the output of a verify
    command that failed."""
    body = _body(record)
    if body.get("type") != "verify_finished" or body.get("ok"):
        return
    code = body.get("exit_code")
    verdict = f"exit status {code}" if code is not None else "it did not finish"
    tail = str(body.get("output_tail", ""))
    sys.stderr.write(
        one_line(
            f"orca: task {body.get('task_id')} attempt {body.get('attempt')}: verify command "
            f"failed ({verdict}): {body.get('command')}"
        )
        + (":\n" if tail else "\n")
    )
    if tail:
        sys.stderr.write((tail if raw else visible(tail)).rstrip("\n") + "\n")
    sys.stderr.flush()


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


class RunProgress:
    """What a person waiting on a run is told as its events come: workers and the orchestrator
    starting and ending, tasks starting, done, failed or retried, a verify command failing, a
    question waiting for an answer (and how to give it), an answer given. Pure: events in,
    lines out."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.kind = "single"
        self.pending: dict[str, list[dict[str, Any]]] = {}
        """Question requests waiting for an answer: their questions, by request id."""
        self._sessions: dict[str, dict[str, Any]] = {}
        self._workers: dict[str, str] = {}
        """A fan-out's workers: their status, by session id."""
        self._tasks: dict[str, str] = {}

    def lines(self, record: EventRecord) -> list[str]:
        """What to say about one event of the run (often nothing)."""
        body = _body(record)
        kind = body.get("type")
        if kind == "run_created":
            self.kind = str(body.get("kind", "single"))
            plan = body.get("plan") or {}
            self._tasks = {t["id"]: "pending" for t in plan.get("plan", {}).get("tasks", [])}
        elif kind == "session_created":
            self._sessions[str(body["session_id"])] = body
            if body.get("role") == "worker" and self.kind == "fanout":
                self._workers[str(body["session_id"])] = "created"
        elif kind == "session_started":
            return self._session_line(body, "started")
        elif kind == "session_terminated":
            status = str(body.get("status"))
            if body.get("session_id") in self._workers:
                self._workers[str(body["session_id"])] = status
            reason = f": {body['reason']}" if status != "completed" and body.get("reason") else ""
            return self._session_line(body, status + reason)
        elif kind == "task_status_changed":
            return [self._task_line(body)]
        elif kind == "verify_finished" and not body.get("ok"):
            code = body.get("exit_code")
            verdict = f"exit status {code}" if code is not None else "it did not finish"
            return [f"task {body.get('task_id')}: verify failed ({verdict}): {body.get('command')}"]
        elif kind == "question_asked":
            self.pending[str(body.get("request_id"))] = list(body.get("questions", []))
            return [self.waiting_line()]
        elif kind in ("question_answered", "question_cleared"):
            if self.pending.pop(str(body.get("request_id")), None) is None:
                return []
            if kind == "question_cleared":
                return [f"question withdrawn: {body.get('reason')}"]
            return [f"answered by {body.get('answered_by')}: {answers_text(body)}"]
        return []

    def _session_line(self, body: dict[str, Any], what: str) -> list[str]:
        session_id = str(body.get("session_id"))
        created = self._sessions.get(session_id, {})
        role = created.get("role")
        if self.kind == "single" or role == "task":  # the outcome or the task says it
            return []
        short = session_id.removeprefix(f"{self.run_id}.")
        line = f"{role} {short} ({created.get('agent')}) {what}"
        if session_id in self._workers and what != "started":
            ended = sum(status in TERMINAL_STATUSES for status in self._workers.values())
            line += f" ({ended}/{len(self._workers)} workers ended)"
        return [line]

    def _task_line(self, body: dict[str, Any]) -> str:
        task_id, status = str(body.get("task_id")), str(body.get("status"))
        self._tasks[task_id] = status
        why = f": {body['reason']}" if body.get("reason") else ""
        if status == "in_progress":
            return f"task {task_id} started (attempt {body.get('attempt')})"
        if status == "pending":
            again = "runs again" if body.get("interrupted") else "retrying"
            return f"task {task_id} {again}{why}"
        done = sum(s == "done" for s in self._tasks.values())
        counted = f" ({done}/{len(self._tasks)} done)"
        return f"task {task_id} {status}{why if status != 'done' else ''}{counted}"

    def waiting_line(self) -> str:
        """`waiting for an answer: db, token — answer with: …` for the pending requests."""
        several = len(self.pending) > 1
        parts = []
        for request_id, asked in self.pending.items():
            questions = [msgspec.convert(q, Question) for q in asked]
            ids = [one_line(q.id) + (" [secret]" if q.is_secret else "") for q in questions]
            # several requests: each is named, with the option placed before the answer
            run = f"{self.run_id} --request {request_id}" if several else self.run_id
            parts.append(f"{', '.join(ids)} — answer with: {answer_hint(run, questions)}")
        return "waiting for an answer: " + "; ".join(parts)
