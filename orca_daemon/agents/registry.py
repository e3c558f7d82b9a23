"""From a configured agent to a launch: the command line to run and the translator to drive it."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from orca_client import __version__
from orca_client.views import AgentCheck
from orca_daemon.agents.base import Translator
from orca_daemon.agents.binaries import (
    MINIMUM_VERSIONS,
    VERSION_TIMEOUT_SECONDS,
    BinaryNotFound,
    require_supported,
    select_binary,
    too_old,
    version_name,
)
from orca_daemon.agents.claude import ClaudeTranslator, claude_argv
from orca_daemon.agents.codex import CodexAppServerTranslator, CodexSettings
from orca_daemon.agents.codex_exec import CodexExecTranslator, exec_argv
from orca_daemon.agents.command import CommandTranslator
from orca_daemon.config import AgentSettings, Config, agent_names


@dataclass
class Launch:
    """What to start for one session."""

    command: list[str]
    translator: Translator
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LaunchContext:
    cwd: str
    search_path: str
    codex_path: str | None = None
    claude_path: str | None = None
    resume: str | None = None
    """The agent's own id of an earlier conversation to continue (thread / session id)."""


def command_launch(command: list[str]) -> Launch:
    return Launch(list(command), CommandTranslator())


def plan_launch(settings: AgentSettings, context: LaunchContext) -> Launch:
    """The launch for an agent; may run `--version` on candidate binaries (call off the loop)."""
    adapter = settings.adapter_name
    extra = list(settings.args or [])
    env = dict(settings.env or {})
    if adapter == "command":
        assert settings.command is not None
        return Launch([*settings.command, *extra], CommandTranslator(), env)
    if adapter == "claude":
        claude = require_supported(
            "claude",
            select_binary(
                "claude",
                override=context.claude_path,
                configured=settings.command,
                search_path=context.search_path,
            ),
        )
        argv = claude_argv(
            claude.command, model=settings.model, resume_session=context.resume, extra=extra
        )
        return Launch(
            argv, ClaudeTranslator(claude.label, settings.tool_permission or "allow"), env
        )
    codex = require_supported(
        "codex",
        select_binary(
            "codex",
            override=context.codex_path,
            configured=settings.command,
            search_path=context.search_path,
        ),
    )
    binary = list(codex.command)
    if settings.multi_agent is not None:
        binary += ["-c", f"features.multi_agent={'true' if settings.multi_agent else 'false'}"]
    if adapter == "codex" and settings.questions is not False:
        # Codex asks (item/tool/requestUserInput) only in plan mode unless this is on.
        binary += ["-c", "features.default_mode_request_user_input=true"]
    if adapter == "codex-exec":
        argv = exec_argv(
            binary,
            resume_thread=context.resume,
            model=settings.model,
            sandbox=settings.sandbox or "workspace-write",
            extra=extra,
        )
        return Launch(argv, CodexExecTranslator(codex.label), env)
    codex_settings = CodexSettings(
        label=codex.label,
        cwd=context.cwd,
        model=settings.model,
        sandbox=settings.sandbox or "workspace-write",
        approval_policy=settings.approval_policy or "never",
        client_version=__version__,
        resume_thread=context.resume,
    )
    return Launch([*binary, "app-server", *extra], CodexAppServerTranslator(codex_settings), env)


MAX_CHECKS_AT_ONCE = 32


def check_agents(
    config: Config, context: LaunchContext, timeout: float = VERSION_TIMEOUT_SECONDS
) -> list[AgentCheck]:
    """Every agent a run may name, checked at once: the binary a run started with `context`
    would run, its version, and whether Orca supports it. Runs `--version` (call off the loop);
    each check takes at most about `timeout` seconds."""
    names = agent_names(config)
    settings = [config.global_agent(name) for name in names]
    with ThreadPoolExecutor(max_workers=max(1, min(len(names), MAX_CHECKS_AT_ONCE))) as pool:
        return list(
            pool.map(
                lambda name, agent: check_agent(name, agent, context, timeout), names, settings
            )
        )


def check_agent(
    name: str, settings: AgentSettings | None, context: LaunchContext, timeout: float
) -> AgentCheck:
    """One agent, found the way `plan_launch` finds it (see `check_agents`)."""
    assert settings is not None
    kind = settings.adapter_name
    if kind == "command":
        return _check_command(name, settings)
    cli = "claude" if kind == "claude" else "codex"
    minimum = version_name(MINIMUM_VERSIONS[cli])
    configured = settings.command
    if configured and _which(configured[0], os.environ.get("PATH", "")) is None:
        detail = f"{configured[0]!r} ([agents.{name}] command) is not an executable orcad can find"
        return AgentCheck(name, kind, "not_found", False, detail, minimum=minimum)
    try:
        binary = select_binary(
            cli,
            override=context.claude_path if cli == "claude" else context.codex_path,
            configured=configured,
            search_path=context.search_path,
            timeout=timeout,
        )
    except BinaryNotFound as exc:
        return AgentCheck(name, kind, "not_found", False, str(exc), minimum=minimum)
    found = {
        "binary": binary.command[0],
        "version": version_name(binary.version) if binary.version else None,
        "version_text": binary.version_text,
        "minimum": minimum,
    }
    if not binary.runnable:
        detail = f"{binary.command[0]} does not run: {binary.version_text}"
        return AgentCheck(name, kind, "not_runnable", False, detail, **found)
    if binary.version is None:
        detail = (
            f"{binary.command[0]} --version printed no x.y.z version ({binary.version_text!r}): "
            f"Orca cannot tell whether it is {cli} {minimum} or newer"
        )
        return AgentCheck(name, kind, "unknown_version", False, detail, **found)
    problem = too_old(cli, binary)
    if problem is not None:
        return AgentCheck(name, kind, "too_old", False, problem, **found)
    detail = f"{binary.label}: supported ({cli} {minimum} or newer)"
    return AgentCheck(name, kind, "supported", True, detail, **found)


def _check_command(name: str, settings: AgentSettings) -> AgentCheck:
    """A command agent has no version to check: only whether its program can be found (on the
    PATH its environment gives it, else orcad's)."""
    assert settings.command is not None
    program = settings.command[0]
    search_path = (settings.env or {}).get("PATH") or os.environ.get("PATH", "")
    found = _which(program, search_path)
    if found is None:
        detail = f"{program!r} ([agents.{name}] command) is not an executable orcad can find"
        return AgentCheck(name, "command", "not_found", False, detail)
    detail = "a command agent: found (no version is needed)"
    return AgentCheck(name, "command", "supported", True, detail, binary=found)


def _which(program: str, search_path: str) -> str | None:
    try:
        return shutil.which(program, path=search_path)
    except (OSError, ValueError):  # a NUL byte, a name too long: nothing orcad could run
        return None
