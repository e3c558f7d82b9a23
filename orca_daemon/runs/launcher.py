"""What a session runs: its command and translator, worked out before the session is recorded.

A client's request is checked here (a missing binary, a bad command, a bad cwd are the client's
errors); a launch orcad decides on by itself (an orchestrator, a plan task, a child run) keeps its
failure to record as the session's end. Where the requesting client finds agent CLIs (its PATH
and binary overrides) is remembered per run, for the sessions orcad starts for it later.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from orca_client.events import AgentLookup, SessionCreated
from orca_client.views import RunInfo, SessionInfo
from orca_client.wire import WireError
from orca_daemon.agents.binaries import BinaryNotFound
from orca_daemon.agents.registry import Launch, LaunchContext, command_launch, plan_launch
from orca_daemon.config import Config, ConfigError
from orca_daemon.state.projection import State

MAX_TITLE_CHARS = 200


def new_run_id() -> str:
    return secrets.token_hex(6)


@dataclass
class NewSession:
    """A session about to be recorded: `created(run_id)` is its `SessionCreated`."""

    session_id: str
    agent: str
    command: list[str]
    cwd: str
    prompt: str | None
    role: str = "worker"
    debug_run_id: str | None = None
    task_id: str | None = None
    attempt: int = 1
    worktree: bool = False

    def created(self, run_id: str) -> SessionCreated:
        return SessionCreated(
            run_id,
            self.session_id,
            agent=self.agent,
            command=self.command,
            cwd=self.cwd,
            role=self.role,
            prompt=self.prompt,
            debug_run_id=self.debug_run_id,
            task_id=self.task_id,
            attempt=self.attempt,
            worktree=self.worktree,
        )


@dataclass
class Prepared:
    """A launch worked out before the session is recorded, or why there is none."""

    launch: Launch | None
    error: str | None = None
    command: list[str] = field(default_factory=list)


class Launcher:
    """Works out launches, with the configuration as reloaded (`config` is replaced on reload)."""

    def __init__(self, config: Config, state: State) -> None:
        self.config = config
        self._state = state
        self._clients: dict[str, AgentLookup] = {}

    async def prepare_launch(
        self,
        agent: str | None,
        command: Sequence[str],
        prompt: str | None,
        cwd: str,
        client: AgentLookup,
        resume: str | None = None,
    ) -> Launch:
        """What to run: `command` (a command agent), or the configured `agent` (its binary is
        found off the event loop). Raises `WireError` with what is wrong."""
        if agent is None or (agent == "command" and command):
            return command_launch(validate_command(list(command)))
        if command:
            raise WireError("bad_request", "give either a command or an agent, not both")
        if not prompt:
            raise WireError("bad_request", f"agent {agent!r} needs a prompt")
        try:
            settings = self.config.agent(agent, Path(cwd))
        except ConfigError as exc:
            raise WireError("bad_request", str(exc)) from None
        context = launch_context(client, cwd, resume)
        try:
            return await anyio.to_thread.run_sync(plan_launch, settings, context)
        except BinaryNotFound as exc:
            raise WireError("bad_request", str(exc)) from None

    async def prepare(
        self,
        run_id: str,
        agent: str,
        prompt: str | None,
        cwd: str,
        command: Sequence[str] = (),
        resume: str | None = None,
    ) -> Prepared:
        """A launch for a session decided by orcad itself (an orchestrator, a plan task, an
        agent that continues its conversation): a failure is kept to be recorded as the
        session's end, not raised."""
        client = self.client_of(run_id)
        try:
            launch = await self.prepare_launch(
                None if agent == "command" else agent, command, prompt, cwd, client, resume
            )
        except WireError as exc:
            return Prepared(None, exc.message, list(command))
        return Prepared(launch, None, launch.command)

    def remember_client(self, run_id: str, client: AgentLookup) -> None:
        self._clients[run_id] = client

    def forget_client(self, run_id: str) -> None:
        """The run has ended: nothing more is started for it."""
        self._clients.pop(run_id, None)

    def client_of(self, run_id: str) -> AgentLookup:
        """The client lookup a run was started with (a child run: its parent's), from memory
        or, after a restart, from the run's `RunCreated`."""
        known = self._clients.get(run_id)
        if known is not None:
            return known
        created = self._state.created.get(run_id)
        if created is not None and created.agent_lookup is not None:
            return created.agent_lookup
        run = self._state.runs.get(run_id)
        parent = run.parent_run_id if run is not None else None
        return self.client_of(parent) if parent is not None else AgentLookup()

    def continues_conversations(self, agent: str) -> bool:
        """True when the agent can continue a conversation of its own (Codex, Claude)."""
        configured = self.config.global_agent(agent)
        return configured is not None and configured.adapter_name != "command"

    def wants_worktree(self, agent: str | None, requested: bool | None) -> bool:
        """A request's explicit choice, else the agent's `worktree` setting, else no."""
        if requested is not None:
            return requested
        if agent is None:
            return False
        configured = self.config.global_agent(agent)
        return bool(configured is not None and configured.worktree)


def client_context(request: object) -> AgentLookup:
    """The client's agent lookup settings from a request that carries them."""
    return AgentLookup(
        search_path=getattr(request, "search_path", None),
        codex_path=getattr(request, "codex_path", None),
        claude_path=getattr(request, "claude_path", None),
    )


def launch_context(client: AgentLookup, cwd: str, resume: str | None = None) -> LaunchContext:
    """Where agent CLIs are found for a client: its lookup, else orcad's own environment."""
    return LaunchContext(
        cwd=cwd,
        search_path=client.search_path or os.environ.get("PATH", ""),
        codex_path=client.codex_path or os.environ.get("ORCA_CODEX_PATH"),
        claude_path=client.claude_path or os.environ.get("ORCA_CLAUDE_PATH"),
        resume=resume,
    )


def session_env(run: RunInfo, session: SessionInfo) -> dict[str, str]:
    """What orcad tells a session about its place in the run, as environment variables."""
    env: dict[str, str] = {}
    if session.debug_run_id is not None:
        env["ORCA_DEBUG_RUN_ID"] = session.debug_run_id
    if session.role == "orchestrator" and run.task_file is not None:
        env["ORCA_TASK_FILE"] = run.task_file
    if session.task_id is not None:
        env["ORCA_TASK_ID"] = session.task_id
        env["ORCA_TASK_ATTEMPT"] = str(session.attempt)
    if run.repo is not None:
        env["ORCA_REPO"] = run.repo
    return env


def validate_command(command: list[str]) -> list[str]:
    if not command or not command[0]:
        raise WireError("bad_request", "command must name a program to run (or give an agent)")
    if any("\0" in part for part in command):
        raise WireError("bad_request", "command arguments must not contain NUL bytes")
    return list(command)


def validate_cwd(text: str) -> str:
    cwd = Path(text)
    if not cwd.is_absolute():
        raise WireError("bad_request", f"cwd must be an absolute path, got {text!r}")
    try:
        is_directory = cwd.is_dir()
    except OSError as exc:  # e.g. under a directory orcad may not enter
        raise WireError("bad_request", f"cwd {text!r} cannot be used: {exc.strerror}") from None
    if not is_directory:
        raise WireError("bad_request", f"cwd {text!r} is not a directory")
    if not os.access(cwd, os.X_OK):
        raise WireError("bad_request", f"cwd {text!r} is not accessible")
    return str(cwd)
