"""The orchestrator that ships with Orca (`agent = "synthesizer"`): no model needed.

A command agent (docs/agent-protocol.md). It reads the orchestrator prompt orcad built, finds
each worker's section, and writes a synthesis to `$ORCA_TASK_FILE`: every worker's outcome, the
findings that several workers agree on, and each worker's own conclusion. Configure `codex` or
`claude` as `orchestration.orchestrator` for a synthesis by a model instead.

    python -m orca_daemon.synthesizer
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HEADER = re.compile(
    r"^### Worker (\d+) of (\d+): session (\S+), agent (.+): (completed|failed|cancelled)$"
)
START = re.compile(r"^(-{5,}) output of (\S+) (-{5,})$")
TASK_HEADING = "## Task given to every worker"
CONCLUSION_LINES = 3


@dataclass
class Worker:
    session_id: str
    agent: str
    status: str
    reason: str = ""
    summary: str = ""
    truncated: bool = False
    lines: list[str] = field(default_factory=list)


def parse(prompt: str) -> tuple[str, list[Worker]]:
    """The task and the workers' sections of an orchestrator prompt."""
    task: list[str] = []
    workers: list[Worker] = []
    lines = prompt.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line == TASK_HEADING:
            index += 1
            while index < len(lines) and not lines[index].startswith("## "):
                task.append(lines[index])
                index += 1
            continue
        header = HEADER.match(line)
        if header:
            workers.append(Worker(header[3], header[4], header[5]))
        elif workers and line.startswith("Reason: "):
            workers[-1].reason = line.removeprefix("Reason: ")
        elif workers and line.startswith("Summary: "):
            workers[-1].summary = line.removeprefix("Summary: ")
        elif workers and line.startswith("Output: ") and "TRUNCATED" in line:
            workers[-1].truncated = True
        elif workers and (start := START.match(line)) and start[1] == start[3]:
            end = f"{start[1]} end of output of {workers[-1].session_id} {start[1]}"
            index += 1
            while index < len(lines) and lines[index] != end:
                workers[-1].lines.append(lines[index])
                index += 1
        index += 1
    return "\n".join(task).strip(), workers


def _normal(line: str) -> str:
    return " ".join(line.lower().split())


def synthesize(task: str, workers: list[Worker]) -> str:
    """The synthesis as Markdown."""
    counts = {s: sum(w.status == s for w in workers) for s in ("completed", "failed", "cancelled")}
    out = [
        f"# Synthesis of {len(workers)} agents",
        "",
        f"**Task:** {task}",
        "",
        f"{counts['completed']} completed, {counts['failed']} failed, "
        f"{counts['cancelled']} cancelled.",
        "",
        "## Outcomes",
        "",
    ]
    for worker in workers:
        verdict = worker.summary if worker.summary not in ("", "-") else worker.reason
        out.append(f"- `{worker.session_id}` ({worker.agent}): **{worker.status}**: {verdict}")
    seen: dict[str, tuple[str, set[str]]] = {}
    for worker in workers:
        for line in worker.lines:
            key = _normal(line)
            if len(key) >= 8:
                seen.setdefault(key, (line.strip(), set()))[1].add(worker.session_id)
    shared = [(text, who) for text, who in seen.values() if len(who) > 1]
    out += ["", "## Where several agents agree", ""]
    if shared:
        shared.sort(key=lambda item: -len(item[1]))
        out += [f"- {text} ({len(who)} of {len(workers)})" for text, who in shared[:20]]
    else:
        out.append("- nothing: every agent reported something different")
    out += ["", "## Each agent's conclusion", ""]
    for worker in workers:
        tail = [line for line in worker.lines if line.strip()][-CONCLUSION_LINES:]
        cut = " (its output was truncated; the end is kept)" if worker.truncated else ""
        out.append(f"### {worker.session_id} ({worker.agent}, {worker.status}){cut}")
        out += ["", *(f"> {line}" for line in tail)] if tail else ["", "> (no output)"]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def write_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(prefix=".synthesis.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def say(message: dict[str, str]) -> None:
    print(json.dumps(message), flush=True)


def main() -> int:
    first = sys.stdin.readline()
    prompt = json.loads(first).get("text", "") if first.strip() else ""
    target = os.environ.get("ORCA_TASK_FILE")
    if not target:
        say({"type": "result", "outcome": "failed", "error": "ORCA_TASK_FILE is not set"})
        return 1
    task, workers = parse(prompt)
    if not workers:
        say({"type": "result", "outcome": "failed", "error": "the prompt names no workers"})
        return 1
    try:
        write_atomically(Path(target), synthesize(task, workers))
    except OSError as exc:
        say({"type": "result", "outcome": "failed", "error": f"cannot write {target}: {exc}"})
        return 1
    completed = sum(w.status == "completed" for w in workers)
    say({"type": "output", "text": f"wrote the synthesis of {len(workers)} agents to {target}\n"})
    summary = f"synthesized {len(workers)} agents ({completed} completed) into {target}"
    say({"type": "result", "outcome": "done", "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
