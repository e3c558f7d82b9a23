"""The bridge's subscriptions, which outlive orcad's: each remembers the last position it
delivered and which of orcad's subscriptions feeds it now, if any. Only that one's events are
taken, and only past that position, so a resubscription from there repeats and skips nothing.

No I/O: the bridge subscribes, and calls `attach` with orcad's subscription id as soon as the
reply is read (before any event of it can be)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(eq=False)
class BridgeSubscription:
    id: str
    """The editor's id for it, for its whole life."""
    run_id: str | None
    """Only this run's events (a full id); None: every event."""
    position: int
    """The last position delivered to the editor (the `after` it asked for, until then)."""
    daemon_id: str | None = None
    """orcad's subscription that feeds it now; None while it must subscribe again."""
    closed: bool = False
    """The editor unsubscribed: nothing more is delivered."""

    def wants(self, daemon_id: str, position: int) -> bool:
        """Whether an event at `position` from orcad's subscription `daemon_id` is delivered."""
        return not self.closed and self.daemon_id == daemon_id and position > self.position


class SubscriptionTable:
    """Every open bridge subscription, by its id and by the orcad subscription feeding it."""

    def __init__(self) -> None:
        self._subs: dict[str, BridgeSubscription] = {}
        self._by_daemon: dict[str, BridgeSubscription] = {}

    @staticmethod
    def new(after: int, run_id: str | None) -> BridgeSubscription:
        return BridgeSubscription("b" + secrets.token_hex(8), run_id, after)

    def open(self, sub: BridgeSubscription, daemon_id: str) -> None:
        """A new subscription, fed by `daemon_id` from now on."""
        self._subs[sub.id] = sub
        self.attach(sub, daemon_id)

    def attach(self, sub: BridgeSubscription, daemon_id: str) -> bool:
        """`daemon_id` feeds `sub` from now on; False (and nothing changes) if `sub` is closed or
        fed already: then `daemon_id` is nobody's and should be unsubscribed."""
        if sub.closed or sub.daemon_id is not None or self._subs.get(sub.id) is not sub:
            return False
        sub.daemon_id = daemon_id
        self._by_daemon[daemon_id] = sub
        return True

    def detach(self, sub: BridgeSubscription) -> None:
        """orcad's subscription no longer feeds `sub` (it ended): subscribe again."""
        if sub.daemon_id is not None:
            self._by_daemon.pop(sub.daemon_id, None)
            sub.daemon_id = None

    def detach_all(self) -> None:
        for sub in self._subs.values():
            sub.daemon_id = None
        self._by_daemon.clear()

    def close(self, sub_id: str) -> BridgeSubscription | None:
        """The editor unsubscribes: the subscription it names, closed; None if there is none."""
        sub = self._subs.pop(sub_id, None)
        if sub is not None:
            sub.closed = True
            self.detach(sub)
        return sub

    def get(self, sub_id: str) -> BridgeSubscription | None:
        return self._subs.get(sub_id)

    def fed_by(self, daemon_id: str) -> BridgeSubscription | None:
        return self._by_daemon.get(daemon_id)

    def __iter__(self) -> Iterator[BridgeSubscription]:
        return iter(list(self._subs.values()))

    def __len__(self) -> int:
        return len(self._subs)
