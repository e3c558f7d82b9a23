"""How many descriptors orcad may use, and how many of them peers of the socket may hold.

libzmq aborts the whole process when `accept` fails with EMFILE, so running out of descriptors
must never happen: orcad raises its soft limit at start-up and refuses peers beyond a cap that
leaves the rest for the log, agent sessions and connections being refused.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

WANTED_DESCRIPTORS = 65_536
"""The soft RLIMIT_NOFILE orcad asks for (never above the hard limit); the unit's LimitNOFILE."""
MAX_CONNECTIONS = 1024
"""Peers connected at once, at most (fewer when descriptors are scarce)."""
MIN_CONNECTIONS = 8
INHERITED_DESCRIPTOR_LIMIT = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
"""The soft limit orcad was started with (read before it raises its own), which the processes
it starts get back: many programs still assume descriptors below 1024 (select)."""


def restore_inherited_limit() -> None:
    """In a child orcad starts, just before exec: the soft open-files limit orcad was given,
    not the one it raised for itself."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    soft = INHERITED_DESCRIPTOR_LIMIT
    if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard):
        soft = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def descriptor_limit() -> int:
    """The soft limit on open files now in force."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return WANTED_DESCRIPTORS if soft == resource.RLIM_INFINITY else soft


def raise_descriptor_limit(wanted: int = WANTED_DESCRIPTORS) -> int:
    """Raise the soft limit on open files toward `wanted` (capped by the hard limit);
    returns the soft limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, target, exc)
    if soft != resource.RLIM_INFINITY and soft < 2 * MAX_CONNECTIONS:
        log.warning(
            "open-files limit is %d: at most %d peers may connect at once "
            "(raise LimitNOFILE or `ulimit -n` for more)",
            soft,
            connection_cap(soft),
        )
    return descriptor_limit()


def connection_cap(descriptors: int) -> int:
    """Peers allowed at once under a limit of `descriptors`: at most half of them, so the other
    half is left for the log, sessions' pipes and a burst of connections being refused."""
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, descriptors // 2))
