"""A subscription its lease ended: the subscriber can learn so (a notice, and `hello` names it),
and `orca watch` paused past the lease (Ctrl-Z, a laptop asleep) resumes with no gap."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import DaemonProcess, wait_until
from support.sockets import RawPeer

from orca_client.wire import (
    Hello,
    HelloResult,
    Reply,
    StartRun,
    Subscribe,
    Subscribed,
    decode_result,
    encode_request,
)

LEASE = 1.0


def leased_daemon(make_daemon: Callable[..., DaemonProcess], orca_home: Path) -> DaemonProcess:
    orca_home.mkdir(mode=0o700, parents=True)
    (orca_home / "config.toml").write_text(f"[daemon]\nsubscription_lease_seconds = {LEASE}\n")
    daemon: DaemonProcess = make_daemon().start()
    return daemon


def ask_hello(peer: RawPeer, subscription: str) -> HelloResult:
    peer.send(encode_request(peer.key, Hello(subscription=subscription))[1])
    while True:
        message = peer.receive()
        if isinstance(message, Reply):  # skip pushes and notices still queued for this peer
            result: HelloResult = decode_result(message, HelloResult)
            return result


def test_hello_tells_a_subscriber_whether_its_subscription_is_still_open(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    daemon = leased_daemon(make_daemon, orca_home)
    subscriber, other = RawPeer(daemon), RawPeer(daemon)
    subscriber.send(encode_request(subscriber.key, Subscribe(after=0))[1])
    subscription = decode_result(subscriber.reply(), Subscribed).subscription
    assert ask_hello(subscriber, subscription).subscription_open is True
    assert ask_hello(other, subscription).subscription_open is False  # not that peer's
    with daemon.client() as client:
        assert client.hello().subscription_open is None  # not asked
        # The subscriber says nothing for longer than its lease: orcad ends the subscription.
        wait_until(lambda: client.hello().subscriptions == 0, what="the lease to end it")
    assert ask_hello(subscriber, subscription).subscription_open is False
    subscriber.close()
    other.close()


def test_orca_watch_paused_past_its_lease_resumes_with_no_gap(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path
) -> None:
    daemon = leased_daemon(make_daemon, orca_home)
    screen = tmp_path / "watch.out"
    with screen.open("wb") as out:
        watch = subprocess.Popen(
            [sys.executable, "-m", "orca_client.cli", "watch", "--json", "--after", "0"],
            env=daemon.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def positions() -> list[int]:
            lines = screen.read_text().splitlines()
            return [json.loads(line)["position"] for line in lines if line.startswith("{")]

        def start_run() -> int:
            with daemon.client() as client:
                client.request(StartRun(command=["true"], cwd=str(daemon.home)))
                return client.hello().head_position

        head = start_run()
        wait_until(lambda: positions() and positions()[-1] >= head, what="watch to show it")
        watch.send_signal(signal.SIGSTOP)  # Ctrl-Z
        with daemon.client() as client:
            wait_until(lambda: client.hello().subscriptions == 0, what="the lease to end")
        head = start_run()  # committed (its position known) while watch sleeps
        watch.send_signal(signal.SIGCONT)
        head = max(head, start_run())
        wait_until(lambda: positions() and positions()[-1] >= head, what="watch to catch up")
        seen = positions()
        assert seen == list(range(1, seen[-1] + 1)), seen  # every event once, in order
        assert watch.poll() is None
    finally:
        watch.kill()
        watch.wait()
