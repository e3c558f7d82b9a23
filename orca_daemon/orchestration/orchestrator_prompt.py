"""The orchestrator's prompt: every worker's identity, status and output, within limits. Pure.

Each worker's output is cut to `per_worker` characters, and all of it together to `total`, shared
fairly (a short output leaves its unused share to the others). A cut keeps the end of the output,
where agents put their conclusions, and the prompt says where and how much was cut.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerReport:
    session_id: str
    agent: str
    status: str
    reason: str | None
    summary: str | None
    output: str
    length: int | None = None
    """The whole output's length when `output` holds only its end (at least as much of it as
    any prompt shows); None when `output` is all of it."""

    @property
    def full_length(self) -> int:
        return len(self.output) if self.length is None else self.length


WORKER_HEADER = "### Worker {index} of {count}: session {session_id}, agent {agent}: {status}"
OUTPUT_START = "{fence} output of {session_id} {fence}"
OUTPUT_END = "{fence} end of output of {session_id} {fence}"


def fence_for(outputs: list[str]) -> str:
    """The dashes that delimit outputs: five, or more when an output holds five (as Markdown
    lengthens a code fence), so that no worker's output can end its own section early or
    fake another worker's."""
    fence = "-----"
    while any(fence in output for output in outputs):
        fence += "-"
    return fence


def _one_line(text: str | None) -> str:
    """A worker's reason or summary on one line, so that it cannot start a section of its own."""
    return " ".join((text or "-").split()) or "-"


def share(lengths: list[int], per_worker: int, total: int) -> list[int]:
    """How many characters of each output to keep: at most `per_worker` each and `total` in
    all, the total split evenly with any unused share passed on to longer outputs."""
    wanted = [min(length, per_worker) for length in lengths]
    if sum(wanted) <= total:
        return wanted
    kept = [0] * len(wanted)
    remaining = total
    order = sorted(range(len(wanted)), key=wanted.__getitem__)
    for done, index in enumerate(order):
        fair = remaining // (len(order) - done)
        kept[index] = min(wanted[index], fair)
        remaining -= kept[index]
    return kept


def build_orchestrator_prompt(
    *,
    debug_run_id: str,
    task: str,
    task_file: str,
    workers: list[WorkerReport],
    per_worker: int,
    total: int,
) -> tuple[str, bool]:
    """The prompt and whether any output was cut."""
    kept = share([w.full_length for w in workers], per_worker, total)
    fence = fence_for([w.output for w in workers])
    truncated = any(k < w.full_length for k, w in zip(kept, workers, strict=True))
    counts = {s: sum(w.status == s for w in workers) for s in ("completed", "failed", "cancelled")}
    lines = [
        f"You are the orchestrator of fan-out {debug_run_id}: {len(workers)} agents worked on "
        "the same task independently, and every one of them has ended. Read what each reported, "
        "weigh where they agree and where they differ (a failed or cancelled worker's partial "
        "output may still hold evidence), and write ONE synthesis: the most likely answer, the "
        "evidence for it, disagreements worth knowing, and concrete next steps.",
        "",
        f"Write your synthesis to this file: {task_file}",
        "(its path is also in the environment variable ORCA_TASK_FILE). Then report done with a "
        "one-line summary.",
        "",
        "## Task given to every worker",
        "",
        task,
        "",
        "## Workers",
        "",
        f"{len(workers)} workers: {counts['completed']} completed, {counts['failed']} failed, "
        f"{counts['cancelled']} cancelled.",
        f"Output limits: at most {per_worker} characters per worker and {total} in all. "
        + (
            "Some output was cut: where a worker's output was cut, only its end is shown, and "
            "its section says how much is missing."
            if truncated
            else "Nothing was cut."
        ),
    ]
    for index, (worker, keep) in enumerate(zip(workers, kept, strict=True), start=1):
        lines += [
            "",
            WORKER_HEADER.format(
                index=index,
                count=len(workers),
                session_id=worker.session_id,
                agent=worker.agent,
                status=worker.status,
            ),
            f"Reason: {_one_line(worker.reason)}",
            f"Summary: {_one_line(worker.summary)}",
        ]
        output, length = worker.output, worker.full_length
        if keep < length:
            cut = length - keep
            lines.append(
                f"Output: {length} characters, TRUNCATED: the first {cut} characters are "
                f"cut; the last {keep} follow."
            )
            output = output[len(output) - keep :]
        else:
            lines.append(f"Output: {length} characters.")
        lines += [
            OUTPUT_START.format(fence=fence, session_id=worker.session_id),
            output.rstrip("\n"),
            OUTPUT_END.format(fence=fence, session_id=worker.session_id),
        ]
    return "\n".join(lines) + "\n", truncated
