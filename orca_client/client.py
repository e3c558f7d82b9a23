"""A blocking client for orcad: signed requests with typed results, and subscriptions that resume.

`Client.follow` yields every event after a position, in order, with no gap: it resubscribes from
the last position it yielded after an overflow notice or a daemon restart.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import zmq

from orca_client.paths import OrcaPaths, read_token, resolve_paths
from orca_client.views import StatusResult
from orca_client.wire import (
    RESULT_TYPES,
    EventRecord,
    EventsPage,
    EventsPushed,
    Hello,
    HelloResult,
    ReadEvents,
    Reply,
    Request,
    Status,
    Subscribe,
    Subscribed,
    SubscriptionOverflowed,
    Unsubscribe,
    WireError,
    check_request_size,
    decode_daemon_message,
    decode_result,
    encode_request,
)

DEFAULT_TIMEOUT = 10.0
START_HINT = "start it with `orca daemon start`"
CONNECT_TIMEOUT = 2.0
"""How long to wait for the socket to accept a connection before saying orcad is not running."""
READ_LIMIT = 5000
"""Events asked for per page by `read_pages` (orcad also bounds a page by bytes)."""
LIVENESS_TIMEOUT = 2.0
"""How long a following client waits for a liveness reply before it reconnects."""


class OrcaClientError(Exception):
    """Base of every error the client raises; the message is meant for the user."""


class DaemonUnavailable(OrcaClientError):
    """orcad is not running, or not answering on its socket."""


class RequestFailed(OrcaClientError):
    """orcad refused the request; `code` is the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def socket_present(paths: OrcaPaths) -> bool:
    """Whether orcad's socket file is there (it may still be one a killed orcad left)."""
    try:
        return paths.socket_file.exists()
    except OSError as exc:  # e.g. a runtime directory it may not enter
        raise OrcaClientError(
            f"cannot look for orcad's socket {paths.socket_file}: {exc.strerror}"
        ) from None


def daemon_key(paths: OrcaPaths) -> bytes:
    """The token requests are signed with; DaemonUnavailable when orcad has never run here."""
    try:
        return read_token(paths.token_file)
    except FileNotFoundError:
        raise DaemonUnavailable(
            f"no token at {paths.token_file}: orcad has never run here; {START_HINT}"
        ) from None
    except PermissionError:
        raise OrcaClientError(
            f"cannot read the token {paths.token_file}: permission denied"
        ) from None


def not_running_hint(paths: OrcaPaths) -> str:
    held = held_sessions(paths)
    kept = (
        f"; {held} session{' keeps' if held == 1 else 's keep'} running in a holder, and orcad "
        "re-attaches to them when it starts"
        if held
        else ""
    )
    return f"orcad is not running (no socket at {paths.socket_file}); {START_HINT}{kept}"


def held_sessions(paths: OrcaPaths) -> int:
    """How many session holders listen while orcad is away (their agents run on)."""
    try:
        names = os.listdir(paths.holders_dir)
    except OSError:
        return 0
    return sum(_listening(paths.holders_dir / name) for name in names)


def _listening(directory: Path) -> bool:
    """True when something accepts connections on `directory`/sock (reached through the
    directory's descriptor: a socket's path may not exceed 108 bytes)."""
    try:
        descriptor = os.open(directory, os.O_PATH | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            probe.connect(f"/proc/self/fd/{descriptor}/sock")
            return True
    except OSError:
        return False
    finally:
        os.close(descriptor)


class Client:
    """One DEALER connection to orcad. Not thread-safe; one per thread."""

    def __init__(self, paths: OrcaPaths | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.paths = paths or resolve_paths()
        self.timeout = timeout
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._socket: zmq.Socket[bytes] | None = None
        self._key = b""
        self._pushes: deque[EventsPushed | SubscriptionOverflowed] = deque()
        self._awaited: set[str] = set()
        """Requests sent whose replies were not taken yet (`read_pages` keeps one ahead)."""
        self._early: dict[str, Reply] = {}
        """Replies to awaited requests that came while another reply was waited for."""

    # ------------------------------------------------------------------ connection

    def _connect(self) -> zmq.Socket[bytes]:
        if self._socket is not None:
            return self._socket
        if not socket_present(self.paths):
            raise DaemonUnavailable(not_running_hint(self.paths))
        self._key = daemon_key(self.paths)
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.connect(self.paths.socket_endpoint)
        self._socket = sock
        return sock

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        self._pushes.clear()
        self._awaited.clear()
        self._early.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ requests

    def request(self, request: Request, timeout: float | None = None) -> Any:
        """Send `request` and return its typed result; raises RequestFailed or DaemonUnavailable.

        A request that crossed a daemon restart (signed before that daemon started, so refused
        unexecuted as `stale`) is signed again and sent once more.
        """
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        try:
            return self._request_once(request, deadline, timeout)
        except RequestFailed as failed:
            if failed.code != "stale":
                raise
        return self._request_once(request, deadline, timeout)

    def _request_once(self, request: Request, deadline: float, timeout: float) -> Any:
        request_id = self._send(request, deadline)
        return self._reply_to(request, request_id, deadline, timeout)

    def _send(self, request: Request, deadline: float) -> str:
        """Sign and send `request`; its id, to wait for its reply with `_reply_to`."""
        sock = self._connect()
        request_id, frames = encode_request(self._key, request)
        try:
            check_request_size(frames)
        except WireError as exc:
            raise RequestFailed(exc.code, exc.message) from None
        if not sock.poll(_millis(deadline), zmq.POLLOUT):
            self.close()
            raise DaemonUnavailable(
                f"orcad is not accepting connections on {self.paths.socket_file} "
                f"(a socket left by a stopped daemon?); {START_HINT}"
            )
        sock.send_multipart(frames)
        self._awaited.add(request_id)
        return request_id

    def _reply_to(self, request: Request, request_id: str, deadline: float, timeout: float) -> Any:
        """The typed result of the request sent as `request_id`. Pushes that come first are kept
        for `follow`, and replies to other requests still awaited (a page `read_pages` asked
        for ahead) for their own `_reply_to`."""
        message = self._early.pop(request_id, None)
        while message is None:
            received = self._receive(deadline)
            if received is None:
                self.close()
                raise DaemonUnavailable(f"orcad did not answer within {timeout:.0f}s")
            if not isinstance(received, Reply):
                self._pushes.append(received)
            elif received.id == request_id:
                message = received
            elif received.id in self._awaited:  # another request's, still to be taken
                self._early[received.id] = received
        self._awaited.discard(request_id)
        if not message.ok:
            error = message.error
            raise RequestFailed(error.code if error else "internal", error.message if error else "")
        return decode_result(message, RESULT_TYPES[type(request)])

    def read_pages(
        self, after: int = 0, run_id: str | None = None, limit: int = READ_LIMIT
    ) -> Iterator[list[EventRecord]]:
        """Every committed event after position `after` (of one run, with `run_id`), a page at
        a time, until the head. The request for the next page goes out before a page is
        yielded: orcad reads it while the caller shows this one."""
        request = ReadEvents(after=after, limit=limit, run_id=run_id)
        request_id = self._send(request, time.monotonic() + self.timeout)
        try:
            while True:
                deadline = time.monotonic() + self.timeout
                try:
                    page: EventsPage = self._reply_to(request, request_id, deadline, self.timeout)
                except RequestFailed as failed:
                    if failed.code != "stale":
                        raise
                    page = self.request(request)
                if not page.events:
                    return
                request = ReadEvents(after=page.events[-1].position, limit=limit, run_id=run_id)
                request_id = self._send(request, time.monotonic() + self.timeout)
                yield page.events
        finally:  # a caller that stops early leaves a page on its way: its reply is not kept
            self._awaited.discard(request_id)
            self._early.pop(request_id, None)

    def hello(self, timeout: float | None = None) -> HelloResult:
        result: HelloResult = self.request(Hello(), timeout)
        return result

    def _receive(self, deadline: float) -> Reply | EventsPushed | SubscriptionOverflowed | None:
        sock = self._connect()
        while True:
            if not sock.poll(_millis(deadline), zmq.POLLIN):
                return None
            frames = sock.recv_multipart()
            try:
                return decode_daemon_message(self._key, frames)
            except WireError as exc:
                if exc.code == "unauthenticated":
                    raise OrcaClientError(
                        f"orcad's replies do not match the token in {self.paths.token_file}: "
                        "restart orcad or check ORCA_HOME"
                    ) from None
                raise OrcaClientError(str(exc)) from None

    # ------------------------------------------------------------------ subscriptions

    def follow(
        self,
        after: int = 0,
        run_id: str | None = None,
        idle_check: float = 2.0,
        on_reconnect: Callable[[str], None] | None = None,
        reconnect_for: float = float("inf"),
        until: float | None = None,
    ) -> Iterator[EventRecord]:
        """Yield every event after `after` in order, forever; survives overflow and restarts.

        `on_reconnect` is told (with a reason) whenever the daemon went away and the
        subscription is being restored; after `reconnect_for` seconds without a daemon,
        DaemonUnavailable is raised. With `until` (a `time.monotonic()` deadline) it ends once
        that has passed and no event is waiting, or raises DaemonUnavailable if orcad is still
        away then.
        """
        position = after
        instance: str | None = None
        while not _passed(until):
            try:
                hello = self.hello(timeout=LIVENESS_TIMEOUT)
                if instance is not None and hello.instance != instance and on_reconnect:
                    on_reconnect(f"orcad restarted; resuming after position {position}")
                instance = hello.instance
                subscription: Subscribed = self.request(Subscribe(after=position, run_id=run_id))
                for record in self._pump(subscription.subscription, instance, idle_check, until):
                    if record.position > position:
                        position = record.position
                        yield record
                if _passed(until):
                    self._unsubscribe(subscription.subscription)
            except DaemonUnavailable as exc:
                self.close()
                if on_reconnect is not None:
                    on_reconnect(f"{exc}; waiting for it to come back")
                left = reconnect_for if until is None else until - time.monotonic()
                self._wait_for_daemon(min(reconnect_for, left))

    def _pump(
        self, subscription: str, instance: str, idle_check: float, until: float | None = None
    ) -> Iterator[EventRecord]:
        try:
            while True:
                wake = time.monotonic() + idle_check
                message = (
                    self._pushes.popleft()
                    if self._pushes
                    else self._receive(wake if until is None else min(wake, until))
                )
                if message is None:
                    if _passed(until):
                        return
                    alive: HelloResult = self.request(
                        Hello(subscription=subscription), LIVENESS_TIMEOUT
                    )
                    if alive.instance != instance or alive.subscription_open is False:
                        return  # a restart, or an end we missed: resubscribe from our position
                    continue
                if isinstance(message, EventsPushed) and message.subscription == subscription:
                    yield from message.events
                elif (
                    isinstance(message, SubscriptionOverflowed)
                    and message.subscription == subscription
                ):
                    return
        except GeneratorExit:
            self._unsubscribe(subscription)
            raise

    def _unsubscribe(self, subscription: str) -> None:
        with contextlib.suppress(OrcaClientError):
            self.request(Unsubscribe(subscription), timeout=1.0)

    def _wait_for_daemon(self, limit: float) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                self.hello(timeout=2.0)
                return
            except DaemonUnavailable:
                self.close()
        raise DaemonUnavailable(not_running_hint(self.paths))


def _passed(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _millis(deadline: float) -> int:
    return max(0, int((deadline - time.monotonic()) * 1000))


MAX_STATUS_PAGES = 100_000


def fetch_status(connection: Client, request: Status) -> StatusResult:
    """A whole status, page after page (see `StatusPages`). The garbage collector waits
    meanwhile: every view is kept, and collecting the pile again and again as it grows cost
    more than the fetch itself (100k runs: 6.1 s with it, 3.8 s without)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        pages = StatusPages(connection.request(request))
        while pages.next_cursor is not None:
            cursor = pages.next_cursor
            pages.add(connection.request(msgspec.structs.replace(request, cursor=cursor)))
        return pages.whole()
    finally:
        if collecting:
            gc.enable()


class StatusPages:
    """A whole status put together from its pages: a run that spans pages is put back together
    (its tasks and session ids appended in order; the rest as the last page saw it)."""

    def __init__(self, first: StatusResult) -> None:
        self._first = first
        self._runs = {run.run_id: run for run in first.runs}
        self._sessions = list(first.sessions)
        self._pages = 1
        self.next_cursor = first.next_cursor
        """Where the next page starts; None once every page is in."""

    def add(self, page: StatusResult) -> None:
        """The page that `next_cursor` asked for."""
        self._pages += 1
        if self._pages > MAX_STATUS_PAGES:
            raise OrcaClientError(f"orcad's status did not end after {MAX_STATUS_PAGES} pages")
        for run in page.runs:
            before = self._runs.get(run.run_id)
            if before is not None:
                run = msgspec.structs.replace(
                    run,
                    tasks=[*before.tasks, *run.tasks],
                    session_ids=[*before.session_ids, *run.session_ids],
                )
            self._runs[run.run_id] = run
        self._sessions += page.sessions
        self.next_cursor = page.next_cursor

    def whole(self) -> StatusResult:
        return msgspec.structs.replace(
            self._first,
            runs=list(self._runs.values()),
            sessions=self._sessions,
            next_cursor=None,
        )
