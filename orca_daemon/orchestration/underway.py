"""Runs a client's request is deciding for now: the reactor leaves them to it (the two would
only race for the same decision), and is asked to look again once the request is done."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


class Underway:
    """Counts, per run, the requests deciding for it now."""

    def __init__(self, reconsider: Callable[[str], None]) -> None:
        self._reconsider = reconsider
        self._counts: dict[str, int] = {}

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._counts

    @contextlib.contextmanager
    def request(self, run_id: str) -> Iterator[None]:
        self._counts[run_id] = self._counts.get(run_id, 0) + 1
        try:
            yield
        finally:
            self._counts[run_id] -= 1
            if not self._counts[run_id]:
                del self._counts[run_id]
                self._reconsider(run_id)  # what changed meanwhile, decided by the reactor
