"""`orca`: the command line for orcad. Each command imports only what it needs, so it starts fast.

Exit status: 0 success; 1 orcad refused the request or it failed; 2 bad usage; 3 orcad is not
running or not answering; 4 a waited-for run failed; 5 a waited-for run was cancelled.
"""

from __future__ import annotations

import io
import sys
from types import SimpleNamespace

from orca_client.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Args,
    UsageError,
    check_arguments,
    say,
)

ORCHESTRATION_COMMANDS = frozenset({"debug", "orchestrate", "plan", "doctor", "clean"})
RUN_COMMANDS = frozenset({"run", "status", "watch", "logs", "cancel"})


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
    from orca_client.cli.parser import build_parser

    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command == "answer" and args.text is None and _one_operand(unknown):
        # argparse leaves an optional positional that follows an option unread: `orca answer
        # RUN --session 2 TEXT` means what `orca answer RUN TEXT --session 2` does
        args.text = unknown.pop()
    if unknown:
        (getattr(args, "usage_parser", None) or parser).error(
            f"unrecognized arguments: {' '.join(unknown)}"
        )
    return args


def _one_operand(unknown: list[str]) -> bool:
    return len(unknown) == 1 and (unknown[0] == "-" or not unknown[0].startswith("-"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for stream in (sys.stdout, sys.stderr):  # never a traceback for text the terminal lacks
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    try:
        check_arguments(argv)
        if argv == ["__complete-runs"]:  # hidden: run ids for shell completion, kept fast
            from orca_client.completion import print_run_ids

            return print_run_ids()
        args = _quick_parse(argv) or _parse(argv)
        return _carry_out(args)
    except UsageError as exc:
        say(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        return _report(exc)


def _carry_out(args: Args) -> int:
    """Run the parsed command; each command module is imported only when its command runs."""
    command = args.command
    if command in RUN_COMMANDS:
        from orca_client.cli.runs import run

        return run(args)
    if command in ORCHESTRATION_COMMANDS:
        from orca_client.cli.orchestration import run

        return run(args)
    if command == "answer":
        from orca_client.cli.answer import cmd_answer

        return cmd_answer(args)
    if command == "bridge":
        from orca_client.cli.bridge import cmd_bridge

        return cmd_bridge(args)
    if command == "mcp":
        from orca_client.cli.mcp import cmd_mcp

        return cmd_mcp(args)
    if command == "daemon":
        from orca_client.cli.daemon import cmd_daemon

        return cmd_daemon(args)
    from orca_client.cli.parser import build_parser
    from orca_client.completion import script

    sys.stdout.write(script(args.shell, build_parser()))  # completion
    return EXIT_OK


def _report(exc: Exception) -> int:
    from orca_client.client import DaemonUnavailable, OrcaClientError, RequestFailed
    from orca_client.paths import InsecurePathError

    if isinstance(exc, DaemonUnavailable):
        say(f"orca: {exc}")
        return EXIT_UNAVAILABLE
    if isinstance(exc, RequestFailed):
        say(f"orca: {exc.code}: {exc}")
        return EXIT_FAILED
    if isinstance(exc, OrcaClientError | InsecurePathError):
        say(f"orca: {exc}")
        return EXIT_FAILED
    if isinstance(exc, OSError):  # e.g. a home it may not read
        where = f": {exc.filename}" if exc.filename is not None else ""
        say(f"orca: {(exc.strerror or str(exc)).lower()}{where}")
        return EXIT_FAILED
    raise exc
