"""From a configured agent to a launch: the command line to run and the translator to drive it."""

from __future__ import annotations

from dataclasses import dataclass, field

from orca_client import __version__
from orca_daemon.agents.base import Translator
from orca_daemon.agents.binaries import select_binary
from orca_daemon.agents.claude import ClaudeTranslator, claude_argv
from orca_daemon.agents.codex import CodexAppServerTranslator, CodexSettings
from orca_daemon.agents.codex_exec import CodexExecTranslator, exec_argv
from orca_daemon.agents.command import CommandTranslator
from orca_daemon.config import AgentSettings


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
        claude = select_binary(
            "claude",
            override=context.claude_path,
            configured=settings.command,
            search_path=context.search_path,
        )
        argv = claude_argv(
            claude.command, model=settings.model, resume_session=context.resume, extra=extra
        )
        return Launch(
            argv, ClaudeTranslator(claude.label, settings.tool_permission or "allow"), env
        )
    codex = select_binary(
        "codex",
        override=context.codex_path,
        configured=settings.command,
        search_path=context.search_path,
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
