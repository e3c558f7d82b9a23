"""orcad's life cycle against the real daemon: start-up checks, the single-instance lock, a clean
stop with sessions in flight, bad configuration, and `orca daemon start|status|stop`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import zmq
from conftest import DaemonProcess, run_orca, wait_until
from support.durability import process_running, replay_file

from orca_client.events import RESTARTED_REASON, STOPPED_REASON
from orca_client.paths import read_token
from orca_client.views import TERMINAL_STATUSES
from orca_client.wire import (
    ReadEvents,
    Reply,
    RunStarted,
    Shutdown,
    StartRun,
    decode_daemon_message,
    decode_result,
    encode_request,
)

AGENT = Path(__file__).resolve().parent / "fakes" / "dur_agent.py"


def dur_agent(*args: str) -> list[str]:
    return [sys.executable, str(AGENT), *args]


def run_orcad(env: dict[str, str], timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run orcad in the foreground and wait for it to exit (for start-up refusals)."""
    return subprocess.run(
        [sys.executable, "-m", "orca_daemon"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def orca(
    env: dict[str, str], *args: str, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run the real `orca` CLI."""
    return run_orca(env, *args, timeout=timeout)


def private_home(home: Path) -> Path:
    home.mkdir(mode=0o700)
    os.chmod(home, 0o700)
    return home


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(entry))
    return members


# --------------------------------------------------------------------------- single instance


def test_second_orcad_on_the_same_home_refuses_and_the_first_keeps_serving(
    make_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    first = make_daemon().start()
    with first.client() as client:
        hello = client.hello()

    second = run_orcad(first.env)

    assert second.returncode == 1, second.stderr
    assert "another orcad" in second.stderr
    assert str(first.paths.state_dir) in second.stderr
    assert first.process is not None and first.process.poll() is None
    assert first.paths.socket_file.exists()
    with first.client() as client:
        again = client.hello()
        assert (again.instance, again.pid) == (hello.instance, hello.pid)
        started: RunStarted = client.request(
            StartRun(command=dur_agent("--lines", "1"), cwd=str(tmp_path))
        )
    assert first.wait_for_run(started.run_id).status == "completed"


# --------------------------------------------------------------------------- private files


def test_refuses_a_home_that_others_can_read(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    orca_home.mkdir()
    os.chmod(orca_home, 0o755)
    daemon = make_daemon()

    result = run_orcad(daemon.env)

    assert result.returncode == 1, result.stderr
    assert "refusing to start" in result.stderr
    assert "0755" in result.stderr
    assert f"chmod 0700 {orca_home}" in result.stderr
    assert not daemon.paths.socket_file.exists()
    assert not daemon.paths.token_file.exists()


def test_refuses_a_token_that_others_can_read(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    private_home(orca_home)
    daemon = make_daemon()
    token = daemon.paths.token_file
    token.write_text("ab" * 32 + "\n")
    os.chmod(token, 0o644)

    result = run_orcad(daemon.env)

    assert result.returncode == 1, result.stderr
    assert "refusing to start" in result.stderr
    assert "0644" in result.stderr
    assert f"chmod 0600 {token}" in result.stderr
    assert not daemon.paths.socket_file.exists()


def test_token_is_created_0600_in_a_0700_home(daemon: DaemonProcess) -> None:
    home = stat.S_IMODE(daemon.paths.runtime_dir.stat().st_mode)
    token = daemon.paths.token_file.stat()
    assert home == 0o700
    assert stat.S_IMODE(token.st_mode) == 0o600
    assert token.st_uid == os.getuid()
    assert len(read_token(daemon.paths.token_file)) >= 32


# --------------------------------------------------------------------------- clean stop


def test_a_cancelling_stop_ends_a_running_session_in_a_recorded_state(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    daemon = make_daemon().start()
    pid_dir = orca_home.parent / "pids"
    pid_dir.mkdir()
    command = dur_agent("--pid-dir", str(pid_dir), "--child", "--lines", "2", "--sleep", "60")
    with daemon.client() as client:
        started: RunStarted = client.request(StartRun(command=command, cwd=str(pid_dir)))
    child_file = pid_dir / f"{started.session_id}.child"
    wait_until(child_file.exists, timeout=15, what="the agent and its child to start")
    running = daemon.wait_for_run(started.run_id, frozenset({"running"}))
    session = daemon.status(running.run_id).sessions[0]
    assert session.pid is not None
    group = session.pid
    child = int(child_file.read_text())
    assert {group, child} <= set(group_members(group))

    try:
        assert daemon.stop_ending_sessions(timeout=30) == 0
        wait_until(lambda: not group_members(group), timeout=5, what="the agent's group to end")
    finally:
        for pid in (group, child):
            if process_running(pid):
                os.kill(pid, signal.SIGKILL)

    # The stop is in the log itself, before any restart could reconcile anything.
    state, _ = replay_file(daemon.paths.log_file)
    recorded = state.sessions[started.session_id]
    assert (recorded.status, recorded.reason) == ("failed", STOPPED_REASON)
    assert (state.runs[started.run_id].status, state.runs[started.run_id].reason) == (
        "failed",
        STOPPED_REASON,
    )
    assert "stopping: signalled the processes of 1 sessions" in daemon.output()

    daemon.start()
    after = daemon.status(started.run_id)
    assert (after.sessions[0].status, after.sessions[0].reason) == ("failed", STOPPED_REASON)
    assert after.runs[0].status == "failed"
    with daemon.client() as client:
        page = client.request(ReadEvents(run_id=started.run_id))
    bodies = [msgspec.json.decode(record.event) for record in page.events]
    ends = [b for b in bodies if b["type"] == "session_terminated"]
    assert [(b["status"], b["reason"]) for b in ends] == [("failed", STOPPED_REASON)]
    assert all(b.get("reason") != RESTARTED_REASON for b in bodies)


def test_runs_started_as_orcad_stops_end_in_a_recorded_state(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    """StartRun requests that arrive just before a Shutdown that ends sessions: after orcad exits
    0, every session in the log has ended (stopped), or never started — and those the next
    orcad starts, since a client was told of their run."""
    daemon = make_daemon().start()
    pid_dir = orca_home.parent / "pids"
    pid_dir.mkdir()
    key = read_token(daemon.paths.token_file)
    context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(daemon.paths.socket_endpoint)
    replies: dict[str, Reply] = {}
    try:
        command = dur_agent("--pid-dir", str(pid_dir), "--sleep", "30")
        run_ids = []
        for _ in range(3):
            request_id, frames = encode_request(key, StartRun(command=command, cwd=str(pid_dir)))
            run_ids.append(request_id)
            sock.send_multipart(frames)
        _, frames = encode_request(key, Shutdown(cancel_sessions=True))
        sock.send_multipart(frames)

        assert daemon.process is not None
        assert daemon.process.wait(30) == 0
        while sock.poll(200, zmq.POLLIN):
            message = decode_daemon_message(key, sock.recv_multipart())
            if isinstance(message, Reply):
                replies[message.id] = message
    finally:
        sock.close(linger=0)

    state, _ = replay_file(daemon.paths.log_file)
    acknowledged = [
        decode_result(replies[i], RunStarted) for i in run_ids if i in replies and replies[i].ok
    ]
    for started in acknowledged:
        assert started.run_id in state.runs
    unstarted = set()
    for session in state.sessions.values():
        if session.status == "created":
            assert session.pid is None and session.started_at is None, session
            unstarted.add(session.session_id)
        else:
            assert (session.status, session.reason) == ("failed", STOPPED_REASON), session
    for run in state.runs.values():
        live = bool(set(run.session_ids) & unstarted)
        assert (run.status not in TERMINAL_STATUSES) == live and run.status != "completed", run
    for pid_file in pid_dir.glob("*.pid"):  # the ended ones' agents are gone
        pid = int(pid_file.read_text() or 0)
        wait_until(lambda pid=pid: not pid or not process_running(pid), what="agents to end")

    daemon = make_daemon().start()
    for session_id in unstarted:
        run_id = state.sessions[session_id].run_id
        daemon.wait_for_run(run_id, frozenset({"running"}))
        wait_until(lambda s=session_id: (pid_dir / f"{s}.pid").exists(), what="it to start")
    assert daemon.stop_ending_sessions() == 0


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[daemon]\nbogus_setting = 1\n", "bogus_setting"),
        ('[daemon]\ncancel_grace_seconds = "soon"\n', "daemon.cancel_grace_seconds"),
        ('[daemon]\nsynchronous = "SOMETIMES"\n', "daemon.synchronous"),
        ("[deamon]\ncancel_grace_seconds = 1.0\n", "deamon"),
    ],
    ids=["unknown-key", "wrong-type", "bad-choice", "unknown-section"],
)
def test_bad_config_exits_2_naming_the_file_and_key(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, toml: str, key: str
) -> None:
    private_home(orca_home)
    daemon = make_daemon()
    daemon.paths.config_file.write_text(toml)

    result = run_orcad(daemon.env)

    assert result.returncode == 2, result.stderr
    assert str(daemon.paths.config_file) in result.stderr
    assert key in result.stderr
    assert not daemon.paths.socket_file.exists()


# --------------------------------------------------------------------------- the CLI


def test_orca_status_without_a_daemon_exits_3_and_says_how_to_start(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    never_started = make_daemon()
    result = orca(never_started.env, "status")
    assert result.returncode == 3, result
    assert "orca daemon start" in result.stderr

    # A socket file left behind by a killed orcad is no daemon either.
    killed = make_daemon().start()
    killed.kill()
    assert killed.paths.socket_file.exists()
    result = orca(killed.env, "status")
    assert result.returncode == 3, result
    assert "orca daemon start" in result.stderr


def test_orca_daemon_start_status_stop_end_to_end(
    make_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    env = make_daemon().env  # a private ORCA_HOME; the CLI starts orcad itself

    result = orca(env, "daemon", "status")
    assert result.returncode == 3, result
    assert "not running" in result.stdout and "orca daemon start" in result.stdout

    result = orca(env, "daemon", "start")
    assert result.returncode == 0, result
    found = re.search(r"orcad started \(pid (\d+)\)", result.stdout)
    assert found, result.stdout
    pid = int(found.group(1))
    try:
        result = orca(env, "daemon", "start")
        assert result.returncode == 0, result
        assert f"already running (pid {pid})" in result.stdout

        result = orca(env, "daemon", "status")
        assert result.returncode == 0, result
        assert f"is running (pid {pid}" in result.stdout

        result = orca(env, "daemon", "status", "--json")
        assert result.returncode == 0, result
        info = json.loads(result.stdout)
        assert info["running"] is True and info["pid"] == pid

        result = orca(env, "run", "--wait", "--", *dur_agent("--lines", "3"))
        assert result.returncode == 0, result
        assert "plain line 0" in result.stdout

        result = orca(env, "status")
        assert result.returncode == 0, result

        started = time.monotonic()
        result = orca(env, "daemon", "stop")
        assert result.returncode == 0, result
        assert f"orcad stopped (pid {pid})" in result.stdout
        assert time.monotonic() - started < 10
        wait_until(lambda: not process_running(pid), timeout=5, what="orcad to exit")

        result = orca(env, "daemon", "status")
        assert result.returncode == 3, result
        result = orca(env, "status")
        assert result.returncode == 3, result
        assert "orca daemon start" in result.stderr
        result = orca(env, "daemon", "stop")
        assert result.returncode == 0, result
        assert "not running" in result.stdout
    finally:
        if process_running(pid):
            os.kill(pid, signal.SIGKILL)
