"""Helpers for tests that speak to orcad's socket frame by frame."""

from __future__ import annotations

import random
import time
from pathlib import Path

import msgspec
import zmq
from conftest import DaemonProcess

from orca_client.paths import read_token
from orca_client.wire import (
    PROTOCOL,
    EventsPushed,
    Reply,
    SubscriptionOverflowed,
    decode_daemon_message,
    sign,
)


class RawPeer:
    """A bare DEALER socket speaking to orcad frame by frame."""

    def __init__(self, daemon: DaemonProcess, **options: int) -> None:
        self.key = read_token(daemon.paths.token_file)
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        for name, value in options.items():
            self.socket.setsockopt(getattr(zmq, name), value)
        self.socket.connect(daemon.paths.socket_endpoint)

    def send(self, frames: list[bytes]) -> None:
        self.socket.send_multipart(frames)

    def receive(self, timeout: float = 5.0) -> Reply | EventsPushed | SubscriptionOverflowed:
        assert self.socket.poll(int(timeout * 1000)), "no message from orcad"
        return decode_daemon_message(self.key, self.socket.recv_multipart())

    def reply(self, timeout: float = 5.0) -> Reply:
        message = self.receive(timeout)
        assert isinstance(message, Reply)
        return message

    def signed(self, body: bytes) -> list[bytes]:
        return [PROTOCOL, sign(self.key, body), body]

    def close(self) -> None:
        self.socket.close()


def envelope(request: dict[str, object], request_id: str = "r1") -> bytes:
    return msgspec.json.encode(
        {
            "id": request_id,
            "nonce": f"{random.getrandbits(128):032x}",
            "ts": time.time(),
            "request": request,
        }
    )


def assert_alive(daemon: DaemonProcess) -> None:
    assert daemon.process is not None and daemon.process.poll() is None, daemon.output()
    with daemon.client(timeout=10.0) as client:
        assert client.hello().protocol == 1


def refusal(peer: RawPeer, frames: list[bytes]) -> tuple[str, str]:
    peer.send(frames)
    reply = peer.reply()
    assert not reply.ok and reply.error is not None
    return reply.error.code, reply.error.message


def memory_of(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak RSS) of a process, in bytes."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) * 1024
    return found
