"""The systemd user unit for orcad, rendered for one installation's `orcad` path.

`systemd/orcad.service` in the repository is this template rendered with DEFAULT_EXEC_START.
"""

from __future__ import annotations

DEFAULT_EXEC_START = "%h/.local/bin/orcad"

UNIT_TEMPLATE = """\
[Unit]
Description=Orca daemon: a durable control plane for coding-agent sessions

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
Restart=on-failure
RestartSec=2
WatchdogSec=30
TimeoutStopSec=60
LimitNOFILE=65536
KillMode=mixed
UMask=0077
StateDirectory=orca
StateDirectoryMode=0700
RuntimeDirectory=orca
RuntimeDirectoryMode=0700
RuntimeDirectoryPreserve=yes
Environment=PYTHONUNBUFFERED=1

[Install]
WantedBy=default.target
"""


def render_unit(exec_start: str = DEFAULT_EXEC_START) -> str:
    return UNIT_TEMPLATE.format(exec_start=exec_start)
