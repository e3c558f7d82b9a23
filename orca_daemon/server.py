"""The socket: a ZeroMQ ROUTER on `ipc://` that verifies, dispatches and replies.

Anything a local process sends gets either a signed reply or, for frames too broken to answer,
a log line; the loop itself never stops on bad input.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from typing import Protocol

import anyio.abc
import msgspec
import zmq

from orca_client.wire import (
    MAX_MESSAGE_BYTES,
    DaemonMessage,
    ReplayGuard,
    Reply,
    Request,
    RequestEnvelope,
    WireError,
    decode_request,
    encode_daemon_message,
    error_reply,
    ok_reply,
    request_id_of,
)
from orca_daemon.subscriptions import Delivery

log = logging.getLogger(__name__)


class RequestHandler(Protocol):
    """What the server needs from the API: quick answers inline, slow ones in a task."""

    def answer_now(self, identity: bytes, request: Request) -> msgspec.Struct | None:
        """The result of a request that needs no waiting, or None to use `answer`."""
        ...

    async def answer(self, identity: bytes, request: Request) -> msgspec.Struct:
        """The result of any request; raises `WireError` to refuse it."""
        ...

    def after_reply(self, result: msgspec.Struct, delivered: bool) -> None:
        """Told of each successful result and whether its reply reached the peer."""
        ...


HARD_MAX_MESSAGE_BYTES = 4 * MAX_MESSAGE_BYTES
PEER_SEND_QUEUE_MESSAGES = 64
"""Messages ZeroMQ queues for one peer before sends to it wait (so memory per peer is bounded)."""
SEND_RETRY_SECONDS = 0.01
MAX_SEND_BACKOFF_SECONDS = 0.1


class Server:
    """Receives requests and answers them; pushes subscription messages.

    A plain ZeroMQ socket driven by the event loop's reader callback: requests that need no
    waiting (hello, status) are answered inline, the rest in a task of their own.
    """

    def __init__(self, endpoint: str, key: bytes, started_at: float) -> None:
        self._endpoint = endpoint
        self._key = key
        self._guard = ReplayGuard(not_before=started_at)
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._socket.setsockopt(zmq.MAXMSGSIZE, HARD_MAX_MESSAGE_BYTES)
        self._socket.setsockopt(zmq.SNDHWM, PEER_SEND_QUEUE_MESSAGES)
        self._socket.setsockopt(zmq.LINGER, 500)
        self._readable = asyncio.Event()

    def bind(self) -> None:
        self._socket.bind(self._endpoint)

    async def serve(self, task_group: anyio.abc.TaskGroup, handler: RequestHandler) -> None:
        """Receive until cancelled."""
        loop = asyncio.get_running_loop()
        descriptor = int(self._socket.getsockopt(zmq.FD))
        loop.add_reader(descriptor, self._readable.set)
        try:
            while True:
                # The descriptor is edge-triggered: drain everything, then wait for the next edge.
                while self._has_input():
                    frames = self._socket.recv_multipart(zmq.NOBLOCK)
                    self._dispatch(frames, task_group, handler)
                self._readable.clear()
                if not self._has_input():
                    await self._readable.wait()
        finally:
            loop.remove_reader(descriptor)

    def _has_input(self) -> bool:
        return bool(int(self._socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN)

    def _dispatch(
        self, frames: list[bytes], task_group: anyio.abc.TaskGroup, handler: RequestHandler
    ) -> None:
        if len(frames) < 2:
            log.warning("dropped a message without a routing identity")
            return
        identity, payload = frames[0], frames[1:]
        request_id = ""
        try:
            envelope = decode_request(self._key, payload)
            request_id = envelope.id
            self._guard.check(envelope.nonce, envelope.ts, time.time())
            result = handler.answer_now(identity, envelope.request)
        except WireError as exc:
            if not request_id and len(payload) == 3 and exc.code != "too_large":
                request_id = request_id_of(payload[2])
            log.info("refused a request: %s: %s", exc.code, exc.message)
            self._reply(task_group, identity, error_reply(request_id, exc.code, exc.message))
            return
        except Exception as exc:
            self._internal_error(task_group, identity, request_id, exc)
            return
        if result is None:
            task_group.start_soon(self._answer_later, identity, envelope, handler)
            return
        delivered = self._send_now(identity, ok_reply(request_id, result))
        if delivered is None:
            task_group.start_soon(
                self._send_then_tell, identity, ok_reply(request_id, result), result, handler
            )
        else:
            handler.after_reply(result, delivered is Delivery.SENT)

    async def _answer_later(
        self, identity: bytes, envelope: RequestEnvelope, handler: RequestHandler
    ) -> None:
        """Run a request that waits (for the log, a process); nothing escapes this method."""
        try:
            try:
                result = await handler.answer(identity, envelope.request)
            except WireError as exc:
                log.info("refused a request: %s: %s", exc.code, exc.message)
                await self.send(identity, error_reply(envelope.id, exc.code, exc.message))
                return
            await self._send_then_tell(identity, ok_reply(envelope.id, result), result, handler)
        except Exception as exc:
            log.exception("request %s failed", envelope.id)
            message = f"internal error in orcad: {type(exc).__name__}"
            await self.send(identity, error_reply(envelope.id, "internal", message))

    async def _send_then_tell(
        self, identity: bytes, reply: Reply, result: msgspec.Struct, handler: RequestHandler
    ) -> None:
        delivery = await self.send(identity, reply)
        handler.after_reply(result, delivery is Delivery.SENT)

    def _internal_error(
        self, task_group: anyio.abc.TaskGroup, identity: bytes, request_id: str, exc: Exception
    ) -> None:
        log.error("request %s failed", request_id, exc_info=exc)
        message = f"internal error in orcad: {type(exc).__name__}"
        self._reply(task_group, identity, error_reply(request_id, "internal", message))

    def _reply(self, task_group: anyio.abc.TaskGroup, identity: bytes, reply: Reply) -> None:
        if self._send_now(identity, reply) is None:
            task_group.start_soon(self.send, identity, reply)

    def _send_now(self, identity: bytes, message: DaemonMessage) -> Delivery | None:
        """Try to send without waiting: SENT, GONE, or None when the peer's queue is full."""
        frames = [identity, *encode_daemon_message(self._key, message)]
        try:
            self._socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:
                return Delivery.GONE
            if exc.errno != errno.EAGAIN:
                raise
            return None
        finally:
            self._readable.set()  # a send can swallow the descriptor's edge: look again
        return Delivery.SENT

    async def send(self, identity: bytes, message: DaemonMessage) -> Delivery:
        """Send to one peer; waits while its queue is full; GONE once it has disconnected."""
        backoff = SEND_RETRY_SECONDS
        while True:
            delivery = self._send_now(identity, message)
            if delivery is not None:
                return delivery
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_SEND_BACKOFF_SECONDS)

    def close(self) -> None:
        self._socket.close(linger=200)
        self._context.term()
