"""The bridge's one connection to orcad: a DEALER socket on asyncio. Requests are signed and
answered concurrently (paired with their replies by id, sent again once on `stale`); pushes are
handed over in order; the connection's ends and returns are watched, so a request orcad can no
longer answer fails at once."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import msgspec
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from orca_client.client import (
    CONNECT_TIMEOUT,
    START_HINT,
    DaemonUnavailable,
    OrcaClientError,
    daemon_key,
    not_running_hint,
    socket_present,
)
from orca_client.paths import OrcaPaths
from orca_client.wire import (
    EventsPushed,
    Reply,
    Request,
    SubscriptionOverflowed,
    WireError,
    check_request_size,
    decode_daemon_message,
    encode_request,
)

Push = EventsPushed | SubscriptionOverflowed
RECEIVE_QUEUE_MESSAGES = 64
"""Messages from orcad that ZeroMQ holds for the bridge before orcad must wait (each is at most
16 MiB, an event page at most 512 KiB)."""
WAIT_STEP = 0.25
"""How often a request waiting for its reply checks whether the editor held the bridge up."""


class Unreachable(Exception):
    """orcad is not running, not answering, or went away before it answered."""

    def __init__(self, paths: OrcaPaths, message: str | None = None, sent: bool = False) -> None:
        super().__init__(message or "orcad is not running")
        self._paths = paths
        self._message = message
        self.sent = sent
        """The request went out (orcad may have carried it out)."""

    @property
    def message(self) -> str:
        """What to tell the user, with how to start orcad (worked out only when asked: the hint
        counts the sessions held while orcad is away)."""
        return self._message or not_running_hint(self._paths)


class Refused(Exception):
    """orcad refused the request; `code` is its error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Flow(Protocol):
    """Whether the bridge is held up writing to the editor (then it reads nothing from orcad)."""

    @property
    def held(self) -> bool: ...

    @property
    def holds(self) -> int: ...


OnReply = Callable[[msgspec.Raw], None]


@dataclass
class _Pending:
    reply: asyncio.Future[Reply]
    on_reply: OnReply | None


class DaemonLink:
    """One DEALER connection to orcad, read by `run`; requests from any task."""

    def __init__(self, paths: OrcaPaths, flow: Flow) -> None:
        self.paths = paths
        self._flow = flow
        self._context = zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.IMMEDIATE, 1)
        self._socket.setsockopt(zmq.RCVHWM, RECEIVE_QUEUE_MESSAGES)
        self._socket.connect(paths.socket_endpoint)
        self._key: bytes | None = None
        self._pending: dict[str, _Pending] = {}

    def close(self) -> None:
        self._socket.close(linger=0)
        self._context.term()

    async def run(
        self, on_push: Callable[[Push], Awaitable[None]], on_connection: Callable[[bool], None]
    ) -> None:
        """Read replies and pushes, and watch the connection, until cancelled. `on_push` gets
        each push in order (orcad's next message waits until it returns); `on_connection` is
        told when the connection ends (every request waiting for a reply then fails) or comes
        back."""
        monitor = self._socket.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._read(on_push))
                tasks.create_task(self._watch(monitor, on_connection))
        finally:
            self._socket.disable_monitor()
            monitor.close(linger=0)

    async def request(
        self, request: Request, within: float, on_reply: OnReply | None = None
    ) -> msgspec.Raw:
        """The result of `request` as orcad encoded it. `on_reply` gets it as soon as the reply is
        read, before any later message of orcad's is handled. A request that crossed a restart of
        orcad (`stale`) is signed again and sent once more. Raises Unreachable or Refused."""
        try:
            return await self._exchange(request, within, on_reply)
        except Refused as refused:
            if refused.code != "stale":
                raise
        return await self._exchange(request, within, on_reply)

    async def _exchange(
        self, request: Request, within: float, on_reply: OnReply | None
    ) -> msgspec.Raw:
        key = self._signing_key()
        request_id, frames = encode_request(key, request)
        try:
            check_request_size(frames)
        except WireError as exc:
            raise Refused(exc.code, exc.message) from None
        connecting = int(min(CONNECT_TIMEOUT, within) * 1000)
        if not await self._socket.poll(connecting, zmq.POLLOUT):  # type: ignore[call-arg]
            raise Unreachable(
                self.paths,
                f"orcad is not accepting connections on {self.paths.socket_file} (a socket left "
                f"by a stopped daemon?); {START_HINT}",
            )
        pending = _Pending(asyncio.get_running_loop().create_future(), on_reply)
        self._pending[request_id] = pending
        try:
            await self._socket.send_multipart(frames)
            reply = await self._wait(pending.reply, within)
        finally:
            self._pending.pop(request_id, None)
        if not reply.ok:
            error = reply.error
            raise Refused(error.code if error else "internal", error.message if error else "")
        return reply.result

    def _signing_key(self) -> bytes:
        try:
            if not socket_present(self.paths):
                raise Unreachable(self.paths)
            if self._key is None:
                self._key = daemon_key(self.paths)
        except (DaemonUnavailable, OrcaClientError) as exc:
            raise Unreachable(self.paths, str(exc)) from None
        return self._key

    async def _wait(self, reply: asyncio.Future[Reply], within: float) -> Reply:
        """The reply, waiting up to `within` seconds of the bridge reading from orcad: time it
        spent held up by the editor (not reading stdout) does not count."""
        waited = 0.0
        while True:
            holds = self._flow.holds
            step = min(WAIT_STEP, within - waited)
            done, _ = await asyncio.wait({reply}, timeout=step)
            if done:
                return reply.result()
            if self._flow.held or self._flow.holds != holds:
                continue
            waited += step
            if waited >= within:
                raise Unreachable(
                    self.paths, f"orcad did not answer within {within:.0f}s", sent=True
                )

    async def _read(self, on_push: Callable[[Push], Awaitable[None]]) -> None:
        while True:
            frames = await self._socket.recv_multipart()
            try:
                message = decode_daemon_message(self._key or b"", frames)
            except WireError as exc:
                if exc.code == "unauthenticated":  # orcad has another token now: read it again
                    self._key = None
                say(f"a message from orcad was not accepted: {exc}")
                continue
            if isinstance(message, Reply):
                self._settle(message)
            else:
                await on_push(message)

    def _settle(self, reply: Reply) -> None:
        pending = self._pending.get(reply.id)
        if pending is None or pending.reply.done():
            return  # its request gave up waiting
        if reply.ok and pending.on_reply is not None:
            pending.on_reply(reply.result)
        pending.reply.set_result(reply)

    async def _watch(
        self, monitor: zmq.asyncio.Socket, on_connection: Callable[[bool], None]
    ) -> None:
        while True:
            event = parse_monitor_message(await monitor.recv_multipart())["event"]
            if event == zmq.EVENT_DISCONNECTED:
                gone = Unreachable(
                    self.paths,
                    "the connection to orcad closed before it answered (orcad stopped or "
                    "restarted); the request may or may not have been carried out; "
                    f"{START_HINT} if it does not come back",
                    sent=True,
                )
                for pending in self._pending.values():
                    if not pending.reply.done():
                        pending.reply.set_exception(gone)
                on_connection(False)
            elif event == zmq.EVENT_CONNECTED:
                on_connection(True)


def say(message: str) -> None:
    """A diagnostic on stderr (never a request's params: they may hold a secret answer)."""
    print(f"orca bridge: {message}", file=sys.stderr, flush=True)
