"""orcad's garbage collector thresholds (orca_daemon/collector.py): a line's short-lived objects
no longer set off a collection every 700 allocations (bench/bench_sessions.py measures why)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from orca_daemon.collector import THRESHOLDS, tune_collector


@pytest.fixture
def restored_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_thresholds")
def test_thousands_of_short_lived_objects_set_off_no_collection() -> None:
    tune_collector()
    assert gc.get_threshold() == THRESHOLDS
    gc.collect()
    collections = gc.get_stats()[0]["collections"]
    for _ in range(5_000):  # what a few hundred lines of output allocate, about
        pair: list[object] = []
        pair.append([pair])
    assert gc.get_stats()[0]["collections"] == collections
