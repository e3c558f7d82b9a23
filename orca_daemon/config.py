"""The daemon's configuration: one TOML file, validated once at start-up.

A missing file means defaults. A bad file is refused with the file, the key and what was expected.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

import msgspec


class ConfigError(Exception):
    """The config file cannot be used; the message names the file and the offending key."""


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{key} must be greater than 0, got {value}")


class DaemonSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    synchronous: Literal["FULL", "EXTRA", "NORMAL"] = "FULL"
    """SQLite `synchronous` for the log; FULL makes every acknowledged append survive power loss."""
    cancel_grace_seconds: float = 5.0
    """Time between SIGTERM and SIGKILL when a session is stopped."""
    output_chunk_chars: int = 16_384
    """Largest output event; longer output is split."""
    output_flush_seconds: float = 0.05
    """Longest that output waits before it is appended."""
    max_line_bytes: int = 1 << 20
    """An agent line longer than this is recorded as plain output in pieces."""
    subscriber_queue_events: int = 10_000
    """Events a subscriber may fall behind before it is told to resume from its position."""
    watchdog_fraction: float = 0.5
    """Ping the systemd watchdog at this fraction of WatchdogSec."""

    def __post_init__(self) -> None:
        _positive("daemon.cancel_grace_seconds", self.cancel_grace_seconds)
        _positive("daemon.output_chunk_chars", self.output_chunk_chars)
        _positive("daemon.output_flush_seconds", self.output_flush_seconds)
        _positive("daemon.max_line_bytes", self.max_line_bytes)
        _positive("daemon.subscriber_queue_events", self.subscriber_queue_events)
        if not 0 < self.watchdog_fraction < 1:
            raise ValueError("daemon.watchdog_fraction must be between 0 and 1")


HookCommand = str | list[str]
"""A hook command: a list is run as is; a string is run by `/bin/sh -c`."""


class HookSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Commands run on events, each with the event as JSON on stdin, each exactly once."""

    on_question: HookCommand | None = None
    """A session asked a question (the run is now waiting for an answer)."""
    on_complete: HookCommand | None = None
    """A run completed."""
    on_error: HookCommand | None = None
    """A run failed."""
    timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        _positive("hooks.timeout_seconds", self.timeout_seconds)
        for name in ("on_question", "on_complete", "on_error"):
            command = getattr(self, name)
            if command is not None and not command:
                raise ValueError(f"hooks.{name} must name a command")

    def commands(self) -> dict[str, list[str]]:
        """The configured hooks as argv lists, by name."""
        found: dict[str, list[str]] = {}
        for name in ("on_question", "on_complete", "on_error"):
            command = getattr(self, name)
            if command is not None:
                found[name] = ["/bin/sh", "-c", command] if isinstance(command, str) else command
        return found


class Config(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    daemon: DaemonSettings = msgspec.field(default_factory=DaemonSettings)
    hooks: HookSettings = msgspec.field(default_factory=HookSettings)


def load_config(path: Path) -> Config:
    """Read and validate `path`; a missing file gives the defaults."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from None


def _describe(exc: msgspec.ValidationError) -> str:
    """msgspec says `... - at `$.daemon.x``; say `key daemon.x: ...` instead."""
    message = str(exc)
    unknown = re.match(r"Object contains unknown field `([^`]+)`(?: - at `\$\.(.+)`)?$", message)
    if unknown:
        field, where = unknown.groups()
        return f"key {where + '.' if where else ''}{field}: unknown key"
    if " - at `$." in message:
        text, _, where = message.rpartition(" - at `$.")
        return f"key {where.rstrip('`')}: {text}"
    return message
