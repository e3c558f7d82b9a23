"""How many descriptors orcad may use, and how many of them peers of the socket may hold.

libzmq aborts the whole process when `accept` fails with EMFILE, so running out of descriptors
must never happen: orcad raises its soft limit at start-up and refuses peers beyond a cap that
leaves the rest for the log, agent sessions and connections being refused.
"""

from __future__ import annotations

import logging
import os
import resource

log = logging.getLogger(__name__)

WANTED_DESCRIPTORS = 65_536
"""The soft RLIMIT_NOFILE orcad asks for (never above the hard limit); the unit's LimitNOFILE."""
MAX_CONNECTIONS = 1024
"""Peers connected at once, at most (fewer when descriptors are scarce)."""
MIN_CONNECTIONS = 8
RESERVED_DESCRIPTORS = 64
"""Kept free of sessions and peers: the log, a snapshot, a hook, a notification being sent."""
SESSION_DESCRIPTORS = 8
"""What starting one more session may take at once (its holder's pipes, then its socket and
pidfd)."""
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


def descriptors_in_use() -> int:
    """How many descriptors orcad has open now."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # the listing's own
    except OSError:
        return 0


def no_room_for_a_session() -> str | None:
    """Why one more session may not start now, or None: sessions may use the descriptors that
    peers of the socket (at their cap) and `RESERVED_DESCRIPTORS` leave, so that orcad refuses
    a session (clearly) before it runs out, instead of failing somewhere in the middle."""
    limit = descriptor_limit()
    in_use = descriptors_in_use()
    if in_use + SESSION_DESCRIPTORS + connection_cap(limit) + RESERVED_DESCRIPTORS <= limit:
        return None
    return (
        f"orcad has {in_use} of its {limit} open files in use (agent sessions, connected "
        "clients): no new session until some end; raise LimitNOFILE in the unit (or "
        "`ulimit -n` before orcad starts) to run more at once"
    )
