"""The socket: a ZeroMQ ROUTER on `ipc://` that verifies, dispatches and replies.

Anything a local process sends gets either a signed reply or, for frames too broken to answer,
a log line; no message of any kind ends the loop. What one peer may hold is bounded: requests
being answered, replies it has not read, connections at once (see docs/protocol.md, "Limits").
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import anyio.abc
import msgspec
import zmq

from orca_client.replay import ReplayGuard
from orca_client.wire import (
    MAX_MESSAGE_BYTES,
    DaemonMessage,
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
from orca_daemon.limits import MAX_CONNECTIONS
from orca_daemon.socket.subscriptions import Delivery

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
        """Told of each successful result and whether its reply was sent (or queued) to the peer."""
        ...


HARD_MAX_MESSAGE_BYTES = 4 * MAX_MESSAGE_BYTES
PEER_SEND_QUEUE_MESSAGES = 2
"""Messages ZeroMQ queues for one peer before sends to it wait in its outbox, which is bounded
in bytes (a status page may be 4 MiB: what ZeroMQ holds for a peer that reads nothing is not
counted there, so it is kept to two messages)."""
MAX_FRAMES = 4
"""Frames a request has at most (identity, protocol, signature, body); the rest of a longer
message is read and dropped frame by frame, never held."""
PEER_RECEIVE_QUEUE_MESSAGES = 32
"""Messages ZeroMQ reads ahead from one peer before it stops reading that peer."""
MAX_PEER_REQUESTS = 32
"""Requests of one connection being answered or whose replies it has not read yet; more are
refused until it reads."""
MAX_REQUESTS_IN_FLIGHT = 512
"""Requests being answered at once, from every peer together."""
PEER_OUTBOX_MESSAGES = 64
PEER_OUTBOX_BYTES = 16 << 20
OUTBOX_BYTES = 128 << 20
"""Messages waiting, outside ZeroMQ, for peers whose queues are full: per peer and in all."""
OUTBOX_PATIENCE_SECONDS = 60.0
"""A message a peer leaves unread this long is dropped (its client has long given up)."""
SEND_RETRY_SECONDS = 0.01
MAX_SEND_BACKOFF_SECONDS = 0.25
RECEIVE_BATCH = 64
"""Messages handled before the loop lets other tasks run."""
LOG_BURST = 20
LOG_PERIOD_SECONDS = 10.0


class LogThrottle:
    """At most `burst` lines per `period` seconds; the rest are counted and reported once."""

    def __init__(self, burst: int = LOG_BURST, period: float = LOG_PERIOD_SECONDS) -> None:
        self._burst = burst
        self._period = period
        self._start = time.monotonic()
        self._lines = 0
        self._held_back = 0

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self._start >= self._period:
            if self._held_back:
                log.warning(
                    "%d more refused or failed messages in %.0fs were not logged",
                    self._held_back,
                    now - self._start,
                )
            self._start, self._lines, self._held_back = now, 0, 0
        if self._lines < self._burst:
            self._lines += 1
            return True
        self._held_back += 1
        return False


class ConnectionGuard:
    """Counts the peers connected (from the socket's monitor) and refuses those over the cap.

    libzmq accepts every connection itself, and aborts the process if `accept` runs out of
    descriptors, so a peer over the cap is refused right after: its descriptor is shut down
    (never closed: libzmq owns it), libzmq sees it end and closes it.
    """

    def __init__(self, socket_path: str, cap: int) -> None:
        self._path = socket_path
        self.cap = cap
        self._live: set[int] = set()
        self._refused = 0

    def __len__(self) -> int:
        return len(self._live)

    def watch(self, monitor: zmq.Socket[bytes]) -> None:
        """Take in what the socket's monitor says of connections accepted and ended."""
        while _has_input(monitor):
            try:
                frames = monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2 or len(frames[0]) != 6:
                continue
            event, descriptor = struct.unpack("=Hi", frames[0])
            if event == zmq.EVENT_ACCEPTED:
                self.accepted(descriptor)
            elif event == zmq.EVENT_DISCONNECTED:
                self.disconnected(descriptor)

    def accepted(self, descriptor: int) -> None:
        self._live.add(descriptor)
        if len(self._live) <= self.cap:
            return
        if not self._refused:
            log.warning(
                "%d peers are connected, at most %d may be: refusing new connections",
                len(self._live) - 1,
                self.cap,
            )
        self._refused += 1
        self._shut_down(descriptor)

    def disconnected(self, descriptor: int) -> None:
        self._live.discard(descriptor)
        if self._refused and len(self._live) < self.cap:
            log.warning("accepting connections again (refused %d)", self._refused)
            self._refused = 0

    def _shut_down(self, descriptor: int) -> None:
        try:
            peer = socket.socket(fileno=descriptor)
        except OSError:
            return  # already closed by libzmq
        try:
            if peer.family == socket.AF_UNIX and peer.getsockname() == self._path:
                peer.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            peer.detach()


@dataclass(eq=False)
class _Outgoing:
    frames: list[bytes]
    size: int
    queued_at: float
    done: asyncio.Future[Delivery] | None = None


@dataclass(eq=False)
class _Peer:
    """What the server holds for one connection: requests it is answering, unsent messages."""

    answering: int = 0
    outbox: deque[_Outgoing] = field(default_factory=deque)
    outbox_bytes: int = 0
    draining: bool = False

    @property
    def outstanding(self) -> int:
        return self.answering + len(self.outbox)

    @property
    def idle(self) -> bool:
        return not self.answering and not self.outbox and not self.draining


class Server:
    """Receives requests and answers them; pushes subscription messages.

    A plain ZeroMQ socket driven by the event loop's reader callback: requests that need no
    waiting (hello, status) are answered inline, the rest in a task of their own. Messages for
    a peer whose ZeroMQ queue is full wait, in order, in a bounded outbox that one task per
    such peer drains.
    """

    def __init__(
        self, endpoint: str, key: bytes, started_at: float, max_connections: int = MAX_CONNECTIONS
    ) -> None:
        self._endpoint = endpoint
        self._key = key
        self._guard = ReplayGuard(not_before=started_at)
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._socket = _router_socket(self._context)
        self._monitor = self._socket.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self.connections = ConnectionGuard(endpoint.removeprefix("ipc://"), max_connections)
        self._readable = asyncio.Event()
        self._peers: dict[bytes, _Peer] = {}
        self._answering = 0
        self._outbox_bytes = 0
        self._tasks: anyio.abc.TaskGroup | None = None
        self._receiving = anyio.CancelScope()
        self._log_throttle = LogThrottle()

    def bind(self) -> None:
        self._socket.bind(self._endpoint)

    async def run(
        self, handler: RequestHandler, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        """Receive requests until `stop_receiving()`; own the answers and outbox drains under
        way (they go on after it, until the owner cancels this)."""
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            task_status.started()
            with self._receiving:
                await self._receive(tasks, handler)
            await anyio.sleep_forever()

    def stop_receiving(self) -> None:
        """Shutdown's first step: no request is read from now on."""
        self._receiving.cancel()

    async def _receive(self, task_group: anyio.abc.TaskGroup, handler: RequestHandler) -> None:
        loop = asyncio.get_running_loop()
        descriptors = [int(s.getsockopt(zmq.FD)) for s in (self._socket, self._monitor)]
        for descriptor in descriptors:
            loop.add_reader(descriptor, self._readable.set)
        try:
            while True:
                handled = 0
                # The descriptors are edge-triggered: drain, then wait for the next edge.
                while handled < RECEIVE_BATCH:
                    self.connections.watch(self._monitor)
                    if not _has_input(self._socket):
                        break
                    try:
                        frames = _receive_bounded(self._socket)
                    except zmq.Again:
                        break
                    self._dispatch(frames, task_group, handler)
                    handled += 1
                if handled == RECEIVE_BATCH:
                    await asyncio.sleep(0)  # a flood of requests must not starve other tasks
                    continue
                self._readable.clear()
                if not _has_input(self._socket) and not _has_input(self._monitor):
                    await self._readable.wait()
        finally:
            for descriptor in descriptors:
                loop.remove_reader(descriptor)

    # ------------------------------------------------------------------ requests

    def _dispatch(
        self, frames: list[bytes], task_group: anyio.abc.TaskGroup, handler: RequestHandler
    ) -> None:
        """Handle one message; nothing it raises leaves this method."""
        if len(frames) < 2:
            log.warning("dropped a message without a routing identity")
            return
        identity, payload = frames[0], frames[1:]
        request_id = ""
        try:
            try:
                envelope = decode_request(self._key, payload)
                request_id = envelope.id
                self._guard.check(envelope.nonce, envelope.ts, time.time())
                _admit(self._peers.get(identity), self._answering)
                result = handler.answer_now(identity, envelope.request)
            except WireError as exc:
                request_id = request_id or _request_id_in(payload)
                if self._log_throttle.allow():
                    log.info("refused a request: %s: %s", exc.code, exc.message)
                self._post_safely(identity, error_reply(request_id, exc.code, exc.message))
                return
            if result is None:
                self._start_answer(task_group, identity, envelope, handler)
                return
            try:
                delivered = self.post(identity, ok_reply(request_id, result))
            except BaseException:
                handler.after_reply(result, False)  # e.g. a subscription nobody was told of
                raise
            handler.after_reply(result, delivered)
        except Exception as exc:
            self._failed(identity, request_id, exc)

    def _start_answer(
        self,
        task_group: anyio.abc.TaskGroup,
        identity: bytes,
        envelope: RequestEnvelope,
        handler: RequestHandler,
    ) -> None:
        self._peer(identity).answering += 1
        self._answering += 1
        task_group.start_soon(self._answer_later, identity, envelope, handler)

    async def _answer_later(
        self, identity: bytes, envelope: RequestEnvelope, handler: RequestHandler
    ) -> None:
        """Run a request that waits (for the log, a process); nothing escapes this method."""
        try:
            try:
                result = await handler.answer(identity, envelope.request)
            except WireError as exc:
                if self._log_throttle.allow():
                    log.info("refused a request: %s: %s", exc.code, exc.message)
                self._post_safely(identity, error_reply(envelope.id, exc.code, exc.message))
                return
            handler.after_reply(result, self.post(identity, ok_reply(envelope.id, result)))
        except Exception as exc:
            self._failed(identity, envelope.id, exc)
        finally:
            self._answering -= 1
            peer = self._peers.get(identity)
            if peer is not None:
                peer.answering -= 1
                self._forget_if_idle(identity, peer)

    def _failed(self, identity: bytes, request_id: str, exc: Exception) -> None:
        if self._log_throttle.allow():
            log.error("request %s failed", request_id or "(without an id)", exc_info=exc)
        message = f"internal error in orcad: {type(exc).__name__}"
        self._post_safely(identity, error_reply(request_id, "internal", message))

    def _post_safely(self, identity: bytes, reply: Reply) -> None:
        try:
            self.post(identity, reply)
        except Exception as exc:
            if self._log_throttle.allow():
                log.error("could not send a reply to request %s", reply.id, exc_info=exc)

    # ------------------------------------------------------------------ sending

    def post(self, identity: bytes, message: DaemonMessage) -> bool:
        """Send, or queue behind what already waits for the peer; False if it is gone or holds
        too much unread (the message is then dropped)."""
        frames = encode_daemon_message(self._key, message)
        return self._enqueue(identity, frames, None) is not Delivery.GONE

    async def send(
        self, identity: bytes, message: DaemonMessage, patience: float = math.inf
    ) -> Delivery:
        """Send in order with the peer's other messages, waiting while its queue is full: GONE
        if it disconnected or holds too much unread; STUCK (and withdrawn) after `patience`."""
        frames = encode_daemon_message(self._key, message)
        done: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        delivery = self._enqueue(identity, frames, done)
        if delivery is not None:
            return delivery
        try:
            await asyncio.wait([done], timeout=None if math.isinf(patience) else patience)
        finally:
            if not done.done():  # timed out or cancelled: it must not go out later
                done.cancel()
                self._withdraw(identity, done)
        return Delivery.STUCK if done.cancelled() else done.result()

    def _enqueue(
        self, identity: bytes, frames: list[bytes], done: asyncio.Future[Delivery] | None
    ) -> Delivery | None:
        """SENT or GONE when settled now; None when queued (then `done` is resolved later)."""
        peer = self._peers.get(identity)
        if peer is None or not peer.outbox:
            delivery = self._send_now(identity, frames)
            if delivery is not None:
                return delivery
        peer = self._peer(identity)
        size = sum(len(frame) for frame in frames)
        if (
            self._tasks is None
            or self._outbox_bytes + size > OUTBOX_BYTES
            or (
                peer.outbox
                and (
                    len(peer.outbox) >= PEER_OUTBOX_MESSAGES
                    or peer.outbox_bytes + size > PEER_OUTBOX_BYTES
                )
            )
        ):
            if self._log_throttle.allow():
                log.warning(
                    "dropped a message to a peer that has %d unread waiting", len(peer.outbox)
                )
            self._forget_if_idle(identity, peer)
            return Delivery.GONE
        peer.outbox.append(_Outgoing(frames, size, time.monotonic(), done))
        peer.outbox_bytes += size
        self._outbox_bytes += size
        if not peer.draining:
            peer.draining = True
            self._tasks.start_soon(self._drain, identity, peer)
        return None

    async def _drain(self, identity: bytes, peer: _Peer) -> None:
        """Send a peer's queued messages in order as its queue makes room."""
        backoff = SEND_RETRY_SECONDS
        try:
            while peer.outbox:
                item = peer.outbox[0]
                try:
                    delivery = self._send_now(identity, item.frames)
                except zmq.ZMQError as exc:
                    log.error("cannot send to a peer: %s", exc)
                    delivery = Delivery.GONE
                if delivery is None:
                    if not _has_expired(item):
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, MAX_SEND_BACKOFF_SECONDS)
                        continue
                    if self._log_throttle.allow():
                        log.warning("dropped a message its peer left unread for too long")
                    self._settle(peer, item, Delivery.GONE)
                    continue
                backoff = SEND_RETRY_SECONDS
                self._settle(peer, item, delivery)
                while delivery is Delivery.GONE and peer.outbox:  # it disconnected
                    self._settle(peer, peer.outbox[0], Delivery.GONE)
        finally:
            peer.draining = False
            self._forget_if_idle(identity, peer)

    def _settle(self, peer: _Peer, item: _Outgoing, delivery: Delivery) -> None:
        peer.outbox.popleft()
        peer.outbox_bytes -= item.size
        self._outbox_bytes -= item.size
        if item.done is not None and not item.done.done():
            item.done.set_result(delivery)

    def _withdraw(self, identity: bytes, done: asyncio.Future[Delivery]) -> None:
        peer = self._peers.get(identity)
        if peer is None:
            return
        for item in peer.outbox:
            if item.done is done:
                peer.outbox.remove(item)
                peer.outbox_bytes -= item.size
                self._outbox_bytes -= item.size
                break
        self._forget_if_idle(identity, peer)

    def _peer(self, identity: bytes) -> _Peer:
        peer = self._peers.get(identity)
        if peer is None:
            peer = self._peers[identity] = _Peer()
        return peer

    def _forget_if_idle(self, identity: bytes, peer: _Peer) -> None:
        if peer.idle and self._peers.get(identity) is peer:
            del self._peers[identity]

    def _send_now(self, identity: bytes, frames: list[bytes]) -> Delivery | None:
        try:
            return _send_without_waiting(self._socket, [identity, *frames])
        finally:
            self._readable.set()  # a send can swallow the descriptor's edge: look again

    def close(self) -> None:
        try:
            self.connections.watch(self._monitor)  # a full monitor queue would block libzmq
            self._socket.disable_monitor()
        except zmq.ZMQError as exc:
            log.warning("could not stop the connection monitor: %s", exc)
        self._monitor.close(linger=0)
        self._socket.close(linger=200)
        self._context.term()


def _router_socket(context: zmq.Context[zmq.Socket[bytes]]) -> zmq.Socket[bytes]:
    """The ROUTER socket, with its limits: message size, per-peer queues, linger."""
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    router.setsockopt(zmq.MAXMSGSIZE, HARD_MAX_MESSAGE_BYTES)
    router.setsockopt(zmq.SNDHWM, PEER_SEND_QUEUE_MESSAGES)
    router.setsockopt(zmq.RCVHWM, PEER_RECEIVE_QUEUE_MESSAGES)
    router.setsockopt(zmq.LINGER, 500)
    return router


def _admit(peer: _Peer | None, answering: int) -> None:
    """Refuse a request when its peer, or every peer together, holds too much already."""
    if peer is not None and peer.outstanding >= MAX_PEER_REQUESTS:
        raise WireError(
            "busy",
            f"this connection has {peer.outstanding} requests unanswered or replies unread, "
            f"the most it may ({MAX_PEER_REQUESTS}); read the replies before sending more",
        )
    if answering >= MAX_REQUESTS_IN_FLIGHT:
        raise WireError(
            "busy",
            f"orcad is answering {answering} requests, its most; try again shortly",
        )


def _send_without_waiting(router: zmq.Socket[bytes], frames: list[bytes]) -> Delivery | None:
    """SENT, GONE (the peer left), or None when the peer's queue is full."""
    try:
        router.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
    except zmq.ZMQError as exc:
        if exc.errno == errno.EHOSTUNREACH:
            return Delivery.GONE
        if exc.errno != errno.EAGAIN:
            raise
        return None
    return Delivery.SENT


def _has_input(sock: zmq.Socket[bytes]) -> bool:
    return bool(int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN)


def _has_expired(item: _Outgoing) -> bool:
    return time.monotonic() - item.queued_at >= OUTBOX_PATIENCE_SECONDS


def _request_id_in(payload: list[bytes]) -> str:
    """The id of a request that could not be accepted, if it can be read ("" if not)."""
    if len(payload) != 3:
        return ""
    try:
        return request_id_of(payload[2])
    except Exception:  # a body that even the best-effort reader chokes on has no id
        return ""


def _receive_bounded(socket: zmq.Socket[bytes]) -> list[bytes]:
    """One whole message, frame by frame; frames past `MAX_FRAMES` are read and dropped (the
    message is then refused for its frame count). Raises zmq.Again when none is waiting."""
    frames = [socket.recv(zmq.NOBLOCK)]
    dropped = 0
    while socket.getsockopt(zmq.RCVMORE):
        frame = socket.recv()
        if len(frames) < MAX_FRAMES:
            frames.append(frame)
        else:
            dropped += 1
    if dropped:
        frames.append(b"")  # one frame too many: refused as a bad request, never decoded
    return frames
