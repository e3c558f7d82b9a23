"""The `orca` argument parser: every command, its flags and its help."""

from __future__ import annotations

import argparse
from collections.abc import Callable

EXIT_STATUS_HELP = """exit status:
  0  success
  1  orcad refused the request, or it failed
  2  bad usage
  3  orcad is not running or not answering
  4  (--wait) the run failed
  5  (--wait) the run was cancelled"""


ANSWER_HELP = """Answer a run's pending question.

one question pending:
  orca answer RUN_ID 'any text, taken verbatim even if it starts with {'
several pending, by id:
  orca answer RUN_ID --json '{"q1": "yes", "q2": ["a", "b"]}'
  orca answer RUN_ID --json '{"answers": {"q1": {"answers": ["yes"]}}}'
no answer given:
  on a terminal, asks each question in turn (secret ones without echo)
from a script, without putting the answer on a command line (where `ps` shows it):
  echo "$ANSWER" | orca answer RUN_ID -   (one trailing newline is dropped; or --json -)

The answer must name every pending question id and no other; otherwise nothing
is sent. `orca status RUN_ID` shows the pending questions with their question ids, and
each waiting session with its request id: with several sessions waiting, pick one with
--session (and --request, to be sure the answer is for the request you read).
An agent's question that allows only its options takes an option's label or number.

On a terminal, an empty answer is refused and asked again (an empty answer is sent only
with --json '{"q1": ""}'), and so is anything but an option, by number or label, for a
question that allows only its options. Ctrl-D exits with status 2 and Ctrl-C with 130;
nothing is sent then."""


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


MCP_HELP = """Serve Orca's tools to an MCP client (Codex, Claude Code, ...) on stdin and stdout.

The MCP client starts this command itself. Register it once:
  codex mcp add orca -- orca mcp       or in ~/.codex/config.toml:  [mcp_servers.orca]
                                                                      command = "orca"
                                                                      args = ["mcp"]
  claude mcp add orca -- orca mcp      (-s user: in every project)
orca installed in a virtualenv (not on the PATH the client starts servers with): register
its full path, codex mcp add orca -- "$(command -v orca)" mcp
An orcad on a home of its own: codex mcp add orca --env ORCA_HOME=DIR -- orca mcp
(claude: -e ORCA_HOME=DIR). Codex asks before the tools that are not read-only; for codex exec,
add default_tools_approval_mode = "approve" to [mcp_servers.orca].

tools: orca_run, orca_debug, orca_plan (start work, return a run id at once); orca_wait (at
most 50 s a call: until the run ends or it or a child run asks a question; then again, from
the position it returned); orca_status; orca_logs; orca_answer (never a secret question:
only a person answers those, with orca answer); orca_cancel; orca_agents (the agents a run
may name, and whether each can run). orcad must be running (orca daemon start); until it
is, each tool call fails saying so. Needs the MCP SDK: pip install 'orca[mcp]'."""

MCP_EXIT_STATUS_HELP = """exit status:
  0  the MCP client closed stdin (it ended the session)
  2  the MCP SDK is not installed (pip install 'orca[mcp]')"""

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


BRIDGE_HELP = """Serve orcad to an editor: JSON-RPC 2.0 on stdin and stdout, one JSON object a line.

A method is a socket request (hello, status, run, debug, plan, answer, cancel, read,
subscribe, unsubscribe, ...), its params that request's fields, its result the reply's
result (status: every page). Errors: -32000 when orcad refuses (data.orca_code is orcad's
code), -32001 when orcad is not running, and JSON-RPC's own codes. A subscription's events
come as "event" notifications, in order, none missed and none twice, across overflows and
restarts of orcad; "daemon" notifications say when orcad went away and came back. The
bridge signs requests, keeps leases alive and subscribes again by itself. Only JSON-RPC goes
to stdout (diagnostics to stderr); it exits with 0 when stdin closes.

The contract, with an example session: docs/protocol.md, "The stdio bridge (for editors)".

example:
  echo '{"jsonrpc":"2.0","id":1,"method":"hello"}' | orca bridge --stdio"""


CommandFactory = Callable[[str, str, str], argparse.ArgumentParser]


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="orca",
        description="Run, watch, answer and cancel coding-agent sessions managed by orcad.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"orca {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=description,
            epilog=EXIT_STATUS_HELP,
            formatter_class=formatter,
        )
        sub.set_defaults(usage_parser=sub)
        return sub

    daemon = command(
        "daemon", "start, stop, reload, inspect or install orcad", "Manage the orcad daemon."
    )
    daemon_commands = daemon.add_subparsers(dest="daemon_command", metavar="ACTION", required=True)
    start = daemon_commands.add_parser(
        "start",
        help="start orcad in the background and wait until it is ready",
        description="Start orcad in the background (its log goes to orcad.log in the state "
        "directory) and wait until it answers. Does nothing if it is already running.",
    )
    start.add_argument("--timeout", type=float, default=15.0, help="seconds to wait (default 15)")
    start.add_argument("--json", action="store_true", help="print the daemon's hello as JSON")
    stop = daemon_commands.add_parser(
        "stop",
        help="stop orcad cleanly (running sessions keep running)",
        description="Ask orcad to stop. Running sessions keep running: each agent is held by "
        "a small holder process that outlives orcad, and the next orcad re-attaches to them "
        "(output they print meanwhile is kept, questions they ask are recorded then). With "
        "--cancel-sessions they end instead, recorded as failed: with live runs it first lists "
        "them and asks on a terminal (no: exit status 1); without a terminal it stops only with "
        "--force (else exit status 2).",
    )
    stop.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    stop.add_argument(
        "--cancel-sessions",
        action="store_true",
        help="end the running sessions (failed) instead of leaving them running",
    )
    stop.add_argument(
        "--force",
        action="store_true",
        help="with --cancel-sessions: end them without asking, even without a terminal",
    )
    reload = daemon_commands.add_parser(
        "reload",
        help="read config.toml again (as SIGHUP does)",
        description="Have orcad read its config file again. It checks the whole file first: a "
        "file with errors changes nothing and every error is listed. Agents, hooks, [notify], "
        "[orchestration] and [[repos]] apply at once (to what starts from now on; running "
        "sessions keep their settings); [daemon] settings need a restart (orca daemon stop, "
        "then start), and the reply says which changed.",
    )
    reload.add_argument("--check", action="store_true", help="only say what a reload would change")
    reload.add_argument("--json", action="store_true", help="print the result as JSON")
    status = daemon_commands.add_parser(
        "status",
        help="is orcad running? where are its files?",
        description="Show whether orcad answers, its version, pid and files.",
    )
    status.add_argument("--json", action="store_true", help="print as JSON")
    install = daemon_commands.add_parser(
        "install",
        help="write the systemd user unit and print how to enable it",
        description="Write orcad.service to your systemd user directory, with ExecStart set to "
        "this installation's orcad, and print the systemctl --user commands that enable it.",
    )
    install.add_argument("--force", action="store_true", help="overwrite an existing unit file")
    for action_parser in daemon_commands.choices.values():
        action_parser.set_defaults(usage_parser=action_parser)

    bridge = command(
        "bridge", "serve orcad to an editor: JSON-RPC over stdin and stdout", BRIDGE_HELP
    )
    bridge.epilog = "exit status:\n  0  stdin closed (or stdout did)\n  2  bad usage"
    bridge.add_argument(
        "--stdio",
        action="store_true",
        required=True,
        help="speak on stdin and stdout (the only transport today; required)",
    )
    bridge.add_argument(
        "--start",
        action="store_true",
        help="start orcad first (as `orca daemon start` does) if it is not running",
    )

    run = command(
        "run",
        "start a run: a command, or an agent such as codex or claude",
        "Start a run whose session runs CMD (it speaks the command-agent protocol, see "
        "docs/agent-protocol.md), or a configured agent (--agent) on a prompt. CMD is resolved "
        "on your PATH; it runs in --cwd.\n\nexamples:\n"
        "  orca run --title demo --prompt 'fix the bug' --wait -- python3 agent.py\n"
        "  orca run --agent codex --cwd ~/src/app 'make the failing test pass'\n"
        "  orca run --agent codex --follow-up 7933 'now add a changelog entry'",
    )
    run.add_argument(
        "--agent",
        metavar="NAME",
        help="run a configured agent (codex, codex-exec, claude, or [agents.NAME] in config.toml) "
        "on PROMPT instead of a command",
    )
    run.add_argument(
        "--follow-up",
        metavar="RUN_ID",
        help="with --agent: continue that run's conversation (same agent), so it keeps its context",
    )
    run.add_argument("--title", help="a title for the run (default: the command line)")
    run.add_argument("--cwd", default=None, help="working directory (default: the current one)")
    run.add_argument("--prompt", help="the prompt: first stdin line and $ORCA_PROMPT")
    run.add_argument("--wait", action="store_true", help="stream the output, exit by the outcome")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    where = run.add_argument_group(
        "repositories",
        "Run in configured repositories ([[repos]] in config.toml) instead of --cwd. One "
        "repository runs directly; several start a parent run with one child run each. Without "
        "--repo: the feature's repositories, else the project's, else every enabled one.",
    )
    where.add_argument(
        "--repo", action="append", default=[], metavar="NAME", help="a repository (repeatable)"
    )
    where.add_argument("--project", metavar="P", help="the project's repositories")
    where.add_argument("--feature", metavar="F", help="the feature's repositories, first")
    where.add_argument(
        "--mode",
        choices=["exec", "plan"],
        help="plan: resolve repositories even without --repo/--project/--feature",
    )
    where.add_argument(
        "--sequential",
        action="store_true",
        help="children one after another (default: in parallel); a failed child stops the rest",
    )
    where.add_argument(
        "--continue-on-failure",
        action="store_true",
        help="with --sequential: go on after a failed child",
    )
    where.add_argument(
        "--max-parallel", type=int, metavar="N", help="parallel children at once (default 4)"
    )
    run.add_argument(
        "--worktree",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the session in its own git worktree (default: the agent's `worktree` setting)",
    )
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")

    status_cmd = command(
        "status",
        "show runs, or one run with its sessions",
        "Without RUN_ID: a table of every run. With RUN_ID (or a unique prefix): the run and "
        "its sessions, a fan-out's workers and orchestrator, a plan's tasks, a parent's children.",
    )
    status_cmd.add_argument("run_id", nargs="?", metavar="RUN_ID")
    status_cmd.add_argument("--json", action="store_true", help="print as JSON")
    status_cmd.add_argument(
        "--tree", action="store_true", help="with RUN_ID: the run and all its descendant runs"
    )
    status_cmd.add_argument(
        "--all",
        action="store_true",
        help="every ended run too (default: live runs and the 50 newest)",
    )

    watch = command(
        "watch",
        "print events live",
        "Print events as they happen, from --after (default: from now). Keeps going across a "
        "daemon restart, resuming from the last event shown. Stop with Ctrl-C.",
    )
    watch.add_argument("run_id", nargs="?", metavar="RUN_ID")
    watch.add_argument(
        "--after", type=int, default=None, help="start after this log position (0: all)"
    )
    watch.add_argument("--json", action="store_true", help="one JSON event record per line")

    logs = command(
        "logs",
        "print a run's output",
        "Print the output of a run's sessions (stdout to stdout, stderr to stderr), and on "
        "stderr the whole of any summary, reason, question or prompt that orca status shortens.",
    )
    logs.add_argument("run_id", metavar="RUN_ID")
    logs.add_argument(
        "--follow", "-f", action="store_true", help="keep printing until the run ends"
    )
    logs.add_argument("--json", action="store_true", help="one JSON output event per line")
    logs.add_argument(
        "--raw",
        action="store_true",
        help="the output exactly as written, escape sequences included (by default control "
        "characters are shown as symbols, e.g. ESC as ␛, so agent output cannot drive your "
        "terminal)",
    )

    answer = command(
        "answer",
        "answer the question a run is waiting on",
        ANSWER_HELP,
    )
    answer.add_argument("run_id", metavar="RUN_ID")
    answer.add_argument("text", nargs="?", metavar="ANSWER", help="the answer to a lone question")
    answer.add_argument(
        "--json", dest="answers_json", metavar="JSON", help="answers by question id"
    )
    answer.add_argument(
        "--session",
        metavar="SESSION_ID",
        help="which session's question, when several sessions of the run are waiting (its id "
        "as orca status shows it, or the part after the run id, e.g. 2 for RUN_ID.2)",
    )
    answer.add_argument(
        "--request",
        metavar="REQUEST_ID",
        help="which pending request (its request id, as orca status shows it): the answer is "
        "refused if the session now waits on another one",
    )

    cancel = command(
        "cancel",
        "cancel a run, or one of its sessions",
        "End a run cancelled: its processes get SIGTERM, then SIGKILL after the grace period. "
        "A cancelled run stays cancelled; a parent run's live children are cancelled with it. "
        "With --session, only that session ends (a fan-out's worker, a plan task's attempt) and "
        "the run goes on.",
    )
    cancel.add_argument("run_id", metavar="RUN_ID")
    cancel.add_argument("--reason", help="why (recorded in the log)")
    cancel.add_argument(
        "--session",
        metavar="SESSION_ID",
        help="cancel only this session (e.g. one worker of a fan-out); the run goes on",
    )
    cancel.add_argument("--json", action="store_true", help="print the result as JSON")

    _add_orchestration_commands(command)
    mcp = command(
        "mcp", "serve Orca's tools to an MCP client (Codex, Claude Code) on stdio", MCP_HELP
    )
    mcp.epilog = MCP_EXIT_STATUS_HELP

    completion = command(
        "completion",
        "print a shell completion script (bash, zsh, fish)",
        "Print a script that completes orca's subcommands, flags and run ids (run ids come "
        "from orcad, when it is running).\n\nexamples:\n"
        '  eval "$(orca completion bash)"      (in ~/.bashrc)\n'
        '  eval "$(orca completion zsh)"       (in ~/.zshrc, after compinit)\n'
        "  orca completion fish | source      (in ~/.config/fish/config.fish)",
    )
    completion.add_argument("shell", choices=["bash", "zsh", "fish"])
    return parser


def _add_orchestration_commands(command: CommandFactory) -> None:
    """`orca debug`, `orchestrate`, `plan`, `doctor` and `clean`."""
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


def _version() -> str:
    from orca_client import __version__

    return __version__
