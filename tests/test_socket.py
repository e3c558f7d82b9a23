"""The socket under bad input, authentication, replay, and subscriptions, against a real orcad."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest
import zmq
from conftest import DaemonProcess, agent
from support.sockets import RawPeer, assert_alive, envelope, refusal

from orca_client.client import Client
from orca_client.views import StatusResult
from orca_client.wire import (
    MAX_MESSAGE_BYTES,
    PROTOCOL,
    EventRecord,
    EventsPushed,
    Hello,
    StartRun,
    Status,
    Subscribe,
    SubscriptionOverflowed,
    encode_request,
)
from orca_daemon.socket.subscriptions import MAX_PEER_SUBSCRIPTIONS


@pytest.fixture
def peer(daemon: DaemonProcess) -> Iterator[RawPeer]:
    raw = RawPeer(daemon)
    yield raw
    raw.close()  # not left to reconnect to a stopped daemon for the rest of the session


@pytest.mark.parametrize(
    ("build", "code", "words"),
    [
        (lambda p: [b"just one frame"], "bad_request", "expected 3 frames"),
        (lambda p: [PROTOCOL, b"sig", b"{}", b"extra"], "bad_request", "expected 3 frames"),
        (lambda p: [b"other/9", b"sig", b"{}"], "bad_request", "unsupported protocol"),
        (
            lambda p: [PROTOCOL, b"0" * 64, envelope({"type": "hello"})],
            "unauthenticated",
            "signature",
        ),
        (lambda p: p.signed(b"{not json"), "bad_request", "invalid request"),
        (lambda p: p.signed(b"[1,2,3]"), "bad_request", "invalid request"),
        (
            lambda p: p.signed(envelope({"type": "launch_missiles"})),
            "bad_request",
            "launch_missiles",
        ),
        (lambda p: p.signed(envelope({"type": "status", "run_id": 42})), "bad_request", "run_id"),
        (lambda p: p.signed(envelope({"type": "read", "after": -1})), "bad_request", "after"),
        (lambda p: p.signed(envelope({"type": "read", "limit": 0})), "bad_request", "limit"),
        (lambda p: p.signed(envelope({"type": "hello", "surprise": 1})), "bad_request", "surprise"),
        (lambda p: p.signed(envelope({"type": "status", "run_id": "nope"})), "not_found", "nope"),
        (
            lambda p: p.signed(b'{"id":"x","nonce":"short","ts":1,"request":{"type":"hello"}}'),
            "bad_request",
            "nonce",
        ),
    ],
)
def test_bad_requests_get_a_clear_error_and_the_daemon_carries_on(
    daemon: DaemonProcess,
    peer: RawPeer,
    build: Callable[[RawPeer], list[bytes]],
    code: str,
    words: str,
) -> None:
    got_code, message = refusal(peer, build(peer))
    assert got_code == code
    assert words in message
    assert_alive(daemon)


def test_error_replies_carry_the_request_id_when_it_can_be_read(peer: RawPeer) -> None:
    peer.send(peer.signed(envelope({"type": "status", "run_id": 42}, request_id="abc")))
    assert peer.reply().id == "abc"


def test_an_oversized_request_is_refused_with_its_id(daemon: DaemonProcess, peer: RawPeer) -> None:
    body = envelope({"type": "status", "run_id": "x" * (MAX_MESSAGE_BYTES + 10)}, "big")
    peer.send(peer.signed(body))
    reply = peer.reply()
    assert reply.id == "big"  # so that the client that sent it is told, not left waiting
    assert reply.error is not None and reply.error.code == "too_large"
    assert str(MAX_MESSAGE_BYTES) in reply.error.message
    assert_alive(daemon)


def test_a_message_beyond_the_hard_limit_drops_only_that_peer(
    daemon: DaemonProcess, peer: RawPeer
) -> None:
    peer.send([PROTOCOL, b"x", b"y" * (8 * MAX_MESSAGE_BYTES)])
    assert_alive(daemon)


def test_an_unauthenticated_run_request_is_not_executed(
    daemon: DaemonProcess, peer: RawPeer, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    _, frames = encode_request(
        b"wrong-token" * 4, StartRun(command=["touch", str(marker)], cwd=str(tmp_path))
    )
    code, _ = refusal(peer, frames)
    assert code == "unauthenticated"
    assert daemon.status().runs == []
    assert not marker.exists()


def test_a_replayed_request_is_refused_and_not_executed(
    daemon: DaemonProcess, peer: RawPeer
) -> None:
    _, frames = encode_request(
        peer.key, StartRun(command=agent("reviewer.py"), cwd=str(daemon.home))
    )
    peer.send(frames)
    assert peer.reply().ok
    code, message = refusal(peer, frames)
    assert code == "replayed"
    assert "replayed" in message
    assert len(daemon.status().runs) == 1


def test_a_request_signed_long_ago_is_refused(peer: RawPeer) -> None:
    body = msgspec.json.encode(
        {"id": "old", "nonce": "a" * 32, "ts": time.time() - 3600, "request": {"type": "hello"}}
    )
    code, _ = refusal(peer, peer.signed(body))
    assert code == "replayed"


def test_random_garbage_never_takes_the_daemon_down(daemon: DaemonProcess, peer: RawPeer) -> None:
    rng = random.Random(1234)
    for _ in range(300):
        frames = [rng.randbytes(rng.randint(0, 300)) for _ in range(rng.randint(1, 5))]
        if rng.random() < 0.3:
            frames = [PROTOCOL, *frames[:2]]
        peer.send(frames)
    assert_alive(daemon)
    assert daemon.process is not None and daemon.process.poll() is None


def test_many_clients_at_once_are_all_answered(daemon: DaemonProcess) -> None:
    failures: list[BaseException] = []

    def hammer() -> None:
        try:
            with daemon.client() as client:
                for _ in range(50):
                    result: StatusResult = client.request(Status())
                    assert result.head_position >= 0
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_subscribe_catches_up_then_follows_live_without_gaps(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        first: list[EventRecord] = []
        client.request(StartRun(command=agent("reviewer.py"), cwd=str(daemon.home)))
        daemon.wait_for_run(daemon.status().runs[0].run_id)
        head = client.hello().head_position
        follow = client.follow(after=0)
        while not first or first[-1].position < head:
            first.append(next(follow))
        with daemon.client() as other:
            other.request(StartRun(command=agent("reviewer.py"), cwd=str(daemon.home)))
        live = next(follow)
        follow.close()
    positions = [r.position for r in [*first, live]]
    assert positions == list(range(1, len(positions) + 1))
    assert msgspec.json.decode(live.event)["type"] == "run_created"


def test_a_slow_subscriber_is_told_to_resume_and_then_misses_nothing(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    orca_home.mkdir(mode=0o700, parents=True)
    (orca_home / "config.toml").write_text("[daemon]\nsubscriber_queue_events = 20\n")
    daemon = make_daemon().start()
    peer = RawPeer(daemon)
    peer.socket.setsockopt(zmq.RCVHWM, 1)
    start_after = daemon.status().head_position
    _, frames = encode_request(peer.key, Subscribe(after=start_after))
    peer.send(frames)
    assert peer.reply().ok
    # While the subscriber reads nothing, a run writes far more than the socket buffers hold.
    with daemon.client() as client:
        started = client.request(StartRun(command=agent("firehose.py", "16"), cwd=str(daemon.home)))
    run = daemon.wait_for_run(started.run_id)
    messages = []
    while True:
        message = peer.receive()
        messages.append(message)
        if isinstance(message, SubscriptionOverflowed):
            break
    delivered = [e.position for m in messages if isinstance(m, EventsPushed) for e in m.events]
    overflow = messages[-1]
    assert isinstance(overflow, SubscriptionOverflowed)
    assert overflow.resume_from == (delivered[-1] if delivered else start_after)
    assert overflow.resume_from < daemon.status().head_position
    peer.close()
    # The client library resumes by itself: every position arrives exactly once, in order.
    with daemon.client() as client:
        follow = client.follow(after=0)
        seen = [next(follow).position for _ in range(daemon.status().head_position)]
        follow.close()
    assert seen == list(range(1, len(seen) + 1))
    assert run.status == "completed"


def test_client_follow_survives_a_daemon_restart(make_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = make_daemon().start()
    with daemon.client() as client:
        client.request(StartRun(command=agent("reviewer.py"), cwd=str(daemon.home)))
    seen: list[int] = []
    reconnects: list[str] = []
    done = threading.Event()

    def watch() -> None:
        with Client(daemon.paths) as client:
            for record in client.follow(after=0, idle_check=0.2, on_reconnect=reconnects.append):
                seen.append(record.position)
                if msgspec.json.decode(record.event).get("title") == "after restart":
                    done.set()
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    daemon.stop()
    daemon.start()
    with daemon.client() as client:
        client.request(StartRun(command=["true"], cwd=str(daemon.home), title="after restart"))
    assert done.wait(20), f"watcher saw {seen}"
    assert seen == list(range(1, len(seen) + 1))
    with daemon.client() as client:
        assert client.request(Hello()).protocol == 1


def test_the_token_appears_in_no_file_and_no_log_line(daemon: DaemonProcess, peer: RawPeer) -> None:
    daemon.orca("run", "--wait", "--", *agent("reviewer.py"))
    refusal(peer, [PROTOCOL, b"0" * 64, envelope({"type": "hello"})])
    daemon.stop()
    token = daemon.paths.token_file.read_bytes().strip()
    assert len(token) >= 64
    for path in daemon.home.rglob("*"):
        if path.is_file() and path != daemon.paths.token_file:
            assert token not in path.read_bytes(), path
    assert token.decode() not in daemon.output()


def test_a_silent_subscriber_is_dropped_after_its_lease(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    orca_home.mkdir(mode=0o700, parents=True)
    (orca_home / "config.toml").write_text("[daemon]\nsubscription_lease_seconds = 1.0\n")
    daemon = make_daemon().start()
    gone = RawPeer(daemon)
    _, frames = encode_request(gone.key, Subscribe(after=0))
    gone.send(frames)
    assert gone.reply().ok
    gone.close()
    with daemon.client() as client:
        follow = client.follow(after=0, idle_check=0.2)  # a live subscriber keeps its lease
        client.request(StartRun(command=["true"], cwd=str(daemon.home)))
        next(follow)
        deadline = time.monotonic() + 10
        while client.hello().subscriptions > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.hello().subscriptions == 1
        keep_until = time.monotonic() + 1.5  # longer than the lease, while this peer talks
        while time.monotonic() < keep_until:
            client.hello()
            time.sleep(0.1)
        assert next(follow).position == 2
        assert client.hello().subscriptions == 1
        follow.close()


def test_a_connection_may_hold_only_so_many_subscriptions(daemon: DaemonProcess) -> None:
    greedy = RawPeer(daemon)
    for _ in range(MAX_PEER_SUBSCRIPTIONS):
        greedy.send(encode_request(greedy.key, Subscribe(after=0))[1])
        assert greedy.reply().ok
    code, message = refusal(greedy, encode_request(greedy.key, Subscribe(after=0))[1])
    assert code == "busy"
    assert f"({MAX_PEER_SUBSCRIPTIONS})" in message and "unsubscribe" in message
    with daemon.client() as client:  # another connection is not held back
        follow = client.follow(after=0)
        client.request(StartRun(command=["true"], cwd=str(daemon.home)))
        assert next(follow).position == 1
        follow.close()
        assert client.hello().subscriptions == MAX_PEER_SUBSCRIPTIONS
    greedy.close()


def test_a_subscriber_that_stops_reading_is_ended_and_told_where_to_resume(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    orca_home.mkdir(mode=0o700, parents=True)
    (orca_home / "config.toml").write_text("[daemon]\nsubscription_lease_seconds = 2.0\n")
    daemon = make_daemon().start()
    stuck = RawPeer(daemon, RCVHWM=1)
    stuck.send(encode_request(stuck.key, Subscribe(after=0))[1])
    assert stuck.reply().ok
    # It reads nothing while a run writes far more than the socket buffers hold; meanwhile it
    # still sends requests, so its lease alone would keep it.
    with daemon.client() as client:
        started = client.request(StartRun(command=agent("firehose.py", "8"), cwd=str(daemon.home)))
        deadline = time.monotonic() + 20
        while client.hello().subscriptions and time.monotonic() < deadline:
            stuck.send(encode_request(stuck.key, Hello())[1])
            time.sleep(0.1)
        assert client.hello().subscriptions == 0
    daemon.wait_for_run(started.run_id)
    delivered = 0
    while not isinstance(message := stuck.receive(), SubscriptionOverflowed):
        if isinstance(message, EventsPushed):
            assert message.events[0].position == delivered + 1
            delivered = message.events[-1].position
    assert message.resume_from == delivered
    assert delivered < daemon.status().head_position
    stuck.close()
