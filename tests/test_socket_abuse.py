"""orcad under abuse from a local process: messages built to crash it, more connections than it
may hold, peers that never read. It must stay up, answer everyone else and lose nothing."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq
from conftest import DaemonProcess, agent, wait_until
from support.sockets import RawPeer, assert_alive, memory_of, refusal

from orca_client.client import DaemonUnavailable
from orca_client.paths import read_token
from orca_client.wire import (
    PROTOCOL,
    Cancel,
    EventsPushed,
    Hello,
    Reply,
    StartRun,
    Status,
    Subscribe,
    Subscribed,
    SubscriptionOverflowed,
    decode_daemon_message,
    decode_result,
    encode_request,
)
from orca_daemon.limits import connection_cap

DEEP = b"[" * 1000 + b"]" * 1000


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_a_deeply_nested_body_is_refused_and_a_live_session_is_still_recorded(
    daemon: DaemonProcess, signed: bool
) -> None:
    with daemon.client() as client:
        started = client.request(StartRun(command=["sleep", "600"], cwd=str(daemon.home)))
    daemon.wait_for_run(started.run_id, frozenset({"running"}))
    peer = RawPeer(daemon)
    for body in (DEEP, b'{"id": "deep", "request": ' + DEEP + b"}"):
        frames = peer.signed(body) if signed else [PROTOCOL, b"0" * 64, body]
        code, _ = refusal(peer, frames)
        assert code == ("bad_request" if signed else "unauthenticated")
    peer.close()
    assert_alive(daemon)
    with daemon.client() as client:
        client.request(Cancel(run_id=started.run_id, reason="the test is over"))
    assert daemon.wait_for_run(started.run_id).status == "cancelled"
    daemon.stop()
    daemon.start()
    assert daemon.status(started.run_id).runs[0].status == "cancelled"


def start_with_descriptor_limit(daemon: DaemonProcess, limit: int) -> None:
    """Start orcad with its open-files limit (soft and hard) at `limit`."""
    launcher = (
        "import resource, runpy; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit})); "
        "runpy.run_module('orca_daemon', run_name='__main__')"
    )
    stderr = open(daemon.stderr_path, "ab")  # noqa: SIM115 - handed to the child
    daemon.process = subprocess.Popen(
        [sys.executable, "-c", launcher],
        env=daemon.env,
        stdin=subprocess.DEVNULL,
        stdout=stderr,
        stderr=stderr,
    )
    stderr.close()
    daemon.wait_ready()


def connect_peers(daemon: DaemonProcess, count: int) -> tuple[list[zmq.Socket[bytes]], int, int]:
    """Connect `count` peers (that never reconnect) a few at a time, each sending `hello`;
    returns their sockets with how many were answered and how many orcad cut off."""
    context = zmq.Context.instance()
    key = read_token(daemon.paths.token_file)
    sockets: list[zmq.Socket[bytes]] = []
    answered = refused = 0
    wave = 16
    for first in range(0, count, wave):
        owner: dict[zmq.Socket[bytes], zmq.Socket[bytes]] = {}
        poller = zmq.Poller()
        batch = min(wave, count - first)
        for _ in range(batch):
            peer = context.socket(zmq.DEALER)
            peer.setsockopt(zmq.LINGER, 0)
            peer.setsockopt(zmq.RECONNECT_IVL, -1)
            monitor = peer.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED)
            peer.connect(daemon.paths.socket_endpoint)
            with contextlib.suppress(zmq.Again):  # already cut off: nowhere to send
                peer.send_multipart(encode_request(key, Hello())[1], zmq.NOBLOCK)
            owner[peer] = owner[monitor] = peer
            poller.register(peer, zmq.POLLIN)
            poller.register(monitor, zmq.POLLIN)
            sockets += [peer, monitor]
        deadline = time.monotonic() + 20
        settled: set[zmq.Socket[bytes]] = set()
        while len(settled) < batch and time.monotonic() < deadline:
            for sock, _ in poller.poll(1000):
                poller.unregister(sock)
                if owner[sock] in settled:
                    continue
                settled.add(owner[sock])
                if sock is owner[sock]:
                    assert isinstance(decode_daemon_message(key, sock.recv_multipart()), Reply)
                    answered += 1
                else:
                    refused += 1
        assert len(settled) == batch, "a peer was neither answered nor cut off"
    return sockets, answered, refused


def test_peers_beyond_the_connection_cap_are_refused_and_orcad_stays_up(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    limit = 128
    cap = connection_cap(limit)
    daemon = make_daemon()
    start_with_descriptor_limit(daemon, limit)
    peers, answered, refused = connect_peers(daemon, limit + 32)  # more than it has descriptors
    try:
        assert daemon.process is not None and daemon.process.poll() is None, daemon.output()
        assert answered <= cap
        assert refused >= limit + 32 - cap
        assert "refusing new connections" in daemon.output()
    finally:
        for sock in peers:
            sock.close()
    # Once orcad has seen them go (a client it cut off meanwhile simply asks again):
    wait_until(lambda: answers_hello(daemon), "orcad to answer a fresh client")
    assert "accepting connections again" in daemon.output()


def answers_hello(daemon: DaemonProcess) -> bool:
    try:
        with daemon.client(timeout=1.0) as client:
            return client.hello().protocol == 1
    except DaemonUnavailable:
        return False


def test_a_connection_that_reads_no_replies_is_refused_more_requests(
    daemon: DaemonProcess,
) -> None:
    deaf = RawPeer(daemon, RCVHWM=1)
    sent = 20_000  # far more replies than the socket buffers hold
    for _ in range(sent):
        deaf.send(encode_request(deaf.key, Hello())[1])
    wait_until(
        lambda: "busy: this connection has" in daemon.output(),
        "orcad to refuse the connection's requests",
    )
    assert_alive(daemon)  # others are answered meanwhile
    replies = []
    while deaf.socket.poll(2000):
        message = deaf.receive()
        assert isinstance(message, Reply)
        replies.append(message)
    refused = [r.error for r in replies if r.error is not None]
    assert refused and {e.code for e in refused} == {"busy"}
    assert "read the replies before sending more" in refused[0].message
    assert len(replies) < sent  # replies beyond the bound were dropped, not kept
    deaf.close()


def test_peers_that_never_read_cost_orcad_bounded_memory(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    """A subscriber that stops reading and a client that sends 20,000 requests without reading
    a reply: orcad's peak RSS stays within 64 MiB of its baseline and it answers others."""
    orca_home.mkdir(mode=0o700, parents=True)
    (orca_home / "config.toml").write_text("[daemon]\nsubscription_lease_seconds = 4.0\n")
    daemon = make_daemon().start()
    assert daemon.process is not None
    warm_up = daemon.orca("run", "--wait", "--", *agent("firehose.py", "16"))
    assert warm_up.returncode == 0, warm_up.stderr
    baseline = memory_of(daemon.process.pid)["VmRSS"]

    stalled = RawPeer(daemon, RCVHWM=1)
    stalled.send(encode_request(stalled.key, Subscribe(after=0))[1])
    subscription = decode_result(stalled.reply(), Subscribed).subscription
    deaf = RawPeer(daemon, RCVHWM=1)
    for _ in range(20_000):
        deaf.send(encode_request(deaf.key, Status(ended=None))[1])
    with daemon.client() as client:
        run = client.request(StartRun(command=agent("firehose.py", "16"), cwd=str(daemon.home)))
        assert client.hello().protocol == 1  # others are answered meanwhile
    assert daemon.wait_for_run(run.run_id).status == "completed"
    with daemon.client() as client:
        wait_until(lambda: client.hello().subscriptions == 0, "the stalled subscriber to end")

    peak = memory_of(daemon.process.pid)["VmHWM"]
    assert peak - baseline <= 64 << 20, f"peak RSS grew by {(peak - baseline) >> 20} MiB"
    # The stalled subscriber, once it reads again, is told where to resume.
    while not isinstance(message := stalled.receive(), SubscriptionOverflowed):
        assert isinstance(message, EventsPushed)
    assert message.subscription == subscription
    assert_alive(daemon)
    stalled.close()
    deaf.close()
