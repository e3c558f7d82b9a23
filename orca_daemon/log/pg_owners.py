"""Who acts for each run, when several daemons share the PostgreSQL log.

Each daemon has a row in `daemons` (its name, host, pid and state directory) whose lease,
`expires_at`, it renews from its heartbeat: the database's clock decides when it has run out,
never a daemon's own. Each run has a row in `run_owners`: the daemon that created it (or adopted
it since) and a generation, the fencing token. Every append to a run's stream is checked, in its
transaction and under the events table's lock, against that row: a daemon appends only for the
runs it owns at the generation it holds, so one that lost a run (adopted by another) can no
longer write for it. An append to a run that has no row yet (its creation) claims it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import anyio
import psycopg
from psycopg_pool import AsyncConnectionPool

from orca_client.events import AnswerRequested, CancelRequested, Event, RunStatusChanged
from orca_client.views import TERMINAL_STATUSES
from orca_daemon.log.pending import PendingAppend, joined_groups
from orca_daemon.log.records import ConcurrencyError, FencedAppend, LogUnavailable, StoreError

log = logging.getLogger(__name__)

OWNERS = (
    "SELECT o.run_id, o.owner, o.generation, COALESCE(d.expires_at < now(), true)"
    " FROM run_owners o LEFT JOIN daemons d ON d.name = o.owner WHERE o.run_id = ANY(%s)"
)
"""Each run's owner, generation, and whether the owner's lease has run out."""
CLAIM = "INSERT INTO run_owners (run_id, owner, generation) VALUES (%s, %s, 1)"
ADOPT = "UPDATE run_owners SET owner = %s, generation = %s WHERE run_id = %s"
ENDED = "UPDATE run_owners SET ended = true WHERE run_id = ANY(%s)"
EXPIRED = (
    "SELECT o.run_id, o.owner, o.generation FROM run_owners o JOIN daemons d ON d.name = o.owner"
    " WHERE d.expires_at < now() AND o.owner <> %s AND NOT o.ended ORDER BY o.run_id"
)
"""The runs not ended whose owner's lease has run out (but this daemon's), with their
generations."""
RUN_PREFIX = "run-"
RELEASE_WAIT_SECONDS = 2.0
"""At a stop, how long to wait for a connection to set the lease (it runs out by itself)."""


def is_relayed_request(event: Event) -> bool:
    """A request any daemon may append to another's run, for its owner to carry out."""
    return isinstance(event, CancelRequested | AnswerRequested)


def ends_run(event: Event) -> bool:
    """Whether `event` records its run's end."""
    return isinstance(event, RunStatusChanged) and event.status in TERMINAL_STATUSES


def run_of(stream: str) -> str | None:
    """The run whose stream this is, or None."""
    return stream[len(RUN_PREFIX) :] if stream.startswith(RUN_PREFIX) else None


Owners = dict[str, tuple[str, int, bool]]
"""Each run's row: its owner, generation, and whether the owner's lease has run out."""


@dataclass
class Checked:
    """What `Fences.check` let through: the appends, the runs they claim, the runs they adopt
    (each with its new generation)."""

    allowed: list[PendingAppend]
    claims: list[str]
    adoptions: dict[str, int]
    ended: list[str] = field(default_factory=list)
    """Runs whose end the batch records: nobody adopts them any more."""


@dataclass
class Fences:
    """The runs this daemon owns, each at the generation it holds, and the check of a batch."""

    daemon: str
    held: dict[str, int] = field(default_factory=dict)

    def runs_of(self, batch: Sequence[PendingAppend]) -> list[str]:
        """The runs whose streams the batch appends events to."""
        return sorted({run for p in batch if p.events and (run := run_of(p.stream)) is not None})

    def check(self, batch: list[PendingAppend], owners: Owners) -> Checked:
        """The appends this daemon may make (the others fail: `FencedAppend`, or for an
        adoption that came too late, `ConcurrencyError`), the runs they claim (no owner yet)
        and those they adopt. Appends made together stand or fall together."""
        checked = Checked([], [], {})
        refusals: dict[int, Exception] = {}
        for pending in batch:
            refusal = self._refusal(pending, owners, checked)
            if refusal is not None:
                refusals[id(pending)] = refusal
        for group in joined_groups(batch):
            refused = next((refusals[id(p)] for p in group if id(p) in refusals), None)
            for pending in group:
                if refused is None:
                    checked.allowed.append(pending)
                    run = run_of(pending.stream)
                    if run is not None and any(ends_run(e) for e in pending.events):
                        checked.ended.append(run)
                elif not pending.future.done():
                    pending.future.set_exception(refusals.get(id(pending), refused))
        allowed_runs = {run_of(p.stream) for p in checked.allowed}
        checked.claims = [run for run in checked.claims if run in allowed_runs]
        return checked

    def _refusal(
        self, pending: PendingAppend, owners: Owners, checked: Checked
    ) -> Exception | None:
        """Why this daemon may not make `pending` (None: it may); a claim or an adoption it
        makes is noted in `checked` (and an adoption in `owners`, for the appends after it)."""
        run = run_of(pending.stream) if pending.events else None
        if run is None:
            return None
        row = owners.get(run)
        if row is not None and all(is_relayed_request(e) for e in pending.events):
            return None  # anyone may ask the owner
        if pending.adopting is not None:
            refusal = self._adoption_refused(run, row, pending.adopting)
            if refusal is not None:
                return ConcurrencyError(refusal)
            checked.adoptions[run] = pending.adopting[1] + 1
            owners[run] = (self.daemon, pending.adopting[1] + 1, False)
            return None
        if row is None:
            if run not in checked.claims:
                checked.claims.append(run)
            return None
        mine = row[0] == self.daemon
        if mine and (run in checked.adoptions or self.held.setdefault(run, row[1]) == row[1]):
            return None  # (held from the row: a claim whose COMMIT went unanswered)
        return FencedAppend(
            f"run {run} is owned by orcad {row[0]} (generation {row[1]}), not by "
            f"orcad {self.daemon}: not written"
        )

    def _adoption_refused(
        self, run: str, row: tuple[str, int, bool] | None, adopting: tuple[str, int]
    ) -> str | None:
        """Why this daemon may not take `run` over from `adopting` (None: it may)."""
        if row is None or (row[0], row[1]) != adopting:
            return f"run {run} is no longer orcad {adopting[0]}'s at generation {adopting[1]}"
        if not row[2]:
            return f"orcad {adopting[0]}, which owns run {run}, renewed its lease"
        return None

    def committed(self, checked: Checked) -> None:
        """The batch committed: this daemon owns the runs it claimed (at generation 1) and
        those it adopted."""
        for run in checked.claims:
            self.held[run] = 1
        self.held.update(checked.adoptions)


async def load_owned(
    connection: psycopg.AsyncConnection[tuple[object, ...]], daemon: str
) -> dict[str, int]:
    """The runs `daemon` owns, with their generations."""
    cursor = await connection.execute(
        "SELECT run_id, generation FROM run_owners WHERE owner = %s", (daemon,)
    )
    return {cast(str, run): cast(int, generation) for run, generation in await cursor.fetchall()}


class DaemonLease:
    """This daemon's row in `daemons`: registered at start, renewed every `lease / 3` seconds,
    its expiry from the database's clock."""

    def __init__(
        self, pool: AsyncConnectionPool, where: str, daemon: str, home: str, lease_seconds: float
    ) -> None:
        self._pool = pool
        self._where = where
        self.daemon = daemon
        self._home = home
        self._lease = lease_seconds
        self._host = socket.gethostname()
        self._connection: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        """The lease's own connection (see `_set_expiry`)."""

    async def register(self) -> None:
        """Take this daemon's row. Another live daemon of the same name (on another host, or
        in another state directory) is refused; this one's earlier process's row is taken.
        The connection it takes is the lease's own from then on (see `_set_expiry`)."""
        self._connection = await self._pool.getconn()
        try:
            await self._take_row(self._connection)
        except BaseException:
            await self._let_go()
            raise

    async def _take_row(self, connection: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        async with connection.transaction():
            cursor = await connection.execute(
                "SELECT host, home, pid, expires_at > now() FROM daemons WHERE name = %s"
                " FOR UPDATE",
                (self.daemon,),
            )
            row = await cursor.fetchone()
            if row is not None and row[3] and (row[0], row[1]) != (self._host, self._home):
                raise StoreError(
                    f"a daemon named {self.daemon} runs on {row[0]} (pid {row[2]}, state "
                    f"directory {row[1]}) and shares the log at {self._where}: give this one "
                    "another name ([daemon] name in config.toml)"
                )
            await connection.execute(
                "INSERT INTO daemons (name, host, home, pid, started_at, expires_at)"
                " VALUES (%(name)s, %(host)s, %(home)s, %(pid)s, now(),"
                " now() + make_interval(secs => %(lease)s))"
                " ON CONFLICT (name) DO UPDATE SET host = excluded.host, home = excluded.home,"
                " pid = excluded.pid, started_at = excluded.started_at,"
                " expires_at = excluded.expires_at",
                {
                    "name": self.daemon,
                    "host": self._host,
                    "home": self._home,
                    "pid": os.getpid(),
                    "lease": self._lease,
                },
            )

    async def expired_runs(self) -> list[tuple[str, str, int]]:
        """The runs whose owner's lease has run out (this daemon's aside): each with its
        owner and generation."""
        try:
            async with self._pool.connection() as connection:
                cursor = await connection.execute(EXPIRED, (self.daemon,))
                rows = await cursor.fetchall()
        except psycopg.Error as exc:
            raise LogUnavailable(f"cannot reach PostgreSQL at {self._where} ({exc})") from None
        return [(cast(str, r), cast(str, o), cast(int, g)) for r, o, g in rows]

    async def release(self, keep_seconds: float) -> None:
        """At a stop: let the lease run out `keep_seconds` from now (0: at once, so another
        daemon adopts this one's runs without waiting)."""
        await self._set_expiry(keep_seconds, RELEASE_WAIT_SECONDS)

    async def renew_forever(self) -> None:
        """Renew the lease every third of its length until cancelled; a renewal that fails is
        tried again at the next beat (the lease runs out if none succeeds in time)."""
        while True:
            await asyncio.sleep(self._lease / 3)
            try:
                await self._set_expiry(self._lease, self._lease / 3)
            except psycopg.Error as exc:
                log.warning(
                    "could not renew the lease of orcad %s at %s: %s", self.daemon, self._where, exc
                )

    async def _set_expiry(self, seconds: float, wait_seconds: float) -> None:
        """Set the lease to run out `seconds` from now, on the lease's own connection (kept
        from one renewal to the next, so that busy readers cannot keep it waiting for the
        pool, nor a stop's release); one that fails is given back and replaced next time."""
        try:
            if self._connection is None or self._connection.closed:
                self._connection = await self._pool.getconn(timeout=wait_seconds)
            await self._connection.execute(
                "UPDATE daemons SET expires_at = now() + make_interval(secs => %s)"
                " WHERE name = %s AND pid = %s",
                (seconds, self.daemon, os.getpid()),
            )
        except psycopg.Error:
            await self._let_go()
            raise

    async def close(self) -> None:
        """Give the lease's connection back to the pool."""
        await self._let_go()

    async def _let_go(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with anyio.CancelScope(shield=True):
                await self._pool.putconn(connection)
