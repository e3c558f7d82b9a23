"""Plans: a JSON task graph, its validation, and the pure scheduling rules. No I/O.

A plan is `{"title": ..., "tasks": [{"id", "title", "prompt", "agent", "depends_on",
"acceptance", "verify", "max_retries"}, ...]}`. The graph must be a DAG whose dependencies all
name tasks of the plan. Shared by `orca plan validate` (client side) and orcad.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

import msgspec

TaskStatus = str
"""`pending | in_progress | done | failed | cancelled`."""
TASK_TERMINAL = frozenset({"done", "failed", "cancelled"})
TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_TASKS = 10_000
MAX_RETRIES = 20


BUILTIN_AGENT_NAMES = ("claude", "codex", "codex-exec", "synthesizer")
"""The agents orcad knows without a config file (`orca plan validate` checks offline with it)."""


class PlanError(ValueError):
    """A plan that cannot be run; `errors` lists every problem found, each naming its tasks."""

    def __init__(self, errors: list[str] | str) -> None:
        self.errors = [errors] if isinstance(errors, str) else errors
        super().__init__("; ".join(self.errors))


class PlanTask(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One task of a plan."""

    id: str
    prompt: str
    title: str = ""
    agent: str | None = None
    """A configured agent; None: the plan's default agent (from `orca plan run --agent`)."""
    depends_on: list[str] = []
    acceptance: list[str] = []
    """Acceptance criteria, given to the agent with its prompt."""
    verify: list[str] = []
    """Shell commands orcad runs in the task's directory after the agent reports success; the
    task is done only when every one exits 0."""
    max_retries: int = 0
    """Further attempts after a failed one (agent failure or a failing verify command)."""


class Plan(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    title: str
    tasks: list[PlanTask]
    summary: str = ""


def parse_plan(data: bytes | str) -> Plan:
    """Decode and validate a plan document; raises `PlanError` with everything that is wrong."""
    try:
        plan = msgspec.json.decode(data, type=Plan)
    except msgspec.ValidationError:
        raise PlanError(_shape_errors(msgspec.json.decode(data))) from None
    except msgspec.DecodeError as exc:
        raise PlanError(f"not valid JSON: {exc}") from None
    validate_plan(plan)
    return plan


def _shape_errors(document: object) -> list[str]:
    """Every shape error of a plan document that does not decode: each task on its own."""
    if not isinstance(document, dict):
        return [f"not a valid plan: Expected `object`, got `{type(document).__name__}`"]
    errors: list[str] = []
    tasks = document.get("tasks")
    if isinstance(tasks, list):
        for index, task in enumerate(tasks):
            try:
                msgspec.convert(task, PlanTask)
            except msgspec.ValidationError as exc:
                errors.append(f"not a valid plan: {_describe(exc, f'tasks[{index}]')}")
        document = {**document, "tasks": []}
    try:
        msgspec.convert(document, Plan)
    except msgspec.ValidationError as exc:
        errors.append(f"not a valid plan: {_describe(exc)}")
    return errors


def _describe(exc: msgspec.ValidationError, prefix: str = "") -> str:
    message = str(exc)
    if " - at `$." in message:
        text, _, where = message.rpartition(" - at `$.")
        return f"{prefix}{'.' if prefix else ''}{where.rstrip('`')}: {text}"
    if " - at `$[" in message:
        text, _, where = message.rpartition(" - at `$")
        return f"{prefix}{where.rstrip('`')}: {text}"
    return f"{prefix}: {message}" if prefix else message


def validate_plan(plan: Plan) -> None:
    """Every rule a plan must keep: ids, retries, dependencies, and no cycle. Raises
    `PlanError` listing every rule broken."""
    errors = plan_errors(plan)
    if errors:
        raise PlanError(errors)


def plan_errors(plan: Plan) -> list[str]:
    """Every rule the plan breaks, in plan order; [] for a plan that can run."""
    errors: list[str] = []
    if not plan.title.strip():
        errors.append("the plan needs a title")
    if not plan.tasks:
        errors.append("the plan has no tasks")
    if len(plan.tasks) > MAX_TASKS:
        errors.append(f"the plan has {len(plan.tasks)} tasks; at most {MAX_TASKS} are allowed")
        return errors
    seen: set[str] = set()
    for task in plan.tasks:
        if not TASK_ID.match(task.id):
            errors.append(
                f"task id {task.id!r} is not allowed: use letters, digits, '_', '.' or '-' "
                "(at most 64, starting with a letter or digit)"
            )
        if task.id in seen:
            errors.append(f"task id {task.id!r} is used twice")
        seen.add(task.id)
        if not task.prompt.strip():
            errors.append(f"task {task.id} has an empty prompt")
        if not 0 <= task.max_retries <= MAX_RETRIES:
            errors.append(f"task {task.id}: max_retries must be between 0 and {MAX_RETRIES}")
        if any(not command.strip() for command in task.verify):
            errors.append(f"task {task.id} has an empty verify command")
        if any("\0" in text for text in (task.prompt, task.title, *task.verify)):
            errors.append(f"task {task.id} has a NUL character in its prompt, title or verify")
    unknown = [
        f"{task.id} -> {dep}" for task in plan.tasks for dep in task.depends_on if dep not in seen
    ]
    if unknown:
        errors.append(f"unknown dependencies: {', '.join(unknown)}")
    itself = [task.id for task in plan.tasks if task.id in task.depends_on]
    if itself:
        errors.append(f"tasks that depend on themselves: {', '.join(itself)}")
    else:
        cycle = find_cycle({task.id: task.depends_on for task in plan.tasks})
        if cycle:
            errors.append(f"the plan has a dependency cycle: {' -> '.join(cycle)}")
    return errors


def find_cycle(depends_on: Mapping[str, Iterable[str]]) -> list[str]:
    """One dependency cycle as a path that ends where it starts (`a -> b -> a`), or []."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(depends_on, white)
    for root in depends_on:
        if colour[root] != white:
            continue
        path: list[str] = [root]
        stack = [iter(depends_on[root])]
        colour[root] = grey
        while stack:
            step = next(stack[-1], None)
            if step is None:
                stack.pop()
                colour[path.pop()] = black
                continue
            if colour.get(step) == grey:
                return [*path[path.index(step) :], step]
            if colour.get(step) == white:
                colour[step] = grey
                path.append(step)
                stack.append(iter(depends_on[step]))
    return []


class PlanGraph:
    """A validated plan's dependency graph, indexed once: tasks by place (their order in the
    plan), each task's dependencies and dependants by place. Building it and every walk over it
    cost time linear in the plan's size (tasks plus dependencies), whatever its shape."""

    def __init__(self, tasks: Sequence[PlanTask]) -> None:
        self.ids = [task.id for task in tasks]
        self.index = {task_id: i for i, task_id in enumerate(self.ids)}
        self.depends_on: list[list[int]] = []
        self.dependants: list[list[int]] = [[] for _ in self.ids]
        for place, task in enumerate(tasks):
            deps = [self.index[dep] for dep in dict.fromkeys(task.depends_on)]
            self.depends_on.append(deps)
            for dep in deps:
                self.dependants[dep].append(place)

    def __len__(self) -> int:
        return len(self.ids)

    def dependants_of(self, place: int) -> list[int]:
        """Every task that depends on task `place`, directly or through others, in plan order."""
        return sorted(self._reach(place, self.dependants))

    def ancestors_of(self, place: int) -> list[int]:
        """Every task that task `place` depends on, directly or through others: the nearest
        first (breadth first), each once."""
        return self._reach(place, self.depends_on)

    @staticmethod
    def _reach(place: int, edges: list[list[int]]) -> list[int]:
        """Breadth first from `place` along `edges`: each task reached, once, in the order met."""
        seen = {place}
        found: list[int] = []
        frontier = deque([place])
        while frontier:
            for step in edges[frontier.popleft()]:
                if step not in seen:
                    seen.add(step)
                    found.append(step)
                    frontier.append(step)
        return found


def dependants_of(tasks: Sequence[PlanTask], task_id: str) -> list[str]:
    """Every task that depends on `task_id`, directly or through others, in plan order."""
    graph = PlanGraph(tasks)
    return [graph.ids[i] for i in graph.dependants_of(graph.index[task_id])]


def ready_tasks(tasks: Iterable[PlanTask], status: Mapping[str, TaskStatus]) -> list[str]:
    """Pending tasks whose dependencies are all done, in plan order."""
    return [
        task.id
        for task in tasks
        if status.get(task.id) == "pending"
        and all(status.get(dep) == "done" for dep in task.depends_on)
    ]
