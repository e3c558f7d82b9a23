"""`orca debug`, `orca orchestrate`, `orca plan`, `orca doctor`, `orca clean`: the
orchestration commands."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orca_client.cli.common import (
    Args,
    UsageError,
    agent_lookup,
    client,
    print_json,
    wait_for_run,
    working_directory,
)

if TYPE_CHECKING:
    from orca_client.views import AgentChecks


def run(args: Args) -> int:
    """Carry out an orchestration command; returns the exit status."""
    handlers: dict[str, Callable[[Args], int]] = {
        "debug": cmd_debug,
        "orchestrate": cmd_orchestrate,
        "plan": cmd_plan,
        "doctor": cmd_doctor,
        "clean": cmd_clean,
    }
    return handlers[args.command](args)


def cmd_debug(args: Args) -> int:
    from orca_client.wire import RunStarted, StartDebug

    agents = [name.strip() for name in args.agents.split(",")]
    if not all(agents):
        raise UsageError("orca debug: --agents: empty agent name (use A,B,C)")
    prompt = " ".join(args.prompt)
    task_file = os.path.abspath(os.path.expanduser(args.task_file)) if args.task_file else None
    request = StartDebug(
        cwd=working_directory(args.cwd),
        agents=agents,
        prompt=prompt,
        orchestrator=args.orchestrator,
        task_file=task_file,
        title=args.title,
        worktree=args.worktree,
        **agent_lookup(),
    )
    with client() as connection:
        started: RunStarted = connection.request(request)
        if not args.wait:
            if args.json:
                print_json(started)
            else:
                print(started.run_id)
                print(
                    f"{len(started.session_ids)} workers; synthesis to {started.task_file}",
                    file=sys.stderr,
                )
            return 0
        workers = f"{len(started.session_ids)} workers ({', '.join(agents)})"
        code = wait_for_run(
            connection,
            started.run_id,
            as_json=args.json,
            stream_output=False,
            started=f"started: {workers}",
        )
    if not args.json:
        print(f"synthesis: {started.task_file}", file=sys.stderr)
    return code


def cmd_orchestrate(args: Args) -> int:
    from orca_client import answering
    from orca_client.wire import Orchestrate, OrchestrateResult

    with client() as connection:
        result: OrchestrateResult = connection.request(
            Orchestrate(run_id=args.run_id, requested_by=answering.who())
        )
    if args.json:
        print_json(result)
    elif result.already_triggered:
        print(f"run {result.run_id} already has its orchestrator: {result.session_id}")
    else:
        cancelled = (
            f" (cancelled {len(result.cancelled_workers)} live workers)"
            if result.cancelled_workers
            else ""
        )
        print(f"run {result.run_id}: orchestrator {result.session_id} started{cancelled}")
    return 0


def _read_plan(path: str) -> Any:
    from orca_client.plan import PlanError, parse_plan

    try:
        data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"orca plan: cannot read {path}: {exc.strerror}") from None
    try:
        return parse_plan(data)
    except PlanError as exc:
        raise UsageError(f"orca plan: {path}: {exc}") from None


def _validate(path: str, as_json: bool) -> int:
    """`orca plan validate`: every error of the plan, its agents checked against orcad's (or,
    with orcad down, config.toml's); 0 when it can run, 2 when it cannot."""
    from orca_client.plan import PlanError, parse_plan
    from orca_client.terminal_text import one_line

    try:
        data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"orca plan: cannot read {path}: {exc.strerror}") from None
    try:
        plan = parse_plan(data)
    except PlanError as exc:
        errors = exc.errors
    else:
        errors = []
        known, source, pending = _known_agents()
        named = {task.agent for task in plan.tasks if task.agent is not None}
        if known is None:
            print(one_line(f"orca plan: {path}: agents not checked: {source}"), file=sys.stderr)
        for task in plan.tasks:
            if task.agent is not None and known is not None and task.agent not in known:
                hint = (
                    "; config.toml has it, but orcad has not loaded it: orca daemon reload"
                    if task.agent in pending
                    else ""
                )
                errors.append(
                    f"task {task.id}: no agent named {task.agent!r} in {source} "
                    f"(agents: {', '.join(sorted(known))}){hint}"
                )
        if not errors and known is not None and named:
            print(f"agents checked against {source}", file=sys.stderr)
    if errors:
        for error in errors:
            print(one_line(f"orca plan: {path}: {error}"), file=sys.stderr)
        if len(errors) > 1:
            print(f"orca plan: {path}: {len(errors)} errors; the plan cannot run", file=sys.stderr)
        return 2
    if as_json:
        print_json(plan)
    else:
        edges = sum(len(task.depends_on) for task in plan.tasks)
        print(f"{path}: valid: {len(plan.tasks)} tasks, {edges} dependencies")
    return 0


def _known_agents() -> tuple[set[str] | None, str, set[str]]:
    """The agents a plan may name, where that list comes from, and the agents config.toml has
    that orcad has not loaded yet. None when neither orcad nor the config file can tell."""
    import tomllib

    from orca_client.client import Client, DaemonUnavailable, RequestFailed
    from orca_client.paths import resolve_paths
    from orca_client.plan import BUILTIN_AGENT_NAMES
    from orca_client.wire import Reload, ReloadResult

    paths = resolve_paths()
    try:
        with Client(paths, timeout=5.0) as client:
            result: ReloadResult = client.request(Reload(dry_run=True))
        pending = {
            key.removeprefix("agents.") for key in result.changed if key.startswith("agents.")
        }
        return set(result.agents), "orcad's configuration", pending
    except (DaemonUnavailable, RequestFailed):
        pass
    config = paths.config_file
    if not config.exists():
        return (
            set(BUILTIN_AGENT_NAMES),
            f"the built-in agents (no {config}; orcad is not running)",
            set(),
        )
    try:
        agents = tomllib.loads(config.read_text()).get("agents", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return None, f"orcad is not running and {config} cannot be read: {exc}", set()
    if not isinstance(agents, dict):
        return None, f"orcad is not running and {config} has no [agents.NAME] tables", set()
    return {*BUILTIN_AGENT_NAMES, *agents}, f"{config} (orcad is not running)", set()


def cmd_plan(args: Args) -> int:
    from orca_client.wire import RetryTask, RunStarted, StartPlan, TaskRetried

    if args.plan_command == "validate":
        return _validate(args.plan_file, as_json=args.json)
    if args.plan_command == "retry":
        with client() as connection:
            retried: TaskRetried = connection.request(
                RetryTask(run_id=args.run_id, task_id=args.task_id)
            )
        if args.json:
            print_json(retried)
        else:
            print(f"task {retried.task_id} of run {retried.run_id}: attempt {retried.attempt}")
        return 0
    plan = _read_plan(args.plan_file)
    request = StartPlan(
        cwd=working_directory(args.cwd),
        plan=plan,
        agent=args.agent,
        title=args.title,
        max_parallel=args.max_parallel,
        cancel_dependants=not args.keep_dependants,
        worktree=args.worktree,
        **agent_lookup(),
    )
    with client() as connection:
        started: RunStarted = connection.request(request)
        if not args.wait:
            if args.json:
                print_json(started)
            else:
                print(started.run_id)
            return 0
        return wait_for_run(
            connection,
            started.run_id,
            as_json=args.json,
            stream_output=False,
            started=f"started: a plan of {len(plan.tasks)} tasks",
        )


def cmd_doctor(args: Args) -> int:
    from orca_client import render
    from orca_client.views import DoctorResult
    from orca_client.wire import Doctor

    if args.agents:
        if args.run_id is not None or args.stuck_after is not None:
            raise UsageError(
                "orca doctor: --agents checks the agent CLIs, not a run: no RUN_ID or --stuck-after"
            )
        return _doctor_agents(args)
    if args.run_id is None:
        raise UsageError("orca doctor: give a RUN_ID, or --agents")
    if args.timeout is not None:
        raise UsageError("orca doctor: --timeout goes with --agents")
    with client() as connection:
        result: DoctorResult = connection.request(
            Doctor(run_id=args.run_id, stuck_after=args.stuck_after)
        )
    if args.json:
        print_json(result)
    else:
        print(render.doctor_report(result))
    return 0


VERSION_TIMEOUT = 10.0
"""What orcad allows one `--version` by default (`CheckAgents.timeout`)."""


def _doctor_agents(args: Args) -> int:
    """`orca doctor --agents`: exit 0 when Orca supports every agent's CLI, 1 otherwise."""
    import math

    from orca_client.wire import CheckAgents

    timeout = VERSION_TIMEOUT if args.timeout is None else args.timeout
    if not (math.isfinite(timeout) and 0 < timeout <= 30):
        raise UsageError("orca doctor: --timeout must be more than 0 and at most 30 seconds")
    with client() as connection:
        # orcad checks every agent at once, each `--version` bounded by `timeout`.
        result: AgentChecks = connection.request(
            CheckAgents(**agent_lookup(), timeout=args.timeout),
            timeout=connection.timeout + 2 * timeout,
        )
    if args.json:
        print_json(result)
    else:
        print(agents_report(result))
    return 0 if all(check.usable for check in result.agents) else 1


def agents_report(result: AgentChecks) -> str:
    """`orca doctor --agents`: one row per agent, then what is wrong with each unsupported one."""
    from orca_client.terminal_text import one_line

    states = {
        "supported": "supported",
        "not_found": "not found",
        "not_runnable": "not runnable",
        "unknown_version": "version unknown",
    }
    rows = [("AGENT", "KIND", "STATUS", "VERSION", "BINARY")]
    for check in result.agents:
        status = states.get(check.status, check.status)
        if check.status == "too_old":
            status = f"too old: needs >= {check.minimum}"
        rows.append((check.name, check.kind, status, check.version or "-", check.binary or "-"))
    widths = [max(len(one_line(row[i])) for row in rows) for i in range(4)]
    lines = [
        "  ".join(one_line(cell).ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + one_line(row[4])
        for row in rows
    ]
    problems = [check for check in result.agents if not check.usable]
    if problems:
        lines.append("")
        lines += [f"{one_line(check.name)}: {one_line(check.detail)}" for check in problems]
    return "\n".join(lines)


def cmd_clean(args: Args) -> int:
    from orca_client.wire import Clean, CleanResult

    with client() as connection:
        result: CleanResult = connection.request(Clean(run_id=args.run_id))
    if args.json:
        print_json(result)
        return 0
    for path in result.removed:
        print(f"removed {path}")
    for path in result.already_gone:
        print(f"already gone: {path}")
    if result.branches_kept:
        print(f"branches kept: {', '.join(result.branches_kept)}")
    if not (result.removed or result.already_gone):
        print(f"run {result.run_id} has no worktrees to remove")
    return 0
