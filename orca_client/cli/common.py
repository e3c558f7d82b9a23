"""What every `orca` command shares: exit statuses, the usage error, the connection to orcad,
where this shell finds agents, JSON output and waiting for a run to end."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from orca_client.client import Client
    from orca_client.views import RunInfo, StatusResult

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_RUN_FAILED = 4
EXIT_RUN_CANCELLED = 5

Args = Any
"""Parsed arguments: an argparse Namespace, or the SimpleNamespace of `orca status`'s fast path."""


class UsageError(Exception):
    """A command line that cannot be carried out as given (exit status 2)."""


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


def full_run_id(connection: Client, run_id: str) -> str:
    from orca_client.wire import Status

    result: StatusResult = connection.request(Status(run_id=run_id))
    return result.runs[0].run_id


def run_detail(result: StatusResult) -> dict[str, Any]:
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
        print_json(run_detail(result))
    else:
        print(render.outcome_line(run, result.sessions), file=sys.stderr)
    return {"completed": EXIT_OK, "cancelled": EXIT_RUN_CANCELLED}.get(run.status, EXIT_RUN_FAILED)


def say_reconnecting(reason: str) -> None:
    print(f"orca: {reason}", file=sys.stderr, flush=True)


def print_json(value: Any) -> None:
    import msgspec

    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


def say(message: str) -> None:
    """One line on stderr; its text may come from orcad or an agent, so it is made inert."""
    from orca_client.terminal_text import one_line

    print(one_line(message), file=sys.stderr)


def check_arguments(argv: list[str]) -> None:
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
