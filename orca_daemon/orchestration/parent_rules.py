"""What a parent run does next, from its children's statuses: pure, so it is tested as "given
these children, this decision"."""

from __future__ import annotations

from dataclasses import dataclass

from orca_client.events import ChildrenSpec, RunStatusChanged
from orca_client.views import TERMINAL_STATUSES, RunInfo


@dataclass(frozen=True)
class ParentStep:
    """Children to start (their places in `spec.targets`), or the parent's end."""

    start: list[int]
    ending: RunStatusChanged | None = None
    running: bool = False
    """The parent moves from `queued` to `running` with these starts."""


def decide_children(parent: RunInfo, children: list[RunInfo], spec: ChildrenSpec) -> ParentStep:
    """Start the children there is room for; end the parent once nothing more will run."""
    live = [c for c in children if c.status not in TERMINAL_STATUSES]
    failed = [c for c in children if c.status in ("failed", "cancelled")]
    halted = spec.mode == "sequential" and bool(failed) and not spec.continue_on_failure
    start_from = len(children)
    if halted:
        count = 0
    elif spec.mode == "parallel":
        count = spec.max_parallel - len(live)
    else:
        count = 0 if live else 1
    to_start = list(range(start_from, min(len(spec.targets), start_from + count)))
    if not to_start and not live:
        return ParentStep([], ending=parent_ending(parent, children, spec))
    return ParentStep(to_start, running=bool(to_start) and parent.status == "queued")


def parent_ending(parent: RunInfo, children: list[RunInfo], spec: ChildrenSpec) -> RunStatusChanged:
    """Completed when every child completed; failed (naming those that did not) otherwise."""
    not_started = len(spec.targets) - len(children)
    bad = [c for c in children if c.status != "completed"]
    if not bad and not not_started:
        return RunStatusChanged(
            parent.run_id, "completed", f"all {len(children)} child runs completed"
        )
    named = ", ".join(f"{c.run_id} ({c.repo}: {c.status})" for c in bad)
    reason = f"child runs that did not complete: {named}"
    if not_started:
        reason += f"; {not_started} not started (sequential, stopped at the first failure)"
    return RunStatusChanged(parent.run_id, "failed", reason)
