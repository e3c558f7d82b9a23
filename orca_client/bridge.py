"""`orca bridge --stdio`: orcad for editors, as JSON-RPC 2.0 on stdin and stdout, one JSON object a
line (the contract: docs/protocol.md, "The stdio bridge").

One asyncio loop serves the editor's requests concurrently over one connection to orcad (at most
MAX_IN_FLIGHT at once), pushes the events of its subscriptions while requests are in flight, and
keeps those subscriptions going by itself: it keeps their leases alive, and after an overflow, a
lease that ended or a restart of orcad it subscribes again from the last position it delivered.
What it writes waits in a bounded outbox: when the editor stops reading, the bridge stops
reading from orcad, and resumes later without a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections.abc import Callable, Mapping

import msgspec

from orca_client import answering
from orca_client.bridge_link import DaemonLink, Push, Refused, Unreachable, say
from orca_client.bridge_rpc import (
    DAEMON_UNAVAILABLE,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    MAX_LINE_BYTES,
    ORCA_ERROR,
    Call,
    RpcError,
    available_line,
    error_line,
    event_line,
    parse_line,
    request_of,
    result_line,
    unavailable_line,
)
from orca_client.bridge_stdio import ClientGone, LineReader, Marker, Outbox, StdoutWriter
from orca_client.bridge_subscriptions import BridgeSubscription, SubscriptionTable
from orca_client.client import LIVENESS_TIMEOUT, StatusPages
from orca_client.paths import OrcaPaths
from orca_client.views import StatusResult
from orca_client.wire import (
    CheckAgents,
    EventsPushed,
    Hello,
    HelloResult,
    Request,
    Shutdown,
    Status,
    Subscribe,
    Subscribed,
    SubscriptionOverflowed,
    Unsubscribe,
)

MAX_IN_FLIGHT = 16
"""Requests of the editor's being answered at once; more get `busy`. (orcad takes 32 at once
from one connection: the rest is for the bridge's own keep-alives and resubscriptions.)"""
REQUEST_TIMEOUT = 60.0
"""How long orcad may take to answer a request (while the bridge reads from it)."""
CHECK_AGENTS_EXTRA = 20.0
"""`check_agents` may take its own `timeout` (default 10 s) and this much more."""
KEEPALIVE_SECONDS = 2.0
"""How often the bridge says hello while orcad answers (keeping the leases alive)."""
AWAY_RETRY_SECONDS = 0.5
"""How often it looks for orcad while orcad is away."""
RESUBSCRIBE_TIMEOUT = 10.0
UNSUBSCRIBE_TIMEOUT = 1.0
EXIT_FLUSH_SECONDS = 5.0
"""How long the bridge, once stdin closed, tries to write what it still has for the editor."""

Answered = tuple[bytes, Callable[[], None] | None]
"""A request's result (JSON), and what to do once it is written (or None)."""


class Bridge:
    """One editor on stdin and stdout, one connection to orcad."""

    def __init__(
        self,
        paths: OrcaPaths,
        start_failure: str | None = None,
        lookup: Mapping[str, str | None] | None = None,
        stdin: int = 0,
        stdout: int = 1,
    ) -> None:
        self._outbox = Outbox()
        self._link = DaemonLink(paths, self._outbox)
        self._stdin = LineReader(stdin)
        self._stdout = StdoutWriter(stdout)
        self._subs = SubscriptionTable()
        self._author = answering.who("orca-bridge")
        self._lookup = dict(lookup or {})
        """Where agent binaries are found, for requests that leave it out (the CLI's lookup)."""
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._gone = asyncio.Event()
        self._available: bool | None = None
        """Whether orcad answered the last hello (None: not asked yet)."""
        self._instance: str | None = None
        self._start_failure = start_failure
        """Why `--start` could not start orcad: told the editor as the first `unavailable`."""
        self._unannounced: dict[str, asyncio.Event] = {}
        """Subscriptions whose `subscribe` reply is not written yet: their events wait for it."""
        self._leaving: set[str] = set()
        """orcad's subscriptions being unsubscribed."""
        self._chores: asyncio.TaskGroup | None = None
        self._abandoned = False
        """The editor stopped reading after closing stdin: nothing more is written to it."""

    # ------------------------------------------------------------------ the whole life

    async def serve(self) -> int:
        """Serve until stdin closes (or stdout does); then unsubscribe, write what is left and
        return the exit status (0)."""
        self._stdin.start()
        self._stdout.start()
        try:
            async with asyncio.TaskGroup() as background:
                self._chores = background
                link = background.create_task(self._link.run(self._on_push, self._on_connection))
                writer = background.create_task(self._write())
                keeper = background.create_task(self._keep())
                async with asyncio.TaskGroup() as requests:
                    await self._take_lines(requests)
                    keeper.cancel()
                    stuck = background.create_task(self._give_up_on_a_stuck_editor())
                    await self._unsubscribe_all()
                stuck.cancel()
                self._outbox.close()
                if not self._abandoned:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(writer), EXIT_FLUSH_SECONDS)
                writer.cancel()
                link.cancel()
        finally:
            self._link.close()
        return 0

    async def _write(self) -> None:
        try:
            await self._stdout.run(self._outbox)
        except ClientGone as exc:
            say(f"{exc}: the editor is gone")
        finally:
            self._gone.set()
            self._outbox.close()

    async def _take_lines(self, requests: asyncio.TaskGroup) -> None:
        """Take the editor's lines, starting each request in `requests`, until stdin closes (or
        stdout did)."""
        gone = asyncio.ensure_future(self._gone.wait())
        try:
            while True:
                line = asyncio.ensure_future(self._stdin.next())
                await asyncio.wait({line, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not line.done():
                    line.cancel()
                    return
                item = line.result()
                if item is Marker.END:
                    return
                await self._take(item, requests)
        finally:
            gone.cancel()

    async def _give_up_on_a_stuck_editor(self) -> None:
        """Once stdin has closed: if the editor reads nothing for EXIT_FLUSH_SECONDS while the
        bridge has lines for it, write it nothing more (so the bridge can end)."""
        loop = asyncio.get_running_loop()
        stuck_since: float | None = None
        while True:
            await asyncio.sleep(0.25)
            if not self._outbox.held:
                stuck_since = None
                continue
            stuck_since = stuck_since or loop.time()
            if loop.time() - stuck_since >= EXIT_FLUSH_SECONDS:
                say("stdin closed and the editor reads nothing from stdout: ending without it")
                self._abandoned = True
                self._outbox.close()
                return

    async def _take(self, item: bytes | Marker, requests: asyncio.TaskGroup) -> None:
        if item is Marker.TOO_LONG:
            await self._send(
                error_line(
                    RpcError(
                        INVALID_REQUEST,
                        f"a line longer than {MAX_LINE_BYTES} bytes (1 MiB) was dropped",
                    )
                )
            )
            return
        assert isinstance(item, bytes)
        if not item.strip():
            return
        try:
            call = parse_line(item)
        except RpcError as exc:
            await self._send(error_line(exc))
            return
        if self._in_flight >= MAX_IN_FLIGHT:
            if call.answered:
                busy = (
                    f"the bridge is answering {MAX_IN_FLIGHT} requests, the most it takes at "
                    "once; send this one again once one is answered"
                )
                await self._send(error_line(RpcError(ORCA_ERROR, busy, "busy", call.call_id)))
            return
        self._in_flight += 1
        requests.create_task(self._answer(call))

    # ------------------------------------------------------------------ requests

    async def _answer(self, call: Call) -> None:
        then: Callable[[], None] | None = None
        try:
            try:
                result, then = await self._carry_out(call)
                line = result_line(call.call_id, result)
            except RpcError as exc:
                exc.call_id = call.call_id
                line = error_line(exc)
            except Unreachable as exc:
                line = error_line(
                    RpcError(DAEMON_UNAVAILABLE, exc.message, "daemon_unavailable", call.call_id)
                )
                self._wake.set()  # the keeper finds out, and tells the editor, at once
            except Refused as exc:
                line = error_line(RpcError(ORCA_ERROR, exc.message, exc.code, call.call_id))
            except Exception as exc:  # a bug: say where (never the params), answer, go on
                where = "".join(traceback.format_tb(exc.__traceback__))
                say(f"internal error answering {call.method}: {type(exc).__name__}\n{where}")
                failed = f"the bridge failed: {type(exc).__name__} (see its stderr)"
                line = error_line(RpcError(INTERNAL_ERROR, failed, "internal", call.call_id))
            if call.answered:
                await self._send(line)
        finally:
            self._in_flight -= 1
            if then is not None:
                then()

    async def _carry_out(self, call: Call) -> Answered:
        request = request_of(call, self._author, self._lookup)
        if isinstance(request, Subscribe):
            return await self._subscribe(request)
        if isinstance(request, Unsubscribe):
            return await self._unsubscribe(request), None
        if isinstance(request, Status):
            return await self._status(request), None
        if isinstance(request, Hello) and request.subscription is not None:
            return await self._hello_about(request.subscription), None
        try:
            return bytes(await self._link.request(request, _timeout_for(request))), None
        except Unreachable as exc:
            if isinstance(request, Shutdown) and exc.sent:
                return b"{}", None  # orcad stopped before its reply went out
            raise

    async def _status(self, request: Status) -> bytes:
        """The whole status: every page, put together (a client never pages)."""
        first = await self._link.request(request, REQUEST_TIMEOUT)
        page = msgspec.json.decode(first, type=StatusResult)
        if page.next_cursor is None:
            return bytes(first)
        pages = StatusPages(page)
        while pages.next_cursor is not None:
            more = msgspec.structs.replace(request, cursor=pages.next_cursor)
            raw = await self._link.request(more, REQUEST_TIMEOUT)
            pages.add(msgspec.json.decode(raw, type=StatusResult))
        return msgspec.json.encode(pages.whole())

    async def _hello_about(self, subscription: str) -> bytes:
        """hello; about one of the bridge's subscriptions, it is open until unsubscribed (the
        bridge resumes it by itself). Another id is orcad's to answer."""
        if self._subs.get(subscription) is None:
            return bytes(await self._link.request(Hello(subscription), LIVENESS_TIMEOUT))
        raw = await self._link.request(Hello(), LIVENESS_TIMEOUT)
        hello = msgspec.json.decode(raw, type=HelloResult)
        return msgspec.json.encode(msgspec.structs.replace(hello, subscription_open=True))

    async def _subscribe(self, request: Subscribe) -> Answered:
        run_id = None if request.run_id is None else await self._full_run_id(request.run_id)
        sub = SubscriptionTable.new(request.after, run_id)
        announced = asyncio.Event()

        def opened(raw: msgspec.Raw) -> None:
            self._unannounced[sub.id] = announced
            self._subs.open(sub, msgspec.json.decode(raw, type=Subscribed).subscription)

        def announce() -> None:
            announced.set()
            self._unannounced.pop(sub.id, None)

        try:
            await self._link.request(
                Subscribe(after=request.after, run_id=run_id), REQUEST_TIMEOUT, on_reply=opened
            )
        except BaseException:
            announce()  # never leave its events waiting for a reply that will not be written
            raise
        return msgspec.json.encode(Subscribed(sub.id)), announce

    async def _full_run_id(self, run_id: str) -> str:
        """The run's whole id (a prefix given could later match another run too)."""
        one = Status(run_id=run_id, page_bytes=1)
        page = msgspec.json.decode(
            await self._link.request(one, REQUEST_TIMEOUT), type=StatusResult
        )
        return page.runs[0].run_id

    async def _unsubscribe(self, request: Unsubscribe) -> bytes:
        sub = self._subs.get(request.subscription)
        if sub is None:
            raise Refused("not_found", f"no subscription {request.subscription!r} on this bridge")
        daemon_id = sub.daemon_id
        self._subs.close(sub.id)
        if daemon_id is not None:
            await self._leave(daemon_id)
        return b"{}"

    async def _leave(self, daemon_id: str) -> None:
        """Unsubscribe from one of orcad's subscriptions (one it no longer has is fine)."""
        self._leaving.add(daemon_id)
        try:
            await self._link.request(Unsubscribe(daemon_id), UNSUBSCRIBE_TIMEOUT)
        except (Unreachable, Refused):
            pass
        finally:
            self._leaving.discard(daemon_id)

    async def _unsubscribe_all(self) -> None:
        leaving = []
        for sub in self._subs:
            if sub.daemon_id is not None:
                leaving.append(sub.daemon_id)
            self._subs.close(sub.id)
        await asyncio.gather(*(self._leave(daemon_id) for daemon_id in leaving))

    async def _send(self, line: bytes) -> None:
        await self._outbox.put(line)

    # ------------------------------------------------------------------ from orcad

    async def _on_push(self, push: Push) -> None:
        try:
            if isinstance(push, SubscriptionOverflowed):
                self._overflowed(push)
            else:
                await self._deliver(push)
        except Exception as exc:  # a bug: say where, and keep reading
            where = "".join(traceback.format_tb(exc.__traceback__))
            say(f"internal error delivering events: {type(exc).__name__}\n{where}")

    def _overflowed(self, notice: SubscriptionOverflowed) -> None:
        sub = self._subs.fed_by(notice.subscription)
        if sub is None:
            return
        self._subs.detach(sub)
        say(f"subscription {sub.id}: orcad ended its feed (it fell behind); resuming it")
        self._wake.set()

    async def _deliver(self, push: EventsPushed) -> None:
        """Each event the bridge subscription fed by this push has not had, in order; none once
        that subscription is fed by another (or closed)."""
        daemon_id = push.subscription
        sub = self._subs.fed_by(daemon_id)
        if sub is None:
            self._drop(daemon_id)
            return
        announced = self._unannounced.get(sub.id)
        if announced is not None:
            await announced.wait()
        for record in push.events:
            if not sub.wants(daemon_id, record.position):
                if sub.closed or sub.daemon_id != daemon_id:
                    return
                continue
            line = event_line(sub.id, record)
            position = record.position
            if await self._outbox.put(line, lambda: sub.wants(daemon_id, position)):  # noqa: B023 - called before the loop goes on
                sub.position = position

    def _drop(self, daemon_id: str) -> None:
        """Events of an orcad subscription no bridge subscription wants: unsubscribe it."""
        if daemon_id not in self._leaving and self._chores is not None:
            self._leaving.add(daemon_id)
            self._chores.create_task(self._leave(daemon_id))

    def _on_connection(self, connected: bool) -> None:
        if not connected:  # orcad's subscriptions of this connection ended with it
            self._subs.detach_all()
        self._wake.set()

    # ------------------------------------------------------------------ keeping going

    async def _keep(self) -> None:
        """Say hello every few seconds (more often while orcad is away): tell the editor when
        orcad goes away and comes back, and keep every subscription fed."""
        while True:
            try:
                await self._check()
            except Exception as exc:  # a bug: say where, and keep going
                where = "".join(traceback.format_tb(exc.__traceback__))
                say(f"internal error keeping subscriptions: {type(exc).__name__}\n{where}")
            interval = KEEPALIVE_SECONDS if self._available else AWAY_RETRY_SECONDS
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a cancel that
            # comes as `_wake` is set, and the bridge then never ends once stdin closes
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()

    async def _check(self) -> None:
        if self._outbox.held:
            return  # the bridge reads nothing from orcad now: a hello would go unanswered
        try:
            raw = await self._link.request(Hello(), LIVENESS_TIMEOUT)
        except Unreachable as exc:
            await self._daemon_away(exc.message)
            return
        except Refused as exc:
            say(f"orcad refused a hello: {exc.code}: {exc.message}")
            return
        hello = msgspec.json.decode(raw, type=HelloResult)
        await self._daemon_here(hello)
        await self._keep_fed(hello.instance)

    async def _daemon_away(self, message: str) -> None:
        if self._available is False:
            return
        self._available = False
        if self._start_failure is not None:
            message, self._start_failure = self._start_failure, None
        say(f"orcad is unavailable: {message}")
        await self._send(unavailable_line(message))

    async def _daemon_here(self, hello: HelloResult) -> None:
        restarted = self._instance is not None and hello.instance != self._instance
        if restarted:  # the orcad before had every subscription of ours
            self._subs.detach_all()
        if self._available is False or restarted:
            say(f"orcad is available (pid {hello.pid}{', restarted' if restarted else ''})")
            await self._send(available_line(hello.instance, restarted))
        self._available = True
        self._instance = hello.instance

    async def _keep_fed(self, instance: str) -> None:
        """Each subscription whose feed ended (by an overflow, its lease, or orcad's restart)
        subscribes again from the last position it delivered."""
        try:
            for sub in self._subs:
                daemon_id = sub.daemon_id
                if daemon_id is not None:
                    raw = await self._link.request(Hello(daemon_id), LIVENESS_TIMEOUT)
                    hello = msgspec.json.decode(raw, type=HelloResult)
                    if hello.instance != instance:
                        self._wake.set()  # restarted meanwhile: the next round sees to it
                        return
                    if hello.subscription_open:
                        continue
                    if sub.daemon_id == daemon_id:
                        self._subs.detach(sub)
                if sub.daemon_id is None and not sub.closed:
                    await self._resubscribe(sub)
        except (Unreachable, Refused):
            self._wake.set()

    async def _resubscribe(self, sub: BridgeSubscription) -> None:
        """Subscribe again after the last position `sub` delivered (Unreachable: not now)."""

        def attached(raw: msgspec.Raw) -> None:
            daemon_id = msgspec.json.decode(raw, type=Subscribed).subscription
            if not self._subs.attach(sub, daemon_id):
                self._drop(daemon_id)

        after = sub.position
        try:
            await self._link.request(
                Subscribe(after=after, run_id=sub.run_id), RESUBSCRIBE_TIMEOUT, on_reply=attached
            )
        except Refused as exc:  # tried again at the next round
            say(f"subscription {sub.id}: orcad refused to resume it: {exc.code}: {exc.message}")
            return
        say(f"subscription {sub.id}: resumed after position {after}")


def _timeout_for(request: Request) -> float:
    if isinstance(request, CheckAgents):
        return (request.timeout or 10.0) + CHECK_AGENTS_EXTRA
    return REQUEST_TIMEOUT


def serve_stdio(
    paths: OrcaPaths,
    start_failure: str | None = None,
    lookup: Mapping[str, str | None] | None = None,
) -> int:
    """Run the bridge on this process's stdin and stdout; the exit status."""

    async def serve() -> int:  # the bridge's sockets and events belong to this loop
        return await Bridge(paths, start_failure, lookup).serve()

    return asyncio.run(serve())
