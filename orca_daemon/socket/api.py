"""What each socket request does: reads are answered from the projection and the log; writes go
to runs/ (start, cancel, answer) and orchestration/ (fan-outs, plans). The log's errors become
the client's error codes here. Requests arrive already verified and decoded."""

from __future__ import annotations

import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import msgspec

from orca_client.events import run_stream
from orca_client.views import AgentChecks, StatusResult
from orca_client.wire import (
    PAGE_BYTES,
    PROTOCOL_VERSION,
    REQUEST_NAMES,
    Answer,
    Cancel,
    CheckAgents,
    Clean,
    Doctor,
    Done,
    EventsPage,
    Hello,
    HelloResult,
    Orchestrate,
    ReadEvents,
    Reload,
    ReloadResult,
    Request,
    RetryTask,
    RunStarted,
    Shutdown,
    StartDebug,
    StartPlan,
    StartRun,
    Status,
    Subscribe,
    Subscribed,
    Unsubscribe,
    WireError,
)
from orca_daemon import __version__
from orca_daemon.agents.binaries import VERSION_TIMEOUT_SECONDS
from orca_daemon.agents.registry import check_agents
from orca_daemon.log.records import ConcurrencyError, LogUnavailable, StoreError
from orca_daemon.log.store import EventStore
from orca_daemon.orchestration.fanout import FanOutCoordinator
from orca_daemon.orchestration.parents import ParentCoordinator
from orca_daemon.orchestration.plans import PlanCoordinator
from orca_daemon.runs import answers, maintenance
from orca_daemon.runs.admission import Admission
from orca_daemon.runs.launcher import Launcher, client_context, launch_context
from orca_daemon.runs.lifecycle import Lifecycle
from orca_daemon.runs.relay import Relay
from orca_daemon.runs.run_log import RunLog
from orca_daemon.runs.starts import start_single
from orca_daemon.runs.supervisor import Supervisor
from orca_daemon.socket.request_checks import check_start
from orca_daemon.socket.status_pages import Listing, status_page
from orca_daemon.socket.subscriptions import Subscriptions
from orca_daemon.state.projection import State

MAX_READ_LIMIT = 10_000
MAX_VERSION_TIMEOUT = 30.0
"""The longest a `check_agents` request may let one `--version` take."""
MIN_ID_PREFIX = 4
STATUS_PAGE_BYTES = 4 << 20
"""The most bytes of runs and sessions one status page holds (a client takes up to 16 MiB)."""
RECORDING_REQUESTS = (
    StartRun,
    Answer,
    Cancel,
    StartDebug,
    Orchestrate,
    StartPlan,
    RetryTask,
    Clean,
)
"""Requests that append to the log: refused at once while it cannot be written."""


@dataclass(frozen=True)
class RunServices:
    """What requests about runs are answered with."""

    runs: RunLog
    launcher: Launcher
    admission: Admission
    supervisor: Supervisor
    lifecycle: Lifecycle
    fanout: FanOutCoordinator
    plans: PlanCoordinator
    parents: ParentCoordinator


class Api:
    """Dispatches verified requests to the projection, the log, runs and orchestration."""

    def __init__(
        self,
        *,
        store: EventStore,
        state: State,
        runs: RunServices,
        subscriptions: Subscriptions,
        instance: str,
        started_at: float,
        log_file: str,
        daemon_name: str = "",
        relay: Relay | None = None,
        request_shutdown: Callable[[bool], None],
        reload_config: Callable[[bool], Awaitable[ReloadResult]],
    ) -> None:
        self._store = store
        self._state = state
        self._runs = runs
        self._subscriptions = subscriptions
        self._instance = instance
        self._started_at = started_at
        self._log_file = log_file
        self._daemon_name = daemon_name
        self._relay = relay
        """With a shared log: relays answers and cancels for other daemons' runs to them."""
        self._request_shutdown = request_shutdown
        self._reload_config = reload_config

    def answer_now(self, identity: bytes, request: Request) -> msgspec.Struct | None:
        """Requests answered from memory, without waiting; None for the others."""
        self._subscriptions.heard_from(identity)
        if isinstance(request, Hello):
            return self._hello(identity, request)
        if isinstance(request, Status):
            return self._status(request)
        if isinstance(request, Subscribe):
            return self._subscribe(identity, request)
        if isinstance(request, Unsubscribe):
            self._subscriptions.close(identity, request.subscription)
            return Done()
        if isinstance(request, Shutdown):
            self._request_shutdown(request.cancel_sessions)
            return Done()
        return None

    async def answer(self, identity: bytes, request: Request) -> msgspec.Struct:
        """The requests that wait (for the log or a process); `answer_now` handles the rest.
        The log's errors become the client's: `log_unavailable` says why it cannot be written."""
        try:
            if isinstance(request, RECORDING_REQUESTS):
                refusal = self._store.unwritable()
                if refusal is not None:
                    raise refusal
            return await self._answer(request)
        except LogUnavailable as exc:
            raise WireError("log_unavailable", str(exc)) from None
        except ConcurrencyError as exc:
            raise WireError("conflict", str(exc)) from None
        except StoreError as exc:
            if not self._runs.admission.accepting:
                raise WireError("shutting_down", f"orcad is shutting down: {exc}") from None
            raise WireError("internal", str(exc)) from None

    async def _answer(self, request: Request) -> msgspec.Struct:
        if isinstance(request, StartRun | StartDebug | StartPlan):
            check_start(request)
        if isinstance(request, StartRun):
            if request.follow_up is not None:
                follow_up = self._acted_for(request.follow_up, "continue")
                request = msgspec.structs.replace(request, follow_up=follow_up)
            return await self._start_run(request)
        if isinstance(request, Answer):
            run_id = self.resolve_run_id(request.run_id)
            if self._relay is not None and not self._runs.runs.acts_for(run_id):
                return await self._relay.answer(run_id, request)
            run_id = self._acted_for(run_id, "answer")
            request = msgspec.structs.replace(request, run_id=run_id)
            return await answers.answer(self._runs.runs, self._runs.supervisor, request)
        if isinstance(request, Cancel):
            run_id = self.resolve_run_id(request.run_id)
            if self._relay is not None and not self._runs.runs.acts_for(run_id):
                return await self._relay.cancel(run_id, request)
            return await self._runs.lifecycle.cancel(
                self._acted_for(run_id, "cancel"), request.reason, request.session_id
            )
        if isinstance(request, StartDebug):
            return await self._runs.fanout.start(request)
        if isinstance(request, Orchestrate):
            run_id = self._acted_for(request.run_id, "orchestrate")
            return await self._runs.fanout.orchestrate(run_id, request.requested_by)
        if isinstance(request, StartPlan):
            return await self._runs.plans.start(request)
        if isinstance(request, RetryTask):
            return await self._runs.plans.retry(
                self._acted_for(request.run_id, "retry a task of"), request.task_id
            )
        if isinstance(request, Doctor):
            run_id = self._acted_for(request.run_id, "examine the processes of")
            default = self._runs.launcher.config.orchestration.stuck_after_seconds
            return await maintenance.doctor(
                self._runs.runs, self._runs.supervisor, run_id, request.stuck_after, default
            )
        if isinstance(request, CheckAgents):
            return await self._check_agents(request)
        if isinstance(request, Clean):
            run_id = self._acted_for(request.run_id, "clean")
            return await maintenance.clean(self._runs.runs, self._runs.supervisor, run_id)
        if isinstance(request, ReadEvents):
            return await self._read(request)
        if isinstance(request, Reload):
            return await self._reload_config(request.dry_run)
        raise WireError("bad_request", f"unknown request {type(request).__name__}")

    async def _start_run(self, request: StartRun) -> RunStarted:
        """One run in the client's cwd or one repository; a parent run for several."""
        runs = self._runs
        async with runs.admission.starting():
            targets = runs.parents.resolve_targets(request)
            if targets is not None and len(targets) > 1:
                return await runs.parents.start(request, targets)
            target = targets[0] if targets else None
            return await start_single(runs.runs, runs.launcher, runs.supervisor, request, target)

    def after_reply(self, result: msgspec.Struct, delivered: bool) -> None:
        """Start a subscription's delivery once its reply is on the wire."""
        if isinstance(result, Subscribed):
            if delivered:
                self._subscriptions.start(result.subscription)
            else:
                self._subscriptions.discard(result.subscription)

    def _acted_for(self, run_id: str, what: str) -> str:
        """`resolve_run_id`, for a request this daemon can carry out only for a run it acts
        for: with a log several daemons share, another daemon's run is refused, naming it."""
        run_id = self.resolve_run_id(run_id)
        runs = self._runs.runs
        if not runs.acts_for(run_id):
            raise WireError(
                "invalid_state",
                f"run {run_id} is owned by orcad {runs.owner_of(run_id)}, where its sessions "
                f"run: {what} it through that daemon (orca daemon status there names it)",
            )
        return run_id

    def resolve_run_id(self, run_id: str) -> str:
        """A full run id from an id or a unique prefix of at least four characters."""
        if run_id in self._state.runs:
            return run_id
        if len(run_id) >= MIN_ID_PREFIX:
            matches = [r for r in self._state.runs if r.startswith(run_id)]
            if len(matches) > 1:  # a parent's prefix also matches its children: the parent
                matches = [m for m in matches if self._state.runs[m].parent_run_id not in matches]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise WireError(
                    "bad_request",
                    f"run id prefix {run_id!r} matches {len(matches)} runs; give more of it",
                )
        if len(run_id) < MIN_ID_PREFIX:
            raise WireError(
                "not_found",
                f"no run with id {run_id!r}; a run id prefix needs at least {MIN_ID_PREFIX} "
                "characters (orca status lists the runs)",
            )
        raise WireError("not_found", f"no run with id {run_id!r} (orca status lists the runs)")

    def _hello(self, identity: bytes, request: Hello) -> HelloResult:
        asked = request.subscription
        return HelloResult(
            protocol=PROTOCOL_VERSION,
            daemon_version=__version__,
            instance=self._instance,
            pid=os.getpid(),
            started_at=self._started_at,
            head_position=self._store.head_position,
            log_file=self._log_file,
            daemon_name=self._daemon_name,
            subscriptions=len(self._subscriptions),
            subscription_open=(
                None if asked is None else self._subscriptions.is_open(identity, asked)
            ),
            requests=list(REQUEST_NAMES),
        )

    def _status(self, request: Status) -> StatusResult:
        if request.page_bytes is not None and request.page_bytes < 1:
            raise WireError("bad_request", "page_bytes must be at least 1 (or null)")
        if request.ended is not None and request.ended < 0:
            raise WireError("bad_request", "ended must be 0 or more (or null for all)")
        runs = self._state.runs
        if request.run_id is not None:
            run_ids = [self.resolve_run_id(request.run_id)]
            if request.tree:
                run_ids = self._with_descendants(run_ids)
            listing = Listing.of_ids(runs, run_ids)
            hidden = 0
        else:
            places, hidden = runs.recent(request.ended)
            listing = Listing.of_places(runs, places)
        budget = min(request.page_bytes or STATUS_PAGE_BYTES, STATUS_PAGE_BYTES)
        page = status_page(listing, request.cursor, budget)
        detached = self._runs.supervisor.detached
        sessions = [
            msgspec.structs.replace(s, detached=detached[s.session_id])
            if s.session_id in detached
            else s
            for s in page.sessions
        ]
        return StatusResult(
            runs=page.runs,
            sessions=sessions,
            head_position=self._state.position,
            ended_not_shown=hidden,
            next_cursor=page.next_cursor,
        )

    def _with_descendants(self, run_ids: list[str]) -> list[str]:
        """Each run followed by its children, depth first."""
        found: list[str] = []
        stack = list(reversed(run_ids))
        while stack:
            run_id = stack.pop()
            found.append(run_id)
            stack.extend(reversed(self._state.runs[run_id].child_run_ids))
        return found

    async def _read(self, request: ReadEvents) -> EventsPage:
        if request.after < 0:
            raise WireError("bad_request", "after must be 0 or greater")
        if not 1 <= request.limit <= MAX_READ_LIMIT:
            raise WireError("bad_request", f"limit must be between 1 and {MAX_READ_LIMIT}")
        stream = None if request.run_id is None else run_stream(self.resolve_run_id(request.run_id))
        events = await self._store.read_all(request.after, request.limit, stream, PAGE_BYTES)
        return EventsPage(
            events=[e.to_record() for e in events], head_position=self._store.head_position
        )

    async def _check_agents(self, request: CheckAgents) -> AgentChecks:
        """Each agent's binary, resolved as for a run this client starts (its lookup, else
        orcad's environment), its version and whether Orca supports it."""
        timeout = VERSION_TIMEOUT_SECONDS if request.timeout is None else request.timeout
        if not (math.isfinite(timeout) and 0 < timeout <= MAX_VERSION_TIMEOUT):
            raise WireError(
                "bad_request",
                f"timeout must be more than 0 and at most {MAX_VERSION_TIMEOUT:g} seconds, "
                f"got {timeout}",
            )
        context = launch_context(client_context(request), cwd="")
        checks = await anyio.to_thread.run_sync(
            check_agents, self._runs.launcher.config, context, timeout
        )
        return AgentChecks(agents=checks)

    def _subscribe(self, identity: bytes, request: Subscribe) -> Subscribed:
        if request.after < 0:
            raise WireError("bad_request", "after must be 0 or greater")
        stream = None if request.run_id is None else run_stream(self.resolve_run_id(request.run_id))
        sub = self._subscriptions.open(identity, request.after, stream)
        return Subscribed(subscription=sub.id)
