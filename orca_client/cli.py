"""`orca`: the command line for orcad. Each command imports only what it needs, so it starts fast.

Exit status: 0 success; 1 orcad refused the request or it failed; 2 bad usage; 3 orcad is not
running or not answering; 4 a waited-for run failed; 5 a waited-for run was cancelled.
"""

from __future__ import annotations

import io
import os
import sys
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypedDict

from orca_client.usage import UsageError

if TYPE_CHECKING:
    import argparse

    from orca_client.client import Client
    from orca_client.wire import EventRecord, RunInfo, Status, StatusResult

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_RUN_FAILED = 4
EXIT_RUN_CANCELLED = 5
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
the request id of each session's pending request (for --request).

On a terminal, an empty answer is refused and asked again (an empty answer is sent only
with --json '{"q1": ""}'), and so is anything but an option, by number or label, for a
question that allows only its options. Ctrl-D exits with status 2 and Ctrl-C with 130;
nothing is sent then."""


Args = Any
"""Parsed arguments: an argparse Namespace, or the SimpleNamespace of `_quick_parse`."""


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    import argparse

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
        help="stop orcad cleanly",
        description="Ask orcad to stop: running sessions end in a recorded state (failed) "
        "first. With live runs it first lists them and asks on a terminal (no: exit status 1); "
        "without a terminal it stops only with --force (else exit status 2).",
    )
    stop.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    stop.add_argument(
        "--force", action="store_true", help="stop without asking, even with live runs"
    )
    reload = daemon_commands.add_parser(
        "reload",
        help="read config.toml again (as SIGHUP does)",
        description="Have orcad read its config file again. It checks the whole file first: a "
        "file with errors changes nothing and every error is listed. Agents, hooks, "
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
        "--request",
        metavar="REQUEST_ID",
        help="which pending request (its request id, as orca status shows it), when several "
        "sessions are waiting",
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

    from orca_client import cli_orchestration

    cli_orchestration.add_commands(command)

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


# --------------------------------------------------------------------------- commands


def cmd_run(args: Args) -> int:
    import msgspec

    from orca_client.wire import RunStarted, StartRun

    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    cwd = working_directory(args.cwd)
    if args.agent is not None:
        after = list(args.argv)[1:] if args.prompt is None else list(args.argv)
        if "--" in after:
            command = " ".join(after[after.index("--") + 1 :])
            raise UsageError(
                f"orca run: --agent {args.agent} runs an agent on a prompt, and `-- {command}` "
                "names a command to run: they are exclusive; give one "
                "(orca run --agent NAME 'PROMPT', or orca run -- CMD ARGS)"
            )
        if args.prompt is not None and argv:
            raise UsageError("orca run: give the prompt as PROMPT or --prompt, not both")
        prompt = args.prompt if args.prompt is not None else " ".join(argv)
        if not prompt:
            raise UsageError(
                f"orca run: agent {args.agent} needs a prompt: orca run --agent NAME 'PROMPT'"
            )
        request = StartRun(
            cwd=cwd,
            agent=args.agent,
            prompt=prompt,
            title=args.title,
            follow_up=args.follow_up,
            **agent_lookup(),
        )
    else:
        if args.follow_up is not None:
            raise UsageError(
                "orca run: --follow-up continues an agent's conversation: give --agent"
            )
        if not argv:
            raise UsageError(
                "orca run: give the command to run after --, e.g. orca run -- python3 agent.py "
                "(or an agent: orca run --agent codex 'PROMPT')"
            )
        argv[0] = _resolve_program(argv[0], cwd)
        request = StartRun(command=argv, cwd=cwd, title=args.title, prompt=args.prompt)
    if args.continue_on_failure and not args.sequential:
        raise UsageError("orca run: --continue-on-failure goes with --sequential")
    request = msgspec.structs.replace(
        request,
        repos=args.repo,
        project=args.project,
        feature=args.feature,
        mode=args.mode,
        orchestration_mode="sequential" if args.sequential else "parallel",
        continue_on_failure=args.continue_on_failure,
        max_parallel=args.max_parallel,
        worktree=args.worktree,
    )
    with client() as connection:
        started: RunStarted = connection.request(request)
        if not args.wait:
            if args.json:
                print_json(started)
            else:
                print(started.run_id)
                if started.child_run_ids:
                    children = ", ".join(started.child_run_ids)
                    print(f"parent run; children so far: {children}", file=sys.stderr)
            return EXIT_OK
        return wait_for_run(
            connection, started.run_id, as_json=args.json, stream_output=not args.json
        )


def cmd_status(args: Args) -> int:
    from orca_client import render
    from orca_client.wire import Status

    if args.tree and args.run_id is None:
        raise UsageError("orca status: --tree needs a RUN_ID")
    with client() as connection:
        result = fetch_status(
            connection, Status(run_id=args.run_id, ended=None if args.all else 50, tree=args.tree)
        )
    if args.json:
        print_json(result if args.run_id is None or args.tree else _run_detail(result))
    elif args.tree:
        print(render.run_tree(result))
    elif args.run_id is None:
        print(render.runs_table(result))
    else:
        print(render.run_detail(result.runs[0], result.sessions))
    return EXIT_OK


MAX_STATUS_PAGES = 100_000


def fetch_status(connection: Client, request: Status) -> StatusResult:
    """A whole status, page after page: a run that spans pages is put back together (its
    tasks and session ids appended in order; the rest as the last page saw it)."""
    import msgspec

    from orca_client.client import OrcaClientError

    first: StatusResult = connection.request(request)
    runs = {run.run_id: run for run in first.runs}
    sessions = list(first.sessions)
    page = first
    for _ in range(MAX_STATUS_PAGES):
        if page.next_cursor is None:
            break
        page = connection.request(msgspec.structs.replace(request, cursor=page.next_cursor))
        for run in page.runs:
            before = runs.get(run.run_id)
            if before is not None:
                run = msgspec.structs.replace(
                    run,
                    tasks=[*before.tasks, *run.tasks],
                    session_ids=[*before.session_ids, *run.session_ids],
                )
            runs[run.run_id] = run
        sessions += page.sessions
    else:
        raise OrcaClientError(f"orcad's status did not end after {MAX_STATUS_PAGES} pages")
    return msgspec.structs.replace(
        first, runs=list(runs.values()), sessions=sessions, next_cursor=None
    )


def cmd_watch(args: Args) -> int:
    from orca_client import render

    with client() as connection:
        after = args.after if args.after is not None else connection.hello().head_position
        run_id = _full_run_id(connection, args.run_id) if args.run_id else None
        for record in connection.follow(after=after, run_id=run_id, on_reconnect=_say_reconnecting):
            print(
                render.record_json(record) if args.json else render.event_line(record), flush=True
            )
    return EXIT_OK


def cmd_logs(args: Args) -> int:
    from orca_client import render
    from orca_client.wire import ReadEvents, Status

    labels = None if args.json else render.OutputLabels()

    def show(record: EventRecord) -> None:
        render.write_output(record, as_json=args.json, raw=args.raw, labels=labels)
        if not args.json:
            render.write_long_texts(record, raw=args.raw)
            render.write_notes(record, raw=args.raw)

    with client() as connection:
        run_id = _full_run_id(connection, args.run_id)
        if args.follow:
            for record in connection.follow(after=0, run_id=run_id, on_reconnect=_say_reconnecting):
                show(record)
                if render.ends_run(record):
                    break
            if not args.json:
                ended: StatusResult = connection.request(Status(run_id=run_id))
                print(render.outcome_line(ended.runs[0], ended.sessions), file=sys.stderr)
            return EXIT_OK
        after = 0
        while True:
            page = connection.request(ReadEvents(after=after, limit=5000, run_id=run_id))
            for record in page.events:
                show(record)
            if not page.events:
                return EXIT_OK
            after = page.events[-1].position


def cmd_answer(args: Args) -> int:
    from orca_client import answering, render
    from orca_client.wire import Answer, AnswerResult

    if args.text is not None and args.answers_json is not None:
        raise UsageError("orca answer: give ANSWER or --json, not both")
    answers = None
    text = _strip_newline(sys.stdin.read()) if args.text == "-" else args.text
    if args.answers_json is not None:
        source = sys.stdin.read() if args.answers_json == "-" else args.answers_json
        try:
            answers = answering.parse_answers_json(source)
        except ValueError as exc:
            raise UsageError(f"orca answer: --json: {exc}") from None
    request_id = args.request
    with client() as connection:
        if text is None and answers is None:
            if not sys.stdin.isatty():
                raise UsageError(
                    "orca answer: give the answer as an argument or with --json "
                    "(there is no terminal to ask the questions on)"
                )
            try:
                request_id, answers = answering.ask_on_terminal(
                    connection, args.run_id, args.request
                )
            except EOFError:
                print(
                    "\norca answer: no answer given (end of input); nothing was sent",
                    file=sys.stderr,
                )
                return EXIT_USAGE
            except KeyboardInterrupt:
                print("\norca answer: interrupted; nothing was sent", file=sys.stderr)
                return 130
        result: AnswerResult = connection.request(
            Answer(
                run_id=args.run_id,
                text=text,
                answers=answers,
                request_id=request_id,
                answered_by=answering.who(),
            )
        )
    print(
        render.one_line(
            f"answered request {result.request_id} of run {result.run_id}; "
            f"the run is {result.status}"
        )
    )
    if not result.delivered:
        print("the agent has not read its input yet; orcad keeps the answer until it does")
    return EXIT_OK


def cmd_cancel(args: Args) -> int:
    from orca_client.wire import Cancel, CancelResult

    with client() as connection:
        result: CancelResult = connection.request(
            Cancel(run_id=args.run_id, reason=args.reason, session_id=args.session)
        )
    if args.json:
        print_json(result)
    elif args.session is not None:
        ended = "had already ended" if result.already_terminal else "cancelled"
        print(f"session {args.session} {ended}; run {result.run_id} is {result.status}")
    elif result.already_terminal:
        print(f"run {result.run_id} had already ended: {result.status}")
    else:
        print(f"run {result.run_id} cancelled")
    return EXIT_OK


def cmd_daemon(args: Args) -> int:
    from orca_client import daemon_control

    action = args.daemon_command
    if action == "start":
        return daemon_control.start(timeout=args.timeout, as_json=args.json)
    if action == "stop":
        return daemon_control.stop(timeout=args.timeout, force=args.force)
    if action == "status":
        return daemon_control.status(as_json=args.json)
    if action == "reload":
        return daemon_control.reload(check=args.check, as_json=args.json)
    return daemon_control.install(force=args.force)


def cmd_completion(args: Args) -> int:
    from orca_client import completion

    sys.stdout.write(completion.script(args.shell, build_parser()))
    return EXIT_OK


def cmd_orchestration(args: Args) -> int:
    from orca_client import cli_orchestration

    return cli_orchestration.run(args)


COMMANDS = {
    "run": cmd_run,
    "debug": cmd_orchestration,
    "orchestrate": cmd_orchestration,
    "plan": cmd_orchestration,
    "doctor": cmd_orchestration,
    "clean": cmd_orchestration,
    "status": cmd_status,
    "watch": cmd_watch,
    "logs": cmd_logs,
    "answer": cmd_answer,
    "cancel": cmd_cancel,
    "daemon": cmd_daemon,
    "completion": cmd_completion,
}


# --------------------------------------------------------------------------- helpers


def client() -> Client:
    from orca_client.client import Client

    return Client()


class AgentLookup(TypedDict):
    search_path: str | None
    codex_path: str | None
    claude_path: str | None


def agent_lookup() -> AgentLookup:
    """Where this shell finds agent CLIs, for a request's `search_path`, `codex_path` and
    `claude_path` (orcad's own PATH may be shorter); a relative binary path is made absolute."""

    def binary(variable: str) -> str | None:
        path = _environment(variable)
        return os.path.abspath(path) if path else None

    return {
        "search_path": _environment("PATH"),
        "codex_path": binary("ORCA_CODEX_PATH"),
        "claude_path": binary("ORCA_CLAUDE_PATH"),
    }


def _environment(variable: str) -> str | None:
    value = os.environ.get(variable) or None
    return None if value is None else checked_text(value, f"${variable}")


def working_directory(given: str | None) -> str:
    """`--cwd`, else the current directory, as the absolute path a request carries."""
    try:
        cwd = os.path.abspath(given or os.getcwd())
    except FileNotFoundError:
        raise UsageError("orca: the current directory no longer exists; give --cwd") from None
    return checked_text(cwd, "the working directory")


def _version() -> str:
    from orca_client import __version__

    return __version__


def _resolve_program(program: str, cwd: str) -> str:
    """An absolute path for CMD, looked up on this shell's PATH (orcad's PATH may differ)."""
    import shutil

    if os.sep in program:
        path = program if os.path.isabs(program) else os.path.join(cwd, program)
        return os.path.normpath(path)
    found = shutil.which(program)
    if found is None:
        raise UsageError(f"orca run: command not found on PATH: {program}")
    return os.path.abspath(found)


def _full_run_id(connection: Client, run_id: str) -> str:
    from orca_client.wire import Status

    result: StatusResult = connection.request(Status(run_id=run_id))
    return result.runs[0].run_id


def _run_detail(result: StatusResult) -> dict[str, Any]:
    import msgspec

    run: dict[str, Any] = msgspec.to_builtins(result.runs[0])
    run["sessions"] = msgspec.to_builtins(result.sessions)
    return run


def wait_for_run(
    connection: Client,
    run_id: str,
    *,
    as_json: bool,
    stream_output: bool,
    started: str = "started",
) -> int:
    """Follow a run until it ends (streaming its output; on stderr, its id at once, then what
    happens in it; on a terminal, offering to answer its questions), then print how it ended.
    Ctrl-C stops waiting (exit 130); the run goes on."""
    from orca_client import render, waiting
    from orca_client.wire import Status

    waiting.say(f"run {run_id} {started}; Ctrl-C stops waiting")
    ask = sys.stdin.isatty() and sys.stdout.isatty()
    try:
        waiting.RunWaiter(connection, run_id, stream_output=stream_output, ask=ask).wait()
    except KeyboardInterrupt:
        print(
            f"\norca: stopped waiting; run {run_id} goes on (cancel it with: orca cancel {run_id})",
            file=sys.stderr,
        )
        return 130
    result: StatusResult = connection.request(Status(run_id=run_id))
    run: RunInfo = result.runs[0]
    if as_json:
        print_json(_run_detail(result))
    else:
        print(render.outcome_line(run, result.sessions), file=sys.stderr)
    return {"completed": EXIT_OK, "cancelled": EXIT_RUN_CANCELLED}.get(run.status, EXIT_RUN_FAILED)


def _strip_newline(text: str) -> str:
    """Input read from stdin loses one trailing newline (as `$(...)` does); nothing else."""
    return text[:-1] if text.endswith("\n") else text


def _say_reconnecting(reason: str) -> None:
    print(f"orca: {reason}", file=sys.stderr, flush=True)


def print_json(value: Any) -> None:
    import msgspec

    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


def _quick_parse(argv: list[str]) -> SimpleNamespace | None:
    """`orca status [RUN_ID] [--json]` without argparse: the command people run most, kept fast.

    Anything else (help, errors, other commands) goes through the full parser.
    """
    if not argv or argv[0] != "status":
        return None
    rest = [a for a in argv[1:] if a != "--json"]
    if len(rest) > 1 or any(a.startswith("-") for a in rest):
        return None
    return SimpleNamespace(
        command="status",
        run_id=rest[0] if rest else None,
        json="--json" in argv,
        all=False,
        tree=False,
    )


def _parse(argv: list[str]) -> Args:
    """The parsed arguments; an unknown flag is reported with the usage of the (sub)command it
    was given to, not the top-level one."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        (getattr(args, "usage_parser", None) or parser).error(
            f"unrecognized arguments: {' '.join(unknown)}"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for stream in (sys.stdout, sys.stderr):  # never a traceback for text the terminal lacks
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    try:
        _check_arguments(argv)
        if argv == ["__complete-runs"]:  # hidden: run ids for shell completion, kept fast
            from orca_client.completion import print_run_ids

            return print_run_ids()
        args = _quick_parse(argv) or _parse(argv)
        return COMMANDS[args.command](args)
    except UsageError as exc:
        _say(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        return _report(exc)


def _report(exc: Exception) -> int:
    from orca_client.client import DaemonUnavailable, OrcaClientError, RequestFailed
    from orca_client.paths import InsecurePathError

    if isinstance(exc, DaemonUnavailable):
        _say(f"orca: {exc}")
        return EXIT_UNAVAILABLE
    if isinstance(exc, RequestFailed):
        _say(f"orca: {exc.code}: {exc}")
        return EXIT_FAILED
    if isinstance(exc, OrcaClientError | InsecurePathError):
        _say(f"orca: {exc}")
        return EXIT_FAILED
    if isinstance(exc, OSError):  # e.g. a home it may not read
        where = f": {exc.filename}" if exc.filename is not None else ""
        _say(f"orca: {(exc.strerror or str(exc)).lower()}{where}")
        return EXIT_FAILED
    raise exc


def _say(message: str) -> None:
    """One line on stderr; its text may come from orcad or an agent, so it is made inert."""
    from orca_client.render import one_line

    print(one_line(message), file=sys.stderr)


def _check_arguments(argv: list[str]) -> None:
    """Refuse arguments that are not UTF-8 (Python hands them over with surrogate escapes):
    orcad takes text only."""
    for index, argument in enumerate(argv):
        if not _is_utf8(argument):
            previous = argv[index - 1] if index else ""
            where = f" (after {previous})" if previous.startswith("-") else ""
            raise UsageError(
                f"orca: argument {index + 1}{where} is not valid UTF-8: {_as_bytes(argument)}"
            )


def checked_text(value: str, what: str) -> str:
    """`value`, which came from the system (a path, the environment); UsageError if it is not
    UTF-8, as orcad takes text only."""
    if not _is_utf8(value):
        raise UsageError(f"orca: {what} is not valid UTF-8: {_as_bytes(value)}")
    return value


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _as_bytes(text: str) -> str:
    return repr(os.fsencode(text))


if __name__ == "__main__":
    sys.exit(main())
