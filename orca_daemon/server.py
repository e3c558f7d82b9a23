"""The socket: a ZeroMQ ROUTER on `ipc://` that verifies, dispatches and replies.

Anything a local process sends gets either a signed reply or, for frames too broken to answer,
a log line; the loop itself never stops on bad input.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Awaitable, Callable

import anyio.abc
import msgspec
import zmq
import zmq.asyncio

from orca_client.wire import (
    MAX_MESSAGE_BYTES,
    DaemonMessage,
    ReplayGuard,
    Request,
    WireError,
    decode_request,
    encode_daemon_message,
    error_reply,
    ok_reply,
    request_id_of,
)
from orca_daemon.subscriptions import Delivery

log = logging.getLogger(__name__)

Handler = Callable[[bytes, Request], Awaitable[msgspec.Struct]]
"""Handles one verified request from a peer identity; raises `WireError` to refuse it."""
AfterReply = Callable[[msgspec.Struct, bool], None]
"""Told of each successful result and whether its reply reached the peer."""
HARD_MAX_MESSAGE_BYTES = 4 * MAX_MESSAGE_BYTES
PEER_SEND_QUEUE_MESSAGES = 64
"""Messages ZeroMQ queues for one peer before sends to it wait (so memory per peer is bounded)."""
SEND_RETRY_SECONDS = 0.01
MAX_SEND_BACKOFF_SECONDS = 0.1


class Server:
    """Receives requests, runs each through `handler`, replies; pushes subscription messages."""

    def __init__(
        self,
        endpoint: str,
        key: bytes,
        handler: Handler,
        after_reply: AfterReply,
        started_at: float,
    ) -> None:
        self._endpoint = endpoint
        self._key = key
        self._handler = handler
        self._after_reply = after_reply
        self._guard = ReplayGuard(not_before=started_at)
        self._context = zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._socket.setsockopt(zmq.MAXMSGSIZE, HARD_MAX_MESSAGE_BYTES)
        self._socket.setsockopt(zmq.SNDHWM, PEER_SEND_QUEUE_MESSAGES)
        self._socket.setsockopt(zmq.LINGER, 500)
        self.requests_served = 0

    def bind(self) -> None:
        self._socket.bind(self._endpoint)

    async def serve(self, task_group: anyio.abc.TaskGroup) -> None:
        """Receive until cancelled; slow requests run in their own task so others go on."""
        while True:
            frames = await self._socket.recv_multipart(copy=True)
            if len(frames) < 2:
                log.warning("dropped a message without a routing identity")
                continue
            identity, payload = frames[0], frames[1:]
            task_group.start_soon(self._handle, identity, payload)

    async def _handle(self, identity: bytes, payload: list[bytes]) -> None:
        """Verify, run and answer one request; nothing a peer sends can escape this method."""
        try:
            await self._answer(identity, payload)
        except Exception:
            log.exception("could not answer a request")

    async def _answer(self, identity: bytes, payload: list[bytes]) -> None:
        request_id = ""
        try:
            envelope = decode_request(self._key, payload)
            request_id = envelope.id
            self._guard.check(envelope.nonce, envelope.ts, time.time())
            result = await self._handler(identity, envelope.request)
        except WireError as exc:
            if not request_id and len(payload) == 3 and exc.code != "too_large":
                request_id = request_id_of(payload[2])
            log.info("refused a request: %s: %s", exc.code, exc.message)
            await self.send(identity, error_reply(request_id, exc.code, exc.message))
            return
        except Exception as exc:
            log.exception("request %s failed", request_id)
            message = f"internal error in orcad: {type(exc).__name__}"
            await self.send(identity, error_reply(request_id, "internal", message))
            return
        self.requests_served += 1
        delivery = await self.send(identity, ok_reply(request_id, result))
        self._after_reply(result, delivery is Delivery.SENT)

    async def send(self, identity: bytes, message: DaemonMessage) -> Delivery:
        """Send to one peer; waits while its queue is full; GONE once it has disconnected."""
        frames = [identity, *encode_daemon_message(self._key, message)]
        backoff = SEND_RETRY_SECONDS
        while True:
            try:
                await self._socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                return Delivery.SENT
            except zmq.ZMQError as exc:
                if exc.errno == errno.EHOSTUNREACH:
                    return Delivery.GONE
                if exc.errno != errno.EAGAIN:
                    raise
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_SEND_BACKOFF_SECONDS)

    def close(self) -> None:
        self._socket.close(linger=200)
        self._context.term()
