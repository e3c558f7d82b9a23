"""Outages: the episodes during which the log cannot be written, their backoff and their end."""

from __future__ import annotations

import errno
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orca_daemon.log.records import LogUnavailable

log = logging.getLogger(__name__)

RETRY_FIRST_SECONDS = 0.05
RETRY_MAX_SECONDS = 2.0
"""While the log cannot be written, the writer tries again after 0.05 s, doubling up to 2 s."""
OUTAGE_LOG_QUIET_SECONDS = 60.0
"""An outage that begins this soon after the last one that was logged is not logged again."""


def unwritable_reason(exc: BaseException, path: Path) -> str | None:
    """What keeps the log at `path` from being written, when `exc` is that kind of failure (a full
    disk, an I/O error, a read-only file system, another connection holding it locked past the
    busy timeout, no memory): all worth retrying; None for any other error."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        if primary == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
            return f"disk full at {path}"
        if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return f"{path} is locked by another connection ({exc})"
        if primary == sqlite3.SQLITE_NOMEM:
            return f"out of memory writing {path} ({exc})"
        if primary == sqlite3.SQLITE_IOERR:
            return f"I/O error at {path} ({exc})"
        if primary == sqlite3.SQLITE_READONLY:
            return f"{path} is read-only ({exc})"
        if primary == sqlite3.SQLITE_CANTOPEN:
            return f"cannot open {path} ({exc})"
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"disk full at {path}"
        if exc.errno in (errno.EIO, errno.EROFS):
            return f"I/O error at {path} ({exc.strerror})"
    return None


@dataclass
class Outage:
    """The log cannot be written: since when, why, and when the writer tries again."""

    reason: str
    began: float
    next_attempt: float
    delay: float = RETRY_FIRST_SECONDS
    attempts: int = 1
    dropped: int = 0
    logged: bool = False


class Outages:
    """The outage going on, if any: begun (and logged, at most once a minute) by a failed write,
    extended with a doubling delay by each further one, ended by a write that succeeds, which
    calls the writable listeners."""

    def __init__(self) -> None:
        self.current: Outage | None = None
        self._last_logged = -OUTAGE_LOG_QUIET_SECONDS
        self._writable_listeners: list[Callable[[], None]] = []

    def unwritable(self) -> LogUnavailable | None:
        """Why the log cannot be written now (until the writer's next attempt succeeds), or None."""
        return None if self.current is None else LogUnavailable(self.current.reason)

    def count_dropped(self, count: int) -> None:
        """`count` output appends were not written because of the outage going on."""
        if self.current is not None:
            self.current.dropped += count

    def add_writable_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener` (from the writer, so it must not block) each time the log can be
        written again after an outage."""
        self._writable_listeners.append(listener)

    def write_failed(self, reason: str) -> Outage:
        """A write failed for `reason`: begin (and log, once) or extend the outage."""
        now = time.monotonic()
        outage = self.current
        if outage is None:
            outage = self.current = Outage(reason, now, now + RETRY_FIRST_SECONDS)
            if now - self._last_logged >= OUTAGE_LOG_QUIET_SECONDS:
                outage.logged = True
                self._last_logged = now
                log.error(
                    "the log cannot be written: %s; retrying until it can: sessions' ends, "
                    "questions and status changes wait, output is dropped (and the loss "
                    "recorded), clients' requests are refused",
                    reason,
                )
        else:
            outage.reason = reason
            outage.attempts += 1
            outage.delay = min(outage.delay * 2, RETRY_MAX_SECONDS)
            outage.next_attempt = now + outage.delay
        log.debug("the log cannot be written (attempt %d): %s", outage.attempts, reason)
        return outage

    def write_succeeded(self) -> None:
        """A write succeeded: end the outage, if one was going on."""
        outage, self.current = self.current, None
        if outage is None:
            return
        if outage.logged:
            log.warning(
                "the log can be written again, after %.1f s and %d attempts; %d output appends "
                "were dropped meanwhile",
                time.monotonic() - outage.began,
                outage.attempts,
                outage.dropped,
            )
        for listener in list(self._writable_listeners):
            try:
                listener()
            except Exception:
                log.exception("writable listener %r failed", listener)
