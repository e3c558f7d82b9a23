"""The daemon's guard against replayed requests: each signed request carries a fresh nonce and
its time, and is accepted once, within a window around the daemon's clock. See docs/protocol.md."""

from __future__ import annotations

from collections import deque

from orca_client.wire import WireError

REPLAY_WINDOW_SECONDS = 60.0


class ReplayGuard:
    """Rejects requests that are too old, from before this daemon started, or seen before.

    Nonces are remembered for the acceptance window only, so memory stays bounded; a request
    older than the window is refused as `replayed`, and one signed before `not_before` (the
    daemon's start) as `stale`: a request captured on the way to an earlier daemon is useless to
    this one, and a client whose request merely crossed a restart signs it again.
    """

    def __init__(self, not_before: float, window: float = REPLAY_WINDOW_SECONDS) -> None:
        self._not_before = not_before
        self._window = window
        self._seen: set[str] = set()
        self._order: deque[tuple[float, str]] = deque()

    def check(self, nonce: str, ts: float, now: float) -> None:
        self._expire(now)
        if not 16 <= len(nonce) <= 128:
            raise WireError("bad_request", "nonce must be 16 to 128 characters")
        if abs(now - ts) > self._window:
            raise WireError(
                "replayed",
                f"request timestamp is more than {self._window:.0f}s from the daemon's clock",
            )
        if ts < self._not_before:
            raise WireError("stale", "request was signed before this daemon started: sign it again")
        if nonce in self._seen:
            raise WireError("replayed", "nonce already used: this request was replayed")
        self._seen.add(nonce)
        self._order.append((now, nonce))

    def _expire(self, now: float) -> None:
        horizon = now - 2 * self._window
        while self._order and self._order[0][0] < horizon:
            self._seen.discard(self._order.popleft()[1])
