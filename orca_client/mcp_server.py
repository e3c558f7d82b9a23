"""`orca mcp`: Orca as an MCP server on stdio, built on the official `mcp` SDK (the optional extra
`orca[mcp]`), so Codex, Claude Code or any MCP client can hand work to orcad and follow it.

Each tool runs its blocking `mcp_calls` function in a worker thread with a connection of its own;
orcad's refusals (in the tools' terms), orcad not running and arguments that do not fit the
tool's schema come back as tool errors saying what to do.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, InputRequiredResult, ToolAnnotations
from pydantic import Field, ValidationError
from pydantic_core import ErrorDetails

from orca_client import mcp_calls
from orca_client.client import Client, OrcaClientError, RequestFailed
from orca_client.mcp_calls import MAX_WAIT_SECONDS, ToolRefused
from orca_client.mcp_views import Json, in_tool_terms
from orca_client.paths import InsecurePathError

if TYPE_CHECKING:
    from orca_client.cli.common import AgentLookup

INSTRUCTIONS = """\
Orca (orcad) runs coding-agent sessions on this machine — Codex, Claude Code, or any configured \
command agent — durably: runs go on when you disconnect, and survive orcad restarts.
Start work with orca_run (one agent on a prompt), orca_debug (one prompt fanned out to several \
agents, whose outputs one orchestrator then synthesizes) or orca_plan (a task graph). Each \
returns a run_id at once. Then call orca_wait(run_id), and again with after=<the position it \
returned>, until it returns terminal: true. It returns early when a session (of the run or of \
one of its child runs) asks a question: answer it with orca_answer as its answer_with says, \
except a secret one (a password, token or key), which only a person answers (`orca answer \
RUN_ID` in a terminal). orca_status shows a run (its sessions, tasks, child runs, questions, \
result and a fan-out's synthesis) or all runs; orca_logs reads a run's output; orca_cancel \
stops a run or one of its sessions; orca_agents lists the agents a run may name."""

RUN_ID = Annotated[
    str, Field(description="the run's id (as a start tool returned it) or a unique prefix of it")
]
CWD = Annotated[
    str | None,
    Field(
        description="absolute path of the directory the agents work in (default: the directory "
        "this MCP server was started in)"
    ),
]
TITLE = Annotated[str | None, Field(description="a short title for the run, shown in listings")]
WORKTREE = Annotated[
    bool | None,
    Field(
        description="true: each session works in a git worktree of its own, on its own branch "
        "(cwd must be in a git repository); default: the agent's configuration"
    ),
]

CLIENT_NAME_CHARS = 80
"""How much of the MCP client's own name (it chooses it) the log keeps in `answered_by`."""

READS = ToolAnnotations(read_only_hint=True, open_world_hint=False)
STARTS = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)


class OrcaServer(MCPServer):
    """The SDK's server, refusing arguments that do not fit a tool's schema in a sentence that
    names each parameter and what it must be (the SDK passes pydantic's report on, with links
    to pydantic's documentation and the values given)."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if not isinstance(exc.__cause__, ValidationError):
                raise
            problem = exc.__cause__
        # Raised from the ValidationError: the SDK then logs the parameters' names only.
        raise ToolError(invalid_arguments(name, arguments, problem)) from problem


def build_server() -> MCPServer:
    """The server with every tool registered."""
    server = OrcaServer(
        name="orca",
        title="Orca",
        instructions=INSTRUCTIONS,
        version=_version(),
        log_level="WARNING",
    )

    @tool(server, STARTS)
    async def orca_run(
        prompt: Annotated[str, Field(description="what the agent is to do")],
        agent: Annotated[
            str,
            Field(
                description="the agent: codex, codex-exec, claude, or a name configured in "
                "orcad's config.toml ([agents.NAME])"
            ),
        ],
        cwd: CWD = None,
        title: TITLE = None,
        follow_up: Annotated[
            str | None,
            Field(
                description="a run id of the same agent whose conversation this continues "
                "(it keeps that context)"
            ),
        ] = None,
        worktree: WORKTREE = None,
    ) -> Json:
        """Start one agent session on a prompt, in the background. Returns its run_id at once;
        follow it with orca_wait, read its output with orca_logs."""
        return await _call(
            mcp_calls.start_run,
            _lookup(),
            prompt=prompt,
            agent=agent,
            cwd=_cwd(cwd),
            title=title,
            follow_up=follow_up,
            worktree=worktree,
        )

    @tool(server, STARTS)
    async def orca_debug(
        prompt: Annotated[str, Field(description="the task every worker gets, the same for each")],
        agents: Annotated[
            list[str],
            Field(
                min_length=1,
                description="one worker session per entry; names may repeat (e.g. "
                '["codex", "claude", "codex"])',
            ),
        ],
        orchestrator: Annotated[
            str | None,
            Field(
                description="the agent that synthesizes the workers' outputs once all have "
                "ended (default: orcad's configured one, the built-in synthesizer)"
            ),
        ] = None,
        cwd: CWD = None,
        title: TITLE = None,
        task_file: Annotated[
            str | None,
            Field(
                description="absolute path the synthesis is written to (default: a file in "
                "the run's folder in orcad's state directory)"
            ),
        ] = None,
        worktree: WORKTREE = None,
    ) -> Json:
        """Fan one prompt out to several agents at once (e.g. to investigate a bug from several
        angles). When every worker has ended (completed, failed or cancelled), exactly one
        orchestrator session gets their outputs and writes a synthesis to the task file. Returns
        the run_id at once; call orca_wait until terminal, then run.synthesis holds the text."""
        return await _call(
            mcp_calls.start_fanout,
            _lookup(),
            prompt=prompt,
            agents=agents,
            cwd=_cwd(cwd),
            orchestrator=orchestrator,
            title=title,
            task_file=task_file,
            worktree=worktree,
        )

    @tool(server, STARTS)
    async def orca_plan(
        plan: Annotated[
            dict[str, Any],
            Field(
                description='the plan: {"title": str, "tasks": [{"id": str, "prompt": str, '
                '"title"?: str, "agent"?: str, "depends_on"?: [task ids], "acceptance"?: [str], '
                '"verify"?: [shell commands that must exit 0], "max_retries"?: int}]}; the '
                "dependencies must form no cycle"
            ),
        ],
        agent: Annotated[str | None, Field(description="the agent of tasks that name none")] = None,
        cwd: CWD = None,
        title: TITLE = None,
        max_parallel: Annotated[
            int | None, Field(ge=1, description="tasks running at once (default 4)")
        ] = None,
        keep_dependants: Annotated[
            bool,
            Field(
                description="a task that fails for good leaves its dependants pending instead "
                "of cancelling them"
            ),
        ] = False,
        worktree: WORKTREE = None,
    ) -> Json:
        """Run a plan: a graph of tasks, each an agent session on its own prompt. Ready tasks
        run in parallel; a task is done when its agent succeeds and its verify commands exit 0;
        failures are retried max_retries times. Each task is told the summaries of the tasks it
        depends on. Returns the run_id at once; follow it with orca_wait."""
        return await _call(
            mcp_calls.start_plan,
            _lookup(),
            plan=plan,
            cwd=_cwd(cwd),
            agent=agent,
            title=title,
            max_parallel=max_parallel,
            keep_dependants=keep_dependants,
            worktree=worktree,
        )

    @tool(server, READS)
    async def orca_status(
        run_id: Annotated[
            str | None,
            Field(description="one run (its id or a unique prefix); omit it to list runs"),
        ] = None,
        ended: Annotated[
            int,
            Field(ge=0, description="when listing: how many of the newest ended runs to include"),
        ] = 20,
    ) -> Json:
        """One run in full — status, sessions (agent, status, summary, last output line), a
        plan's tasks, child runs, the questions it and its child runs wait on with how to
        answer each (answer_with), a fan-out's result and synthesis — or, without run_id,
        every live run and the newest ended ones in short (with what each asks and how to
        answer it)."""
        return await _call(mcp_calls.status, run_id, ended)

    @tool(server, READS)
    async def orca_wait(
        run_id: RUN_ID,
        timeout_seconds: Annotated[
            float,
            Field(
                ge=0,
                description=f"seconds to wait, at most {MAX_WAIT_SECONDS:.0f} (the default; a "
                f"longer value is capped at {MAX_WAIT_SECONDS:.0f})",
            ),
        ] = MAX_WAIT_SECONDS,
        after: Annotated[
            int | None,
            Field(
                ge=0,
                description="the position the previous orca_wait of this run returned: what "
                "happened up to it (a question already shown) does not end this wait",
            ),
        ] = None,
    ) -> Json:
        """Wait until the run ends, or a session of it or of one of its child runs asks a
        question, or the timeout passes; returns the run's status, whether it is terminal, and
        a position. Not terminal: call orca_wait again with after=position (it follows the
        run's events, so nothing is missed between calls). Without after, a question already
        pending returns at once. A pending question is in run.pending, with the run_id to
        answer (a child run's, for a question a child run asks) and how (answer_with):
        orca_answer, unless it is secret (then the user answers it; waiting goes on
        meanwhile)."""
        return await _call(mcp_calls.wait, run_id, timeout_seconds, after)

    @tool(server, READS)
    async def orca_logs(
        run_id: RUN_ID,
        after: Annotated[
            int,
            Field(
                ge=0, description="read output after this log position: next_after of the last call"
            ),
        ] = 0,
        max_chars: Annotated[
            int,
            Field(
                ge=1,
                le=mcp_calls.MAX_LOG_CHARS,
                description="about how many characters of output to return",
            ),
        ] = mcp_calls.LOG_CHARS,
        tail: Annotated[
            bool, Field(description="true: the last max_chars of the output instead of the first")
        ] = False,
    ) -> Json:
        """A run's output (what its agents printed, by session and stream), in order from the
        start or from `after`; at most about max_chars per call: when `more` is true, call again
        with after=next_after. With tail: only the end of it."""
        return await _call(mcp_calls.logs, run_id, after, max_chars, tail)

    @tool(server, ToolAnnotations(read_only_hint=False, destructive_hint=False))
    async def orca_answer(
        ctx: Context,
        run_id: RUN_ID,
        text: Annotated[
            str | None,
            Field(description="the answer, when the run waits on one question"),
        ] = None,
        answers: Annotated[
            dict[str, str | list[str]] | None,
            Field(
                description="answers by question id, when it waits on several: every pending "
                "question id, and no other"
            ),
        ] = None,
        session_id: Annotated[
            str | None,
            Field(
                description="which waiting session (its session_id in run.pending), when "
                "several sessions of the run wait"
            ),
        ] = None,
        request_id: Annotated[
            str | None,
            Field(description="which pending request (its request_id in run.pending)"),
        ] = None,
    ) -> Json:
        """Answer the question(s) a run waits on, as the answer_with of each entry of
        run.pending (shown by orca_wait and orca_status) says: with that entry's run_id (a
        child run's, when a child run asks); an option's label, or free text where other
        answers are allowed. Secret questions (passwords, tokens, keys) are refused: only a
        person answers those, with `orca answer RUN_ID` in a terminal or in their editor."""
        return await _call(
            mcp_calls.answer,
            run_id,
            text=text,
            answers=answers,
            session_id=session_id,
            request_id=request_id,
            answered_by=_answered_by(ctx),
        )

    @tool(server, ToolAnnotations(read_only_hint=False, destructive_hint=True))
    async def orca_cancel(
        run_id: RUN_ID,
        reason: Annotated[str | None, Field(description="why; recorded in the log")] = None,
        session_id: Annotated[
            str | None,
            Field(
                description="cancel only this session (e.g. one worker of a fan-out); the run "
                "goes on"
            ),
        ] = None,
    ) -> Json:
        """Cancel a run (its agents are interrupted, then stopped; a cancelled run stays
        cancelled), or only one of its sessions."""
        return await _call(mcp_calls.cancel, run_id, reason, session_id)

    @tool(server, READS)
    async def orca_agents() -> Json:
        """The agents a run may name — built in (codex, codex-exec, claude, synthesizer) and
        configured in orcad's config.toml — each with whether a run of it can start now
        (usable) and, if not, why. orcad runs each agent CLI's --version for it, which may
        take a few seconds."""
        return await _call(mcp_calls.agents, _lookup())

    return server


def tool(
    server: MCPServer, annotations: ToolAnnotations
) -> Callable[[Callable[..., Awaitable[Json]]], Callable[..., Awaitable[Json]]]:
    """Register a tool; its description is its docstring, on one line as a model reads it."""

    def register(function: Callable[..., Awaitable[Json]]) -> Callable[..., Awaitable[Json]]:
        description = " ".join((function.__doc__ or "").split())
        server.add_tool(function, description=description, annotations=annotations)
        return function

    return register


async def _call(function: Callable[..., Json], *args: Any, **kwargs: Any) -> Json:
    """`function(client, *args, **kwargs)` in a worker thread, on a connection of its own."""

    def blocking() -> Json:
        with Client() as client:
            return function(client, *args, **kwargs)

    try:
        return await anyio.to_thread.run_sync(blocking)
    except RequestFailed as exc:
        raise ToolError(f"orcad refused: {exc.code}: {in_tool_terms(exc.code, str(exc))}") from None
    except (ToolRefused, OrcaClientError, InsecurePathError) as exc:  # DaemonUnavailable too:
        raise ToolError(str(exc)) from None  # "orcad is not running ...; start it with ..."
    except OSError as exc:  # e.g. a home it may not read
        where = f": {exc.filename}" if exc.filename is not None else ""
        raise ToolError(f"{exc.strerror or exc}{where}") from None


WANTED = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "an object",
    "list_type": "a list",
}
"""What a value must be, by the type of pydantic's error about it."""
BOUNDS = {
    "greater_than_equal": ("at least", "ge"),
    "greater_than": ("more than", "gt"),
    "less_than_equal": ("at most", "le"),
    "less_than": ("less than", "lt"),
}
"""A bound a number must keep, by the type of pydantic's error: its words and its name."""


def invalid_arguments(tool: str, arguments: dict[str, Any], error: ValidationError) -> str:
    """`error` (arguments that do not fit the tool's schema) as one sentence: each parameter
    (or part of one) and what it must be; no value is repeated."""
    wanted: dict[str, list[str]] = {}
    for problem in error.errors(include_url=False, include_input=False):
        where = _where(problem["loc"], arguments)
        wanted.setdefault(where, []).append(_what_it_must_be(problem))
    said = "; ".join(f"{where} {_either(musts)}" for where, musts in wanted.items())
    return f"invalid arguments for {tool}: {said}"


def _where(location: tuple[int | str, ...], arguments: dict[str, Any]) -> str:
    """The parameter (and the key or index in it) a problem is about. pydantic puts the
    member of a union a value was tried as into the location; that part is left out."""
    if not location:
        return "the arguments"
    where, value = str(location[0]), arguments.get(str(location[0]))
    for part in location[1:]:
        if isinstance(value, dict) and part in value:
            where, value = f"{where}.{part}", value[part]
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            where, value = f"{where}[{part}]", value[part]
    return where


def _what_it_must_be(problem: ErrorDetails) -> str:
    kind, context = problem["type"], problem.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind in WANTED:
        return f"must be {WANTED[kind]}"
    if kind in BOUNDS and BOUNDS[kind][1] in context:
        words, bound = BOUNDS[kind]
        return f"must be {words} {_number(context[bound])}"
    if kind == "too_short" and "min_length" in context:
        return f"must have at least {_items(context['min_length'])}"
    if kind == "too_long" and "max_length" in context:
        return f"must have at most {_items(context['max_length'])}"
    message = problem["msg"]
    if message.startswith("Input should be "):
        return "must be " + message.removeprefix("Input should be ")
    return f"does not fit: {message}"


def _items(count: int) -> str:
    return f"{count} item" if count == 1 else f"{count} items"


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _either(musts: list[str]) -> str:
    """`must be a string`, `must be a list` → `must be a string or a list`."""
    if len(musts) > 1 and all(must.startswith("must be ") for must in musts):
        return "must be " + " or ".join(must.removeprefix("must be ") for must in musts)
    return "; ".join(musts)


def _cwd(given: str | None) -> str:
    if given is not None:
        return os.path.expanduser(given)
    try:
        return os.getcwd()
    except FileNotFoundError:
        raise ToolError("this server's directory no longer exists: give cwd") from None


def _lookup() -> AgentLookup:
    """Where this server's environment finds agent CLIs (as `orca run` passes its shell's)."""
    from orca_client.cli.common import UsageError, agent_lookup

    try:
        return agent_lookup()
    except UsageError as exc:
        raise ToolError(str(exc)) from None


def _answered_by(ctx: Context) -> str:
    """How the log names who answered: this server, and the MCP client it serves."""
    params = ctx.session.client_params
    client = params.client_info.name[:CLIENT_NAME_CHARS] if params is not None else "unknown client"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return f"orca-mcp:{user} via {client}"


def _version() -> str:
    from orca_client import __version__

    return __version__


def serve() -> None:
    """Serve MCP on stdin and stdout until stdin closes."""
    build_server().run("stdio")
