"""A plan task's prompt: its own text with what the run learned — the summaries of the tasks it
builds on, answers given earlier in the run, and why the attempt before it failed."""

from __future__ import annotations

from orca_client.events import PlanSpec
from orca_client.plan import PlanGraph, PlanTask
from orca_client.views import RunInfo

SUMMARY_CHARS = 4000
CONTEXT_CHARS = 20_000
"""Earlier tasks' summaries in a task's prompt, at most (its direct dependencies' always)."""


def build_task_prompt(
    run: RunInfo,
    task: PlanTask,
    spec: PlanSpec,
    learned: list[tuple[str, str]],
    graph: PlanGraph | None = None,
    failed_before: tuple[str, tuple[str, str] | None] | None = None,
) -> str:
    """The task's prompt with what the run learned: answers given earlier in the run, and
    the summaries of the tasks it depends on (directly or not). `graph`: the plan's, if built.
    `failed_before`, for a retry: why the previous attempt failed and, when a verify command
    failed it, that command and the end of its output."""
    lines = [task.prompt]
    if task.acceptance:
        lines += ["", "Acceptance criteria:", *(f"- {item}" for item in task.acceptance)]
    if task.verify:
        lines += [
            "",
            "After you report done, orcad runs these commands; the task is done only if "
            "every one exits 0:",
            *(f"- {command}" for command in task.verify),
        ]
    lines += ["", f'This is task {task.id} of the plan "{spec.plan.title}" (run {run.run_id}).']
    graph = graph or PlanGraph(spec.plan.tasks)
    found: dict[int, str] = {}
    room = CONTEXT_CHARS
    ancestors = graph.ancestors_of(graph.index[task.id])  # the nearest first
    for place in ancestors:
        info = run.tasks[place]
        summary = (info.summary or "(no summary reported)")[:SUMMARY_CHARS]
        line = f"- {info.task_id} ({info.title}): {summary}"
        if found and len(line) > room:  # direct dependencies come first and always fit
            break
        found[place] = line
        room -= len(line)
    if found:
        lines += ["", "What the tasks it builds on found:"]
        lines += [found[place] for place in sorted(found)]
        left_out = len(ancestors) - len(found)
        if left_out:
            lines.append(f"({left_out} earlier tasks left out, to keep this prompt short)")
    if learned:
        lines += ["", "Answers given earlier in this run:"]
        lines += [f"- Q: {question}\n  A: {answer}" for question, answer in learned]
    if failed_before is not None:
        lines += _previous_attempt(*failed_before)
    return "\n".join(lines)


def _previous_attempt(reason: str, failed_verify: tuple[str, str] | None) -> list[str]:
    """What a retry is told of the attempt before it."""
    lines = [
        "",
        f"This is a new attempt at this task; the previous one ended: {reason[:SUMMARY_CHARS]}",
    ]
    if failed_verify is not None:
        command, tail = failed_verify
        fence = "`" * max(3, _longest_backtick_run(tail) + 1)
        lines += [f"The end of the output of `{command}`:", fence, tail.rstrip("\n"), fence]
    return lines


def _longest_backtick_run(text: str) -> int:
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return longest
