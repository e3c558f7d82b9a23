"""`orca debug`, `orca orchestrate`, `orca plan`, `orca doctor`, `orca clean`: orchestration
commands of the CLI. Parsers are added by `add_commands`; `cli.main` dispatches to `run`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from orca_client.wire import AgentChecks

Args = Any
CommandFactory = Callable[[str, str, str], "argparse.ArgumentParser"]

DEBUG_HELP = """Fan one task out to several agents, then have one orchestrator synthesize.

Each agent in --agents (configured names; one may repeat) gets PROMPT in its own session.
Once every one of them has ended (completed, failed or cancelled), orcad starts exactly one
orchestrator session (--orchestrator, default: [orchestration] orchestrator in config.toml,
which is the built-in `synthesizer`) with a prompt built from every worker's status and output,
and it writes its synthesis to the task file. The run ends with the orchestrator.

examples:
  orca debug --agents codex,claude,codex 'why does test_login fail on CI only?'
  orca debug --agents reviewer,reviewer --orchestrator codex --task-file ~/notes/bug.md 'PROMPT'
  orca cancel RUN_ID --session RUN_ID.2   (stop one worker; the others go on)
  orca orchestrate RUN_ID                 (synthesize now: live workers are cancelled)"""

PLAN_HELP = """Run a plan as a task graph, or check one.

A plan is a JSON file: {"title": "...", "tasks": [{"id": "a", "title": "...", "prompt": "...",
"agent": "codex", "depends_on": [], "acceptance": ["..."], "verify": ["pytest -q"],
"max_retries": 1}, ...]}. Dependencies must form a DAG. Ready tasks run in parallel (up to
--max-parallel); a task is done when its agent reports success and each verify command exits
0; a failed task is retried max_retries times, then fails and cancels its dependants. Each task
is told the summaries of the tasks it builds on and the answers given earlier in the run.

examples:
  orca plan validate plan.json
  orca plan run plan.json --agent codex --wait
  orca doctor RUN_ID            (stuck tasks: pid, heartbeat, output tail, retry command)
  orca plan retry RUN_ID TASK_ID"""


DOCTOR_HELP = """Diagnose a run, or the agent CLIs Orca would run.

orca doctor RUN_ID: each live session of RUN_ID (and of its child runs): pid, whether its
process is alive, its last heartbeat and activity, the tail of its output, and for a stuck
plan task the command that retries it.

orca doctor --agents: each agent a run may name (codex, codex-exec, claude, synthesizer and
every [agents.NAME] in config.toml): its kind, the binary orcad would run for a run started
from this shell (found with this shell's PATH, ORCA_CODEX_PATH, ORCA_CLAUDE_PATH, or the
agent's configured command), that binary's `--version`, and whether Orca supports it:
supported, too old (needs >= the minimum), not found, not runnable (`--version` failed or
took longer than --timeout), or version unknown. Orca supports codex >= 0.131.0 and
claude >= 2.0.0; the tests run codex 0.169.0 and claude 2.1.332.
  exit status with --agents: 0 when every agent is supported, 1 when one is not."""


def add_commands(command: CommandFactory) -> None:
    """Add the orchestration commands to the `orca` parser."""
    debug = command("debug", "fan a task out to several agents, then synthesize", DEBUG_HELP)
    debug.add_argument(
        "--agents",
        required=True,
        metavar="A,B,...",
        help="comma-separated configured agents, one worker each (names may repeat)",
    )
    debug.add_argument("--orchestrator", metavar="AGENT", help="the agent that synthesizes")
    debug.add_argument(
        "--task-file", metavar="PATH", help="where the synthesis goes (default: the run's folder)"
    )
    _common_start(debug)
    debug.add_argument("prompt", nargs="+", metavar="PROMPT")

    orchestrate = command(
        "orchestrate",
        "start a fan-out's orchestrator now",
        "Start the orchestrator of fan-out RUN_ID now, cancelling workers still running. "
        "Idempotent: a fan-out has exactly one orchestrator; asking again names the existing one.",
    )
    orchestrate.add_argument("run_id", metavar="RUN_ID")
    orchestrate.add_argument("--json", action="store_true", help="print the result as JSON")

    plan = command("plan", "run or validate a plan (a task graph)", PLAN_HELP)
    actions = plan.add_subparsers(dest="plan_command", metavar="ACTION", required=True)
    plan_run = actions.add_parser(
        "run", help="run a plan", description="Run PLAN.json as a task graph."
    )
    plan_run.add_argument("plan_file", metavar="PLAN.json", help="the plan ('-': stdin)")
    plan_run.add_argument("--agent", metavar="NAME", help="the agent of tasks that name none")
    plan_run.add_argument("--max-parallel", type=int, metavar="N", help="tasks at once")
    plan_run.add_argument(
        "--keep-dependants",
        action="store_true",
        help="a task that fails for good leaves its dependants pending instead of cancelling "
        "them (the run then fails once nothing else can run)",
    )
    _common_start(plan_run)
    validate = actions.add_parser(
        "validate",
        help="check a plan without running it",
        description="Check PLAN.json: its shape, task ids, dependencies (unknown ones, cycles). "
        "Exit status 0 when it can run, 2 when it cannot.",
    )
    validate.add_argument("plan_file", metavar="PLAN.json", help="the plan ('-': stdin)")
    validate.add_argument("--json", action="store_true", help="print the plan's tasks as JSON")
    retry = actions.add_parser(
        "retry",
        help="start a new attempt at a task in progress",
        description="Cancel TASK_ID's current session and start a new attempt (for a stuck "
        "task: see orca doctor). The new attempt counts against the task's max_retries.",
    )
    retry.add_argument("run_id", metavar="RUN_ID")
    retry.add_argument("task_id", metavar="TASK_ID")
    retry.add_argument("--json", action="store_true", help="print the result as JSON")
    for action_parser in actions.choices.values():
        action_parser.set_defaults(usage_parser=action_parser)

    doctor = command("doctor", "diagnose a run's live sessions, or the agent CLIs", DOCTOR_HELP)
    doctor.add_argument("run_id", metavar="RUN_ID", nargs="?")
    doctor.add_argument(
        "--agents",
        action="store_true",
        help="check every configured agent's CLI instead of a run (see above)",
    )
    doctor.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="--agents: how long one `--version` may take (default 10, at most 30)",
    )
    doctor.add_argument(
        "--stuck-after",
        type=float,
        metavar="SECONDS",
        help="no activity for this long counts as stuck (default: config, 600)",
    )
    doctor.add_argument("--json", action="store_true", help="print as JSON")

    clean = command(
        "clean",
        "remove an ended run's git worktrees",
        "Remove the git worktrees of RUN_ID's sessions (and of its child runs). The run must "
        "have ended. Branches are kept, so no commit is lost.",
    )
    clean.add_argument("run_id", metavar="RUN_ID")
    clean.add_argument("--json", action="store_true", help="print the result as JSON")


def _common_start(parser: argparse.ArgumentParser) -> None:
    import argparse

    parser.add_argument("--title", help="a title for the run")
    parser.add_argument("--cwd", default=None, help="working directory (default: the current one)")
    parser.add_argument(
        "--worktree",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run each session in its own git worktree, on branch orca/RUN/SESSION "
        "(default: each agent's `worktree` setting)",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="wait until the run ends, telling on stderr what happens and what it waits for "
        "(orca logs RUN_ID shows the output); exit by the outcome",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


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
    from orca_client.cli import agent_lookup, client, print_json, wait_for_run, working_directory
    from orca_client.usage import UsageError
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
    from orca_client.cli import client, print_json
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
    from orca_client.usage import UsageError

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
    from orca_client.cli import print_json
    from orca_client.plan import PlanError, parse_plan
    from orca_client.render import one_line
    from orca_client.usage import UsageError

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
    from orca_client.cli import agent_lookup, client, print_json, wait_for_run, working_directory
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
    from orca_client.cli import client, print_json
    from orca_client.usage import UsageError
    from orca_client.wire import Doctor, DoctorResult

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

    from orca_client.cli import agent_lookup, client, print_json
    from orca_client.usage import UsageError
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
    from orca_client.render import one_line

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
    from orca_client.cli import client, print_json
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
