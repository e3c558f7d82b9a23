"""The systemd user unit for orcad, rendered for one installation: its `orcad`, its documentation,
and the Orca environment (ORCA_HOME, ORCA_CONFIG) the CLI that installs it uses.

`systemd/orcad.service` in the repository is this template rendered with the defaults.

No StateDirectory=: for user units it maps to ~/.config before systemd 254, and orcad makes its
own state directory ($XDG_STATE_HOME/orca, 0700). RuntimeDirectory= is $XDG_RUNTIME_DIR/orca,
where orcad puts its socket and token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_EXEC_START = "%h/.local/bin/orcad"
ORCA_ENVIRONMENT = ("ORCA_HOME", "ORCA_CONFIG")
"""The variables that choose orcad's files; a unit installed from a shell that sets them keeps
them, so the daemon systemd starts is the one that shell's `orca` talks to."""

UNIT_TEMPLATE = """\
[Unit]
Description=Orca daemon: a durable control plane for coding-agent sessions
{documentation}
[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2
WatchdogSec=30
TimeoutStopSec=60
LimitNOFILE=65536
# Only orcad itself is signalled on stop or restart: each agent runs in a session holder of
# its own (in this unit's cgroup), which keeps it running until orcad is back and re-attaches.
# `orca daemon stop --cancel-sessions` ends them instead.
KillMode=process
UMask=0077
RuntimeDirectory=orca
RuntimeDirectoryMode=0700
RuntimeDirectoryPreserve=yes
Environment=PYTHONUNBUFFERED=1
{environment}# orcad and its agents get the user manager's environment, not your shell's: PATH, API
# keys. Put what agents need in this file (KEY=value lines; it is optional), or see
# "As a systemd user service" in the README.
EnvironmentFile=-%h/.config/orca/agents.env

[Install]
WantedBy=default.target
"""


class UnitError(ValueError):
    """A value that cannot be written into a unit file."""


def render_unit(
    exec_start: str = DEFAULT_EXEC_START,
    documentation: Sequence[Path] = (),
    environment: Mapping[str, str] | None = None,
) -> str:
    """The unit text. `documentation`: absolute paths of documents (Documentation= file URIs;
    none: a comment says where to look); `environment`: Environment= assignments."""
    if documentation:
        uris = " ".join(path.absolute().as_uri() for path in documentation)
        docs = f"Documentation={uris} man:systemd.service(5)\n"
    else:
        docs = "# Documentation: README.md of your Orca checkout; orcad --help; orca --help\n"
    assignments = "".join(
        f"Environment={_quoted(f'{name}={value}')}\n" for name, value in (environment or {}).items()
    )
    return UNIT_TEMPLATE.format(exec_start=exec_start, documentation=docs, environment=assignments)


def _quoted(assignment: str) -> str:
    """One Environment= word: in double quotes, with systemd's escapes (`%` is a specifier)."""
    if any(ord(char) < 0x20 or char == "\x7f" for char in assignment):
        raise UnitError(f"{assignment!r} has a control character; a unit file cannot hold it")
    escaped = assignment.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'
