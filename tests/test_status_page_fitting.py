"""`status_page` (orca_daemon/socket/status_pages.py) in process: a page of small runs is measured
whole, a page with a run of many sessions is fitted item by item, and both give every run and
session once, in order, with the same cursors."""

from __future__ import annotations

import msgspec

from orca_client.views import RunInfo, SessionInfo
from orca_daemon.socket.status_pages import PAGE_RUNS, SMALL_RUN_ITEMS, Listing, status_page
from orca_daemon.state.tables import RunTable


def table(sessions_per_run: list[int]) -> RunTable:
    runs = RunTable()
    for index, count in enumerate(sessions_per_run):
        run_id = f"{index:012x}"
        session_ids = [f"{run_id}.{n}" for n in range(1, count + 1)]
        for session_id in session_ids:
            runs.sessions[session_id] = SessionInfo(
                session_id=session_id,
                run_id=run_id,
                agent="command",
                role="worker",
                status="running",
                command=["agent", "--flag"],
                cwd="/tmp",
                created_at=1.0,
            )
        runs[run_id] = RunInfo(
            run_id=run_id,
            title=f"run {index}",
            status="running",
            cwd="/tmp",
            created_at=1.0,
            updated_at=1.0,
            session_ids=session_ids,
        )
    return runs


def every_page(runs: RunTable, budget: int) -> list[tuple[list[str], list[str]]]:
    listing = Listing.of_places(runs, range(len(runs)))
    pages, cursor = [], None
    while True:
        page = status_page(listing, cursor, budget)
        pages.append(([r.run_id for r in page.runs], [s.session_id for s in page.sessions]))
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def test_small_runs_and_a_big_one_come_whole_and_once_in_order() -> None:
    counts = [1] * (PAGE_RUNS + 10) + [SMALL_RUN_ITEMS + 12] + [2] * 5
    runs = table(counts)
    pages = every_page(runs, budget=4 << 20)
    assert [len(ids) for ids, _ in pages] == [PAGE_RUNS, 16]
    assert [r for ids, _ in pages for r in ids] == list(runs)
    assert [s for _, sessions in pages for s in sessions] == [
        s for run_id in runs for s in runs[run_id].session_ids
    ]


def test_a_small_budget_cuts_pages_by_bytes_whichever_way_they_are_measured() -> None:
    runs = table([1] * 30 + [SMALL_RUN_ITEMS + 4] + [1] * 30)
    one = msgspec.json.encode(runs[next(iter(runs))])
    pages = every_page(runs, budget=10 * len(one))
    assert len(pages) > 6
    shown = [r for ids, _ in pages for r in ids]
    assert list(dict.fromkeys(shown)) == list(runs)  # a run cut short comes again, next page
    assert len(shown) > len(runs)
    sessions = [s for _, page_sessions in pages for s in page_sessions]
    assert sessions == [s for run_id in runs for s in runs[run_id].session_ids]
