"""Runs of command agents started over orcad's socket."""

from __future__ import annotations

from conftest import DaemonProcess

from orca_client.wire import RunStarted, StartRun


def start(daemon: DaemonProcess, command: list[str], **kwargs: object) -> RunStarted:
    cwd = str(kwargs.pop("cwd", daemon.home))
    with daemon.client() as client:
        started: RunStarted = client.request(StartRun(command=command, cwd=cwd, **kwargs))  # type: ignore[arg-type]
        return started
