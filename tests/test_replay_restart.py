"""Requests across a daemon restart: a captured one is useless to the next daemon; a client's own
request that crossed the restart is signed again and goes through."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zmq
from conftest import DaemonProcess

from orca_client.client import RequestFailed
from orca_client.paths import read_token
from orca_client.wire import (
    MAX_MESSAGE_BYTES,
    HelloResult,
    Reply,
    StartRun,
    decode_daemon_message,
    encode_request,
)


def send_raw(daemon: DaemonProcess, frames: list[bytes]) -> Reply:
    """Send already-signed frames as a capturing attacker would, and read the reply."""
    key = read_token(daemon.paths.token_file)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(daemon.paths.socket_endpoint)
        sock.send_multipart(frames)
        assert sock.poll(10_000), "no reply from orcad"
        reply = decode_daemon_message(key, sock.recv_multipart())
        assert isinstance(reply, Reply)
        return reply
    finally:
        sock.close()


def test_a_request_captured_just_before_a_fast_restart_is_refused_by_the_next_daemon(
    make_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    daemon = make_daemon().start()
    key = read_token(daemon.paths.token_file)
    marker = tmp_path / "replayed"
    daemon.stop()
    # Signed with the real token a moment before the next daemon starts (well within the
    # second of slack an earlier guard allowed), then replayed to that daemon.
    _, captured = encode_request(key, StartRun(command=["touch", str(marker)], cwd=str(tmp_path)))
    daemon.start()
    reply = send_raw(daemon, captured)
    assert not reply.ok and reply.error is not None
    assert reply.error.code == "stale"
    assert "before this daemon started" in reply.error.message
    assert daemon.status().runs == []
    assert not marker.exists()


def test_a_client_request_that_crossed_a_restart_is_signed_again_and_answered(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon().start()
    daemon.kill()  # leaves its socket file, as a crash does
    results: list[Any] = []

    def ask() -> None:
        with daemon.client(timeout=30.0) as client:
            try:
                results.append(client.hello())
            except Exception as exc:
                results.append(exc)

    asker = threading.Thread(target=ask)
    asker.start()  # signs its request now, while no daemon runs, and waits to connect
    daemon.start()
    asker.join(40)
    assert len(results) == 1
    assert isinstance(results[0], HelloResult), results[0]


def test_a_request_over_the_size_limit_is_refused_by_the_client_with_its_size(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    with daemon.client() as client, pytest.raises(RequestFailed) as raised:
        client.request(
            StartRun(command=["true"], cwd=str(tmp_path), prompt="p" * (2 * MAX_MESSAGE_BYTES))
        )
    assert raised.value.code == "too_large"
    assert "2.0 MiB" in str(raised.value)
    assert daemon.status().runs == []


def test_orca_plan_run_of_a_huge_plan_says_it_is_too_large_not_that_orcad_is_down(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    plan = tmp_path / "huge.json"
    tasks = [{"id": f"t{i}", "title": "t", "prompt": "x" * 2000, "agent": "a"} for i in range(1000)]
    plan.write_text(json.dumps({"title": "huge", "tasks": tasks}))
    done = daemon.orca("plan", "run", str(plan), "--cwd", str(tmp_path))
    assert done.returncode == 1, done
    assert "MiB" in done.stderr and "at most 1 MiB" in done.stderr
    assert "did not answer" not in done.stderr
    assert "Traceback" not in done.stderr
