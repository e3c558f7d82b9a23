"""`orca status` whatever agents write: each text a view shows is kept to `VIEW_TEXT_CHARS`
with a marker, the whole text stays in the log (`orca logs` prints it), and status comes in
pages of bounded size that the CLI puts back together.

Real orcad, real CLI, real agents (tests/agents/big_text.py writes the big texts).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from conftest import DaemonProcess, agent, wait_until
from support.logs import ended_runs, write_log

from orca_client.client import RequestFailed, fetch_status
from orca_client.view_text import VIEW_TEXT_CHARS
from orca_client.views import StatusResult
from orca_client.wire import Cancel, RunStarted, StartRun, Status
from orca_daemon.socket.status_pages import PAGE_RUNS

MB = 1_000_000
THIRD = MB // 3


def big_text(kind: str, chars: int) -> str:
    """What tests/agents/big_text.py writes."""
    return (kind + ":" + "x" * chars)[: chars - 3] + "END"


def shortened(kind: str, chars: int, run_id: str) -> str:
    """What a view shows of it."""
    more = f"{chars - VIEW_TEXT_CHARS:,}"
    text = big_text(kind, chars)[:VIEW_TEXT_CHARS]
    return f"{text}… ({more} more characters; see `orca logs {run_id}`)"


def start(daemon: DaemonProcess, *argv: str) -> str:
    with daemon.client() as client:
        started: RunStarted = client.request(StartRun(command=agent(*argv), cwd="/tmp"))
    return started.run_id


def sleeping(daemon: DaemonProcess) -> str:
    """A run that stays running until it is cancelled."""
    with daemon.client() as client:
        started: RunStarted = client.request(StartRun(command=["sleep", "600"], cwd="/tmp"))
    return started.run_id


def status_of(daemon: DaemonProcess, run_id: str) -> str:
    with daemon.client() as client:
        result: StatusResult = client.request(Status(run_id=run_id))
    return result.runs[0].status


def orca_json(daemon: DaemonProcess, *args: str) -> Any:
    shown = daemon.orca(*args, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def test_status_of_runs_with_megabytes_of_agent_text_is_bounded_and_logs_keep_it_whole(
    daemon: DaemonProcess,
) -> None:
    """Defect 7: 20 runs with 1 MB summaries or questions made every status reply larger than
    a client takes (16 MiB): `orca status` failed, and `--all` for ever."""
    told = [start(daemon, "big_text.py", "summary", str(MB)) for _ in range(10)]
    asking = [start(daemon, "big_text.py", "question", str(MB)) for _ in range(10)]
    for run_id in told:
        wait_until(lambda r=run_id: status_of(daemon, r) == "completed", f"{run_id} done")
    for run_id in asking:
        wait_until(lambda r=run_id: status_of(daemon, r) == "waiting_for_answer", "a question")

    for args in (("status",), ("status", "--all")):
        shown = daemon.orca(*args)
        assert shown.returncode == 0, shown.stderr
        assert all(run_id in shown.stdout for run_id in told + asking)
        assert "↳ q1: question:xxx" in shown.stdout

    for args in (("status",), ("status", "--all")):
        result = orca_json(daemon, *args)
        assert len(result["runs"]) == 20
        sessions = {s["run_id"]: s for s in result["sessions"]}
        for run_id in told:
            assert sessions[run_id]["summary"] == shortened("summary", MB, run_id)
        for run_id in asking:
            question = sessions[run_id]["pending"]["questions"][0]
            assert question["id"] == "q1"
            assert question["question"] == shortened("question", THIRD, run_id)
            option = question["options"][0]
            assert option["label"] == shortened("label", THIRD, run_id)
            assert option["description"] == shortened("description", THIRD, run_id)
        assert len(json.dumps(result)) < 20 * 4 * (VIEW_TEXT_CHARS + 1000)

    detail = daemon.orca("status", told[0])
    assert f"  summary  {shortened('summary', MB, told[0])}" in detail.stdout
    detail = daemon.orca("status", asking[0])
    assert shortened("question", THIRD, asking[0]) in detail.stdout
    assert f"- {shortened('label', THIRD, asking[0])}: " in detail.stdout

    logs = daemon.orca("logs", told[0])
    assert logs.returncode == 0
    assert f"summary ({MB:,} characters):\n{big_text('summary', MB)}\n" in logs.stderr
    logs = daemon.orca("logs", asking[0])
    assert f"q1 question ({THIRD:,} characters):\n{big_text('question', THIRD)}\n" in logs.stderr
    assert big_text("label", THIRD) in logs.stderr
    assert big_text("description", THIRD) in logs.stderr


def comparable(result: StatusResult) -> Any:
    return msgspec.to_builtins((result.runs, result.sessions, result.ended_not_shown))


@pytest.mark.parametrize("page_bytes", [1, 700, 5_000])
def test_status_comes_in_pages_that_the_cli_puts_back_together(
    daemon: DaemonProcess, page_bytes: int
) -> None:
    run_ids = [start(daemon, "big_text.py", "summary", "300") for _ in range(8)]
    for run_id in run_ids:
        wait_until(lambda r=run_id: status_of(daemon, r) == "completed", f"{run_id} done")
    with daemon.client() as client:
        whole: StatusResult = client.request(Status(ended=None))
        assert whole.next_cursor is None
        first: StatusResult = client.request(Status(ended=None, page_bytes=page_bytes))
        assert first.next_cursor is not None
        assert len(msgspec.json.encode(first)) < page_bytes + 3_000  # one item more at most
        paged = fetch_status(client, Status(ended=None, page_bytes=page_bytes))
        assert comparable(paged) == comparable(whole)
        assert paged.next_cursor is None
        one = fetch_status(client, Status(run_id=run_ids[3], page_bytes=page_bytes))
        assert comparable(one) == comparable(client.request(Status(run_id=run_ids[3])))


def test_a_status_cursor_that_orcad_did_not_give_is_refused(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        for cursor in ("nonsense", '["no such run", 0, 0]', '["x", -1, 0]'):
            with pytest.raises(RequestFailed) as error:
                client.request(Status(cursor=cursor))
            assert error.value.code == "bad_request"
            assert "not a status cursor" in str(error.value)
        with pytest.raises(RequestFailed, match="page_bytes must be at least 1"):
            client.request(Status(page_bytes=0))
        client.hello()


def test_status_of_a_long_history_pages_through_every_run_once_in_order(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    """Issue 14: with thousands of ended runs (kept packed), `status --all` comes in pages of
    at most PAGE_RUNS runs, each found from its cursor without walking the history, and the
    default status shows the live runs and the 50 newest ended ones."""
    count = 2 * PAGE_RUNS + PAGE_RUNS // 2
    daemon = make_daemon()
    write_log(daemon.paths.log_file, ended_runs(count))
    daemon.start()
    live = sleeping(daemon)
    wait_until(lambda: status_of(daemon, live) == "running", "the live run")
    expected = [f"{index:012x}" for index in range(count)] + [live]

    with daemon.client() as client:
        pages = [client.request(Status(ended=None))]
        while pages[-1].next_cursor is not None:
            cursor = pages[-1].next_cursor
            pages.append(client.request(Status(ended=None, cursor=cursor)))
        recent: StatusResult = client.request(Status())
    assert [len(page.runs) for page in pages] == [PAGE_RUNS, PAGE_RUNS, PAGE_RUNS // 2 + 1]
    assert [run.run_id for page in pages for run in page.runs] == expected
    assert [session.session_id for page in pages for session in page.sessions] == [
        f"{run_id}.1" for run_id in expected
    ]
    assert pages[0].sessions[42].last_output_line == "step 42"
    assert [run.run_id for run in recent.runs] == expected[-51:]
    assert recent.ended_not_shown == count - 50

    shown = orca_json(daemon, "status", "--all")
    assert [run["run_id"] for run in shown["runs"]] == expected
    table = daemon.orca("status")
    assert table.returncode == 0, table.stderr
    assert f"({count - 50} older ended runs not shown: orca status --all)" in table.stdout


def test_a_status_cursor_passes_a_run_that_left_the_listing_between_pages(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    """`status` (live + newest ended) paged while a listed run ends and drops out of it: the
    next page starts at the first run after the cursor's, none twice, none lost."""
    daemon = make_daemon().start()
    runs = [sleeping(daemon) for _ in range(4)]
    for run_id in runs:
        wait_until(lambda r=run_id: status_of(daemon, r) == "running", "running")
    with daemon.client() as client:
        first: StatusResult = client.request(Status(ended=0, page_bytes=1))
        assert [run.run_id for run in first.runs] == runs[:1]
        assert first.next_cursor is not None
        client.request(Cancel(run_id=runs[0]))
        wait_until(lambda: status_of(daemon, runs[0]) == "cancelled", "cancelled")
        rest = []
        cursor: str | None = first.next_cursor
        while cursor is not None:
            page: StatusResult = client.request(Status(ended=0, page_bytes=1, cursor=cursor))
            rest += [run.run_id for run in page.runs]
            cursor = page.next_cursor
    assert rest == runs[1:]
