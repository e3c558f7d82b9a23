"""systemd integration against the real orcad: sd_notify datagrams on a real AF_UNIX socket,
the Notifier outside systemd, the unit file, and `orca daemon install`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from conftest import REPO, DaemonProcess, run_orca, short_tempdir

from orca_client.systemd_unit import render_unit
from orca_client.wire import ReadEvents, RunStarted, StartRun
from orca_daemon.systemd import Notifier

AGENT = Path(__file__).resolve().parent / "fakes" / "dur_agent.py"
WATCHDOG_USEC = 200_000

Datagram = tuple[float, dict[str, str]]


def parse(data: bytes) -> dict[str, str]:
    fields = {}
    for line in data.decode().splitlines():
        key, _, value = line.partition("=")
        fields[key] = value
    return fields


class NotifyListener:
    """A bound AF_UNIX datagram socket that collects sd_notify messages with their arrival time."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.received: list[Datagram] = []

    def collect(self, until: Callable[[list[Datagram]], bool], timeout: float) -> list[Datagram]:
        """Read datagrams until `until(received)` holds; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not until(self.received):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"sd_notify condition not met; received {self.received}"
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.received.append((time.monotonic(), parse(data)))
        return self.received

    def close(self) -> None:
        self.sock.close()


def first(received: list[Datagram], assignment: str) -> int | None:
    """The index of the first datagram that carries `KEY=value`."""
    key, _, value = assignment.partition("=")
    return next((i for i, (_, f) in enumerate(received) if f.get(key) == value), None)


def has(assignment: str) -> Callable[[list[Datagram]], bool]:
    return lambda received: first(received, assignment) is not None


def test_ready_watchdog_and_stopping_on_a_path_socket(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    address = str(orca_home.parent / "notify.sock")
    listener = NotifyListener(address)
    try:
        daemon = make_daemon(
            extra_env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
        ).start()
        assert daemon.process is not None

        received = listener.collect(has("READY=1"), timeout=10)
        ready_index = first(received, "READY=1")
        assert ready_index is not None
        ready_at, ready = received[ready_index]
        assert ready["STATUS"], ready
        assert ready["MAINPID"] == str(daemon.process.pid)

        def two_watchdogs_after_ready(received: list[Datagram]) -> bool:
            pings = [at for at, f in received if f.get("WATCHDOG") == "1" and at >= ready_at]
            return len(pings) >= 2

        listener.collect(two_watchdogs_after_ready, timeout=1.0)
        assert first(received, "WATCHDOG=1") is not None

        # Agents must not inherit the daemon's notify socket or watchdog.
        with daemon.client() as client:
            started: RunStarted = client.request(
                StartRun(command=[sys.executable, str(AGENT), "--report-env"], cwd=str(REPO))
            )
        assert daemon.wait_for_run(started.run_id).status == "completed"
        with daemon.client() as client:
            page = client.request(ReadEvents(run_id=started.run_id))
        output = "".join(
            body["text"]
            for body in (msgspec.json.decode(r.event) for r in page.events)
            if body["type"] == "output_appended"
        )
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            assert f"env {name}=unset" in output

        assert daemon.stop(signal.SIGTERM) == 0
        received = listener.collect(has("STOPPING=1"), timeout=5)
        stopping_index = first(received, "STOPPING=1")
        assert stopping_index is not None
        assert stopping_index > ready_index
        assert sum(f.get("READY") == "1" for _, f in received) == 1
    finally:
        listener.close()


def test_abstract_notify_socket(make_daemon: Callable[..., DaemonProcess]) -> None:
    name = f"orca-test-notify-{os.getpid()}-{secrets.token_hex(4)}"
    listener = NotifyListener("\0" + name)
    try:
        daemon = make_daemon(
            extra_env={"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
        ).start()
        received = listener.collect(has("READY=1"), timeout=10)
        assert received[first(received, "READY=1") or 0][1]["STATUS"]
        listener.collect(has("WATCHDOG=1"), timeout=2)
        assert daemon.stop(signal.SIGTERM) == 0
        listener.collect(has("STOPPING=1"), timeout=5)
    finally:
        listener.close()


def test_no_watchdog_pings_without_watchdog_usec(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    address = str(orca_home.parent / "notify.sock")
    listener = NotifyListener(address)
    try:
        daemon = make_daemon(extra_env={"NOTIFY_SOCKET": address}).start()
        listener.collect(has("READY=1"), timeout=10)
        assert daemon.stop(signal.SIGTERM) == 0
        received = listener.collect(has("STOPPING=1"), timeout=5)
        assert not any("WATCHDOG" in fields for _, fields in received), received
    finally:
        listener.close()


# --------------------------------------------------------------------------- Notifier


def test_notifier_without_notify_socket_does_nothing() -> None:
    environments: list[dict[str, str]] = [
        {},
        {"WATCHDOG_USEC": str(WATCHDOG_USEC)},
        {"NOTIFY_SOCKET": ""},
    ]
    for env in environments:
        notifier = Notifier(env=env)
        assert not notifier.enabled
        notifier.notify("READY=1")
        notifier.ready("serving")
        notifier.status("busy")
        notifier.stopping("bye")
        # The watchdog task returns at once instead of pinging nobody forever.
        asyncio.run(asyncio.wait_for(notifier.run_watchdog(0.5), timeout=1.0))
        notifier.close()
        notifier.close()


def test_notifier_sends_to_a_socket_and_survives_a_vanished_one() -> None:
    directory = short_tempdir("orca-notify-")  # AF_UNIX addresses must stay short
    address = str(directory / "n.sock")
    listener = NotifyListener(address)
    try:
        notifier = Notifier(env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"})
        assert notifier.enabled
        assert notifier.watchdog_interval == 1.0
        notifier.ready("serving 0 runs")
        received = listener.collect(has("READY=1"), timeout=2)
        assert received[0][1] == {
            "READY": "1",
            "STATUS": "serving 0 runs",
            "MAINPID": str(os.getpid()),
        }
    finally:
        listener.close()
    os.unlink(address)
    notifier.notify("WATCHDOG=1")  # logged, never raised
    notifier.close()
    shutil.rmtree(directory, ignore_errors=True)


def test_watchdog_is_for_the_named_pid_only() -> None:
    env = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "500000"}
    assert Notifier(env={**env, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval == 0.5
    assert Notifier(env={**env, "WATCHDOG_PID": str(os.getpid() + 1)}).watchdog_interval is None
    assert Notifier(env={**env, "WATCHDOG_USEC": "soon"}).watchdog_interval is None
    assert Notifier(env={**env, "WATCHDOG_USEC": "0"}).watchdog_interval is None


# --------------------------------------------------------------------------- the unit


def service_settings(text: str) -> dict[str, str]:
    section = ""
    settings = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif "=" in line and section == "[Service]":
            key, _, value = line.partition("=")
            settings[key] = value
    return settings


def test_repository_unit_is_the_rendered_template() -> None:
    text = (REPO / "systemd" / "orcad.service").read_text()
    assert text == render_unit()
    service = service_settings(text)
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "on-failure"
    assert service["UMask"] == "0077"
    assert "StateDirectory" not in service  # ~/.config before systemd 254; orcad makes its own
    assert service["RuntimeDirectory"] == "orca"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["EnvironmentFile"] == "-%h/.config/orca/agents.env"
    assert "WantedBy=default.target" in text


def orca(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_orca(env, *args)


def test_orca_daemon_install_writes_the_unit(tmp_path: Path) -> None:
    config_home = tmp_path / "config"
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
    unit = config_home / "systemd" / "user" / "orcad.service"

    result = orca(env, "daemon", "install")

    assert result.returncode == 0, result
    text = unit.read_text()
    exec_start = service_settings(text)["ExecStart"]
    program = exec_start.split()[0]
    assert os.path.isabs(program), exec_start
    assert os.access(program, os.X_OK), exec_start
    version = subprocess.run(
        [*exec_start.split(), "--version"], capture_output=True, text=True, timeout=30
    )
    assert version.returncode == 0 and version.stdout.startswith("orcad "), version
    assert text == render_unit(exec_start, [REPO / "README.md", REPO / "docs" / "ARCHITECTURE.md"])
    assert f"Documentation={(REPO / 'README.md').as_uri()} " in text
    assert str(unit) in result.stdout
    assert "systemctl --user daemon-reload" in result.stdout
    assert "systemctl --user enable --now orcad.service" in result.stdout

    unit.write_text(text + "# edited by hand\n")
    again = orca(env, "daemon", "install")
    assert again.returncode == 1, again
    assert "--force" in again.stderr and str(unit) in again.stderr
    assert unit.read_text().endswith("# edited by hand\n")

    forced = orca(env, "daemon", "install", "--force")
    assert forced.returncode == 0, forced
    assert unit.read_text() == text


def test_orca_daemon_install_keeps_orca_home_and_orca_config(tmp_path: Path) -> None:
    """A unit installed from a shell with ORCA_HOME starts the orcad that shell's orca talks to."""
    config_home = tmp_path / "config"
    home = tmp_path / "my 100% orca"
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(config_home),
        "ORCA_HOME": str(home),
        "ORCA_CONFIG": str(tmp_path / 'odd"name.toml'),
    }
    result = orca(env, "daemon", "install")
    assert result.returncode == 0, result
    assert f"with ORCA_HOME={home}" in result.stdout
    text = (config_home / "systemd" / "user" / "orcad.service").read_text()
    assert f'Environment="ORCA_HOME={tmp_path}/my 100%% orca"\n' in text
    assert f'Environment="ORCA_CONFIG={tmp_path}/odd\\"name.toml"\n' in text
    assert "agents.env" in result.stdout  # where agents get their environment from

    env["ORCA_HOME"] = str(tmp_path / "line\nbreak")
    refused = orca(env, "daemon", "install", "--force")
    assert refused.returncode == 1 and "control character" in refused.stderr


def test_the_installed_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    config_home = tmp_path / "config"
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home), "ORCA_HOME": str(tmp_path / "h")}
    assert orca(env, "daemon", "install").returncode == 0
    unit = config_home / "systemd" / "user" / "orcad.service"
    verified = subprocess.run(
        [analyze, "--user", "verify", str(unit)],
        env={**env, "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr.strip() == "", verified.stderr  # no unknown key, no invalid URL
