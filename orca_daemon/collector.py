"""orcad's garbage collector thresholds, raised for a daemon whose heap grows with its sessions.

With CPython's defaults (700, 10, 10), 1,000 live sessions printing a line every half second
made orcad collect its youngest generation 20 times a second and its whole heap (about 240,000
tracked objects: each session's tasks, events and buffers) every 5 s, 180-350 ms each, during
which no request was answered and no output recorded: a fifth of orcad's CPU and every long
stall of its loop (`bench/bench_sessions.py`). Objects that live for a line (a frame read, its
future, the event appended) mostly die young; a larger youngest generation lets them die
before they are promoted, so the older generations fill, and the whole heap is walked, far less
often.
"""

from __future__ import annotations

import gc

THRESHOLDS = (20_000, 20, 10)
"""Allocations before the youngest generation is collected; collections of each generation
before the next older one is (the oldest still waits until it grew by a quarter)."""


def tune_collector() -> None:
    """Set orcad's collector thresholds (at start, before the loop runs)."""
    gc.set_threshold(*THRESHOLDS)
