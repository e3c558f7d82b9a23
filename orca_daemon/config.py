"""The daemon's configuration: one TOML file, validated at start-up and at each reload.

A missing file means defaults. A bad file is refused with the file, the key and what was expected;
every number has a range (`RANGES`), so no value can starve the machine or lift a limit.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
import tomllib
import urllib.parse
from pathlib import Path
from typing import Literal, TypeVar

import msgspec

T = TypeVar("T")


class ConfigError(Exception):
    """The config file cannot be used; the message names the file and the offending key."""


RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "daemon": {
        "cancel_grace_seconds": (0.1, 30.0),  # stopping must fit in the unit's TimeoutStopSec=60
        "output_chunk_chars": (256, 1 << 20),
        "output_flush_seconds": (0.001, 5.0),
        "orphan_timeout_seconds": (1.0, 30 * 86_400.0),
        "snapshot_every_events": (100, 10_000_000),
        "max_line_bytes": (1024, 16 << 20),
        "subscriber_queue_events": (10, 100_000),
        "subscription_lease_seconds": (1.0, 3600.0),
        "watchdog_fraction": (0.1, 0.9),
        "lease_seconds": (3.0, 600.0),
    },
    "hooks": {"timeout_seconds": (0.1, 3600.0)},
    "notify": {"timeout_seconds": (0.1, 300.0), "give_up_after_seconds": (1.0, 7 * 86_400.0)},
    "orchestration": {
        "per_worker_chars": (100, 10_000_000),
        "total_chars": (100, 10_000_000),
        "max_parallel_children": (1, 256),
        "max_parallel_tasks": (1, 256),
        "verify_timeout_seconds": (0.1, 86_400.0),
        "stuck_after_seconds": (1.0, 604_800.0),
        "heartbeat_seconds": (0.1, 3600.0),
    },
}
"""The allowed range of every number in config.toml, by section and key (both ends included)."""


def _check_ranges(section: str, settings: msgspec.Struct) -> None:
    for key, (low, high) in RANGES[section].items():
        value = getattr(settings, key)
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(
                f"{section}.{key}: must be between {_number(low)} and {_number(high)}, "
                f"got {_number(value)}"
            )


def _number(value: float) -> str:
    return str(int(value)) if math.isfinite(value) and float(value).is_integer() else repr(value)


class DaemonSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str | None = None
    """This daemon's name, shown in status (unset: the host's name and a digest of ORCA_HOME,
    so that daemons sharing a log, even on one machine, have different names)."""
    lease_seconds: float = 15.0
    """With a log several daemons share: how long this daemon's lease lasts unless renewed
    (it renews it every third of that); once it has run out, another daemon may take over its
    runs."""
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
    subscription_lease_seconds: float = 60.0
    """A subscriber that neither sends a request nor takes an event for this long is dropped."""
    watchdog_fraction: float = 0.5
    """Ping the systemd watchdog at this fraction of WatchdogSec."""
    orphan_timeout_seconds: float = 86_400.0
    """How long a session's holder keeps its agent running with no orcad attached (orcad
    stopped and was not started again); then it stops the agent and keeps its exit status."""
    snapshot_every_events: int = 50_000
    """Save the projection (run and session status) after this many new events, and at every
    stop: a restart then reads the snapshot and folds only the events after it."""

    def __post_init__(self) -> None:
        _check_ranges("daemon", self)
        if self.name is not None and not DAEMON_NAME.fullmatch(self.name):
            raise ValueError(
                f"daemon.name: 1 to 64 letters, digits, '.', '_' or '-', got {self.name!r}"
            )


DAEMON_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
LOG_URL_VARIABLE = "ORCA_LOG_URL"


class LogSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Where the event log is."""

    url: str | None = None
    """A PostgreSQL database, `postgresql://user@host:port/db`, for a log several orcad daemons
    share (`ORCA_LOG_URL` overrides it); unset: the SQLite file in orcad's state directory.
    A password is better kept in ~/.pgpass or PGPASSWORD than here."""

    def __post_init__(self) -> None:
        if self.url is not None and not self.url.startswith(("postgresql://", "postgres://")):
            raise ValueError("log.url: must be a postgresql:// URL")


HOOK_NAMES = (
    "on_question",
    "on_complete",
    "on_error",
    "on_task_complete",
    "on_task_fail",
    "on_orchestrated",
)
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
    on_task_complete: HookCommand | None = None
    """A plan task is done (its agent succeeded and every verify command passed)."""
    on_task_fail: HookCommand | None = None
    """A plan task failed for good (no retries left)."""
    on_orchestrated: HookCommand | None = None
    """A fan-out's orchestrator ended (the event names the synthesis file)."""
    timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        _check_ranges("hooks", self)
        for name in HOOK_NAMES:
            command = getattr(self, name)
            if command is not None and not command:
                raise ValueError(f"hooks.{name} must name a command")

    def commands(self) -> dict[str, list[str]]:
        """The configured hooks as argv lists, by name."""
        found: dict[str, list[str]] = {}
        for name in HOOK_NAMES:
            command = getattr(self, name)
            if command is not None:
                found[name] = ["/bin/sh", "-c", command] if isinstance(command, str) else command
        return found


WebhookFormat = Literal["json", "ntfy", "slack"]
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP field name (RFC 9110's token)."""
RESERVED_HEADERS = frozenset(
    {"content-length", "content-type", "host", "idempotency-key", "transfer-encoding"}
)
"""Headers orcad sets itself for each POST (a fixed Idempotency-Key would make a receiver that
drops repeats drop every notification but the first)."""


class WebhookSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`[[notify.webhook]]`: a URL that each notification is POSTed to. Neither the URL (a Slack
    webhook's holds its secret, an ntfy topic is one) nor a header's value is ever logged or
    recorded; errors name the key, not the value."""

    url: str
    format: WebhookFormat = "json"
    """`json`: Orca's own body; `ntfy`: text to an ntfy topic URL with Title, Priority and Tags
    headers; `slack`: a Slack incoming webhook's `{"text": ...}`."""
    headers: dict[str, str] = {}
    """Sent with each POST, e.g. `Authorization = "Bearer tk_..."` for a protected ntfy topic."""

    def __post_init__(self) -> None:
        try:
            parts = urllib.parse.urlsplit(self.url)
            port = parts.port
        except ValueError:
            raise ValueError("url: not a URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url: must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "url: a user or password in the URL is not sent; give it as a header instead "
                '(headers = { Authorization = "Basic BASE64(user:password)" })'
            )
        if port == 0 or any(c.isspace() or not c.isprintable() for c in self.url):
            raise ValueError("url: not a URL (a port of 0, spaces or control characters)")
        for name, value in self.headers.items():
            if not HEADER_NAME.fullmatch(name):
                raise ValueError(f"headers: {name!r} is not an HTTP header name")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"headers: {name} is set by orcad itself")
            if any(not c.isprintable() or ord(c) > 0xFF for c in value):
                raise ValueError(f"headers: the value of {name} has characters HTTP cannot carry")

    @property
    def channel(self) -> str:
        """How the log names this webhook: its host and a digest of its URL, never the URL."""
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        return f"webhook:{urllib.parse.urlsplit(self.url).hostname}:{digest}"


DESKTOP_CHANNEL = "desktop"


class NotifySettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`[notify]`: tell people when a run waits for an answer and when one ends (completed or
    failed): on the desktop (`notify-send`) and by webhooks. Each exactly once per event."""

    desktop: bool = False
    """Run `notify-send` (found on orcad's PATH) for each notification."""
    webhook: list[WebhookSettings] = []
    timeout_seconds: float = 10.0
    """One attempt at one channel (a POST, a notify-send) is given up after this long."""
    give_up_after_seconds: float = 3600.0
    """A notification not delivered this long after its event (retried with backoff, 1 s
    doubling to 5 min) is recorded as failed."""

    def __post_init__(self) -> None:
        _check_ranges("notify", self)
        channels = [webhook.channel for webhook in self.webhook]
        for index, channel in enumerate(channels):
            if channel in channels[:index]:
                first = channels.index(channel)
                raise ValueError(
                    f"notify.webhook[{index}].url: the same URL as notify.webhook[{first}]"
                )

    def channels(self) -> dict[str, WebhookSettings | None]:
        """Every configured channel by name: the desktop (None) and each webhook."""
        found: dict[str, WebhookSettings | None] = {DESKTOP_CHANNEL: None} if self.desktop else {}
        found.update((webhook.channel, webhook) for webhook in self.webhook)
        return found


Adapter = Literal["command", "codex", "codex-exec", "claude"]
APPROVAL_POLICIES = ("untrusted", "on-request", "never")
"""The approval policies Codex 0.169 accepts (its `AskForApproval`; `on-failure` is gone)."""
PROJECT_CONFIG = Path(".orca") / "config.toml"
"""A project's own settings, found in a run's working directory or the nearest parent."""


class AgentSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """`[agents.NAME]`. Every key is optional; unset keys (None) fall back, set ones win —
    so a project's explicit `false` beats a global `true`."""

    adapter: Adapter | None = None
    command: list[str] | None = None
    """`command`: the program and its arguments. Other adapters: the CLI binary (and options)."""
    args: list[str] | None = None
    """Extra arguments appended to the CLI's command line (codex-exec, claude)."""
    model: str | None = None
    sandbox: Literal["read-only", "workspace-write", "danger-full-access"] | None = None
    approval_policy: str | None = None
    """codex: Codex's `approvalPolicy` (untrusted, on-request or never; see APPROVAL_POLICIES)."""
    multi_agent: bool | None = None
    """codex: Codex's `features.multi_agent` for this agent (unset: Codex's config decides)."""
    questions: bool | None = None
    """codex: let Codex ask questions outside plan mode (its `default_mode_request_user_input`
    feature; default true). Set false for a Codex too old to know the feature."""
    tool_permission: Literal["allow", "deny"] | None = None
    """claude: what to answer Claude's tool-permission requests with (default allow)."""
    env: dict[str, str] | None = None
    worktree: bool | None = None
    """Run each session of this agent in its own git worktree (default false)."""

    def __post_init__(self) -> None:
        if self.command is not None and (not self.command or not self.command[0]):
            raise ValueError("command must name a program")
        policy = self.approval_policy
        if policy is not None and policy not in APPROVAL_POLICIES:
            hint = ' ("on-failure" is gone from Codex; "on-request" is nearest)'
            raise ValueError(
                f"approval_policy {policy!r} is not one Codex 0.169 accepts: use "
                f"{', '.join(APPROVAL_POLICIES)}{hint if policy == 'on-failure' else ''}"
            )

    def over(self, base: AgentSettings) -> AgentSettings:
        """These settings, with every unset key taken from `base`."""
        values = {
            name: getattr(self, name) if getattr(self, name) is not None else getattr(base, name)
            for name in self.__struct_fields__
        }
        return AgentSettings(**values)

    @property
    def adapter_name(self) -> Adapter:
        return self.adapter or "command"


BUILTIN_AGENTS = {
    "codex": AgentSettings(adapter="codex"),
    "codex-exec": AgentSettings(adapter="codex-exec"),
    "claude": AgentSettings(adapter="claude"),
    "synthesizer": AgentSettings(
        adapter="command", command=[sys.executable, "-m", "orca_daemon.synthesizer"]
    ),
}
"""`synthesizer` is the orchestrator that ships with Orca: it needs no model, and writes a
synthesis of a fan-out's outputs (outcomes, agreements, each worker's findings)."""


class OrchestrationSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`[orchestration]`: fan-outs, parent runs and plans."""

    orchestrator: str = "synthesizer"
    """The agent that synthesizes a fan-out's outputs (`orca debug --orchestrator` overrides)."""
    per_worker_chars: int = 30_000
    """A worker's output beyond this is cut (its end is kept) in the orchestrator's prompt."""
    total_chars: int = 100_000
    """All workers' output together in the orchestrator's prompt, shared fairly."""
    max_parallel_children: int = 4
    max_parallel_tasks: int = 4
    verify_timeout_seconds: float = 600.0
    stuck_after_seconds: float = 600.0
    """`orca doctor` flags a live session with no activity for this long."""
    heartbeat_seconds: float = 5.0
    """How often orcad checks that each session's process is alive."""

    def __post_init__(self) -> None:
        _check_ranges("orchestration", self)
        if not self.orchestrator:
            raise ValueError("orchestration.orchestrator must name an agent")


class RepoSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`[[repos]]`: a repository runs may work in, and the projects and features it serves."""

    name: str
    path: str
    enabled: bool = True
    projects: list[str] = []
    features: list[str] = []

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("repos: every repository needs a name")
        try:
            path = Path(self.path).expanduser()
        except RuntimeError as exc:  # ~user of a user that does not exist
            raise ValueError(f"repos: {self.name}: path {self.path!r}: {exc}") from None
        if not path.is_absolute():
            raise ValueError(f"repos: {self.name}: path must be absolute, got {self.path!r}")


class Config(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    daemon: DaemonSettings = msgspec.field(default_factory=DaemonSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    hooks: HookSettings = msgspec.field(default_factory=HookSettings)
    notify: NotifySettings = msgspec.field(default_factory=NotifySettings)
    agents: dict[str, AgentSettings] = msgspec.field(default_factory=dict)
    orchestration: OrchestrationSettings = msgspec.field(default_factory=OrchestrationSettings)
    repos: list[RepoSettings] = []

    def __post_init__(self) -> None:
        names = [repo.name for repo in self.repos]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"repos: the name {twice[0]!r} is used twice")
        for name, configured in self.agents.items():
            merged = self.global_agent(name) or configured
            if merged.adapter_name == "command" and merged.command is None:
                raise ValueError(f'agents.{name}.command is required for adapter = "command"')

    def global_agent(self, name: str) -> AgentSettings | None:
        """The config file's settings for `name`, over the built-in ones of that name."""
        configured = self.agents.get(name)
        builtin = BUILTIN_AGENTS.get(name)
        if configured is not None and builtin is not None:
            return configured.over(builtin)
        return configured or builtin

    def agent(self, name: str, cwd: Path) -> AgentSettings:
        """An agent's settings for a run in `cwd`: the project's over the global over built-ins."""
        base = self.global_agent(name)
        if base is None:
            known = ", ".join(agent_names(self))
            raise ConfigError(
                f"no agent named {name!r} (configured: {known}); an agent added to config.toml "
                "since orcad started needs `orca daemon reload` (or kill -HUP orcad's pid)"
            )
        project = load_project_agents(cwd).get(name)
        merged = base if project is None else project.over(base)
        if merged.adapter_name == "command" and merged.command is None:
            raise ConfigError(f'agent {name!r} has adapter "command" but no command')
        return merged


class ProjectConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What a project's `.orca/config.toml` may set."""

    agents: dict[str, AgentSettings] = msgspec.field(default_factory=dict)


def find_project_config(cwd: Path) -> Path | None:
    for directory in (cwd, *cwd.parents):
        candidate = directory / PROJECT_CONFIG
        if candidate.is_file():
            return candidate
    return None


PROJECT_KEYS = frozenset({"model", "multi_agent"})
"""What a repository may set for an agent. Not a command, arguments, environment, sandbox or
approval policy: a cloned repository must not choose what runs on your machine, or how freely."""


def load_project_agents(cwd: Path) -> dict[str, AgentSettings]:
    path = find_project_config(cwd)
    if path is None:
        return {}
    agents = _load(path, ProjectConfig).agents
    for name, agent in agents.items():
        refused = sorted(key for key in agent.__struct_fields__ if getattr(agent, key) is not None)
        refused = [key for key in refused if key not in PROJECT_KEYS]
        if refused:
            raise ConfigError(
                f"{path}: key agents.{name}.{refused[0]}: not allowed in a project file (only "
                f"{', '.join(sorted(PROJECT_KEYS))}); set it in your own config.toml"
            )
    return agents


def load_config(path: Path) -> Config:
    """Read and validate `path`; a missing file gives the defaults. Raises only ConfigError."""
    try:
        if not path.exists():
            return Config()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot look for the config file: {exc}") from None
    return _load(path, Config)


SECTIONS: dict[str, type[msgspec.Struct]] = {
    "daemon": DaemonSettings,
    "log": LogSettings,
    "hooks": HookSettings,
    "notify": NotifySettings,
    "orchestration": OrchestrationSettings,
}
"""The tables of config.toml whose keys are each optional, so each key can be checked alone."""


def _load(path: Path, kind: type[T]) -> T:
    """Read and validate `path` as `kind`; a ConfigError lists every error found, not the first."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    try:
        errors = _errors(data, kind)
        if not errors:  # each part is right: what is left are rules across parts
            try:
                return msgspec.convert(data, kind)
            except msgspec.ValidationError as exc:
                errors = [_describe(exc)]
    except (ValueError, RuntimeError, OSError, RecursionError) as exc:  # e.g. ~nosuchuser
        raise ConfigError(f"{path}: {exc}") from None
    if len(errors) == 1:
        raise ConfigError(f"{path}: {errors[0]}")
    listed = "".join(f"\n  {error}" for error in errors)
    raise ConfigError(f"{path}: {len(errors)} errors:{listed}")


def _errors(data: dict[str, object], kind: type[object]) -> list[str]:
    """Every error in the parts of `data` (a config file's top-level table), each on its own:
    each key of each section, each agent, each repository, each unknown key."""
    fields = set(getattr(kind, "__struct_fields__", ()))
    errors: list[str] = []
    for key, value in data.items():
        if key not in fields:
            errors.append(f"key {key}: unknown key")
        elif key == "agents":
            if not isinstance(value, dict):
                errors.append("key agents: expected tables, one per agent ([agents.NAME])")
                continue
            for name, table in value.items():
                errors += _table_errors(table, AgentSettings, f"agents.{name}")
        elif key == "notify" and isinstance(value, dict) and isinstance(value.get("webhook"), list):
            others = {name: item for name, item in value.items() if name != "webhook"}
            errors += _table_errors(others, NotifySettings, key)
            for index, item in enumerate(value["webhook"]):
                errors += _webhook_errors(item, f"notify.webhook[{index}]")
        elif key in SECTIONS:
            errors += _table_errors(value, SECTIONS[key], key)
        elif key == "repos" and isinstance(value, list):
            for index, item in enumerate(value):
                errors += _convert_errors(item, RepoSettings, f"repos[{index}]")
    return errors


def _table_errors(table: object, kind: type[msgspec.Struct], prefix: str) -> list[str]:
    """The errors of a table whose keys all have defaults: each key checked alone."""
    if not isinstance(table, dict):
        return _convert_errors(table, kind, prefix)
    errors: list[str] = []
    for key, value in table.items():
        errors += _convert_errors({key: value}, kind, prefix)
    return errors or _convert_errors(table, kind, prefix)


def _webhook_errors(item: object, prefix: str) -> list[str]:
    """A webhook's errors, each naming its key (`notify.webhook[0].url: ...`)."""
    return [
        re.sub(rf"^key {re.escape(prefix)}: (url|headers): ", rf"key {prefix}.\1: ", error)
        for error in _convert_errors(item, WebhookSettings, prefix)
    ]


def _convert_errors(value: object, kind: type[msgspec.Struct], prefix: str) -> list[str]:
    try:
        msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        return [_describe(exc, prefix)]
    return []


def _describe(exc: msgspec.ValidationError, prefix: str = "") -> str:
    """msgspec says `... - at `$.daemon.x``; say `key daemon.x: ...` instead."""
    message = str(exc)
    unknown = re.match(r"Object contains unknown field `([^`]+)`(?: - at `\$\.(.+)`)?$", message)
    if unknown:
        field, where = unknown.groups()
        return f"key {_join(prefix, where, field)}: unknown key"
    if " - at `$." in message:
        text, _, where = message.rpartition(" - at `$.")
        key = _join(prefix, where.rstrip("`"))
        if text.startswith(f"{key}."):  # a check that names its own key (`daemon.x: ...`)
            return f"key {text}"
        return f"key {key}: {text}"
    if prefix and message.startswith(f"{prefix}."):  # a check that names its own key
        return f"key {message}"
    return f"key {prefix}: {message}" if prefix else message


def _join(*parts: str | None) -> str:
    return ".".join(part for part in parts if part)


def changes(old: Config, new: Config) -> list[str]:
    """What differs between two configurations: `SECTION.KEY` for the tables of settings,
    `agents.NAME` for each agent added, removed or changed, and `repos`."""
    found: list[str] = []
    for section in ("daemon", "log", "hooks", "notify", "orchestration"):
        before, after = getattr(old, section), getattr(new, section)
        found += [
            f"{section}.{key}"
            for key in before.__struct_fields__
            if getattr(before, key) != getattr(after, key)
        ]
    for name in sorted({*old.agents, *new.agents}):
        if old.agents.get(name) != new.agents.get(name):
            found.append(f"agents.{name}")
    if old.repos != new.repos:
        found.append("repos")
    return found


def agent_names(config: Config) -> list[str]:
    """Every agent a run may name: the built-in ones and the configured ones."""
    return sorted({*BUILTIN_AGENTS, *config.agents})
