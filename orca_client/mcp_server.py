"""`orca mcp`: Orca as an MCP server on stdio, built on the official `mcp` SDK (the optional extra
`orca[mcp]`), so Codex, Claude Code or any MCP client can hand work to orcad and follow it.

Each tool runs its blocking `mcp_calls` function in a worker thread with a connection of its own;
orcad's refusals, and orcad not running, come back as tool errors carrying orcad's message.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from orca_client import mcp_calls
from orca_client.client import Client, OrcaClientError, RequestFailed
from orca_client.mcp_calls import MAX_WAIT_SECONDS, Json, ToolRefused
from orca_client.paths import InsecurePathError

if TYPE_CHECKING:
    from orca_client.cli.common import AgentLookup

INSTRUCTIONS = """\
Orca (orcad) runs coding-agent sessions on this machine — Codex, Claude Code, or any configured \
command agent — durably: runs go on when you disconnect, and survive orcad restarts.
Start work with orca_run (one agent on a prompt), orca_debug (one prompt fanned out to several \
agents, whose outputs one orchestrator then synthesizes) or orca_plan (a task graph). Each \
returns a run_id at once. Then call orca_wait(run_id), and again with after=<the position it \
returned>, until it returns terminal: true. It returns early when a session asks a question: \
answer it with orca_answer, except a secret one (a password, token or key), which only a person \
answers (`orca answer RUN_ID` in a terminal). orca_status shows a run (its sessions, tasks, \
questions, result and a fan-out's synthesis) or all runs; orca_logs reads a run's output; \
orca_cancel stops a run or one of its sessions."""

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


def build_server() -> MCPServer:
    """The server with every tool registered."""
    server = MCPServer(
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
        plan's tasks, the questions it waits on and how to answer them, a fan-out's result and
        synthesis — or, without run_id, every live run and the newest ended ones in short."""
        return await _call(mcp_calls.status, run_id, ended)

    @tool(server, READS)
    async def orca_wait(
        run_id: RUN_ID,
        timeout_seconds: Annotated[
            float,
            Field(
                ge=0,
                le=MAX_WAIT_SECONDS,
                description=f"seconds to wait, at most {MAX_WAIT_SECONDS:.0f}",
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
        """Wait until the run ends, or one of its sessions asks a question, or the timeout
        passes; returns the run's status, whether it is terminal, and a position. Not terminal:
        call orca_wait again with after=position (it follows the run's events, so nothing is
        missed between calls). Without after, a question already pending returns at once. A
        pending question is in run.pending: answer it with orca_answer, unless it is secret
        (then the user answers it; waiting goes on meanwhile)."""
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
        request_id: Annotated[
            str | None,
            Field(description="which pending request, when several sessions wait"),
        ] = None,
    ) -> Json:
        """Answer the question(s) a run waits on (shown by orca_wait and orca_status under
        run.pending; an option's label, or free text where other answers are allowed). Secret
        questions (passwords, tokens, keys) are refused: only a person answers those, with
        `orca answer RUN_ID` in a terminal or in their editor."""
        return await _call(
            mcp_calls.answer,
            run_id,
            text=text,
            answers=answers,
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
        raise ToolError(f"orcad refused: {exc.code}: {exc}") from None
    except (ToolRefused, OrcaClientError, InsecurePathError) as exc:  # DaemonUnavailable too:
        raise ToolError(str(exc)) from None  # "orcad is not running ...; start it with ..."
    except OSError as exc:  # e.g. a home it may not read
        where = f": {exc.filename}" if exc.filename is not None else ""
        raise ToolError(f"{exc.strerror or exc}{where}") from None


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
