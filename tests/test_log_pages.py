"""Reading a big run's log page by page: `Client.read_pages` (the pages behind `orca logs`)
asks for the next page before it hands one over, and each page is one read on orcad's side.
Whatever the pipelining, every event of the run comes once, in order, and nothing else does.

Real orcad, real CLI, real agents (tests/agents/firehose.py prints megabytes).
"""

from __future__ import annotations

import itertools

from conftest import DaemonProcess, agent, wait_until

from orca_client.events import OutputAppended, decode_event
from orca_client.views import TERMINAL_STATUSES
from orca_client.wire import PAGE_BYTES, RunStarted, StartRun, Status

MEGABYTES = 4


def start(daemon: DaemonProcess, *argv: str) -> str:
    with daemon.client() as client:
        started: RunStarted = client.request(StartRun(command=agent(*argv), cwd="/tmp"))
    return started.run_id


def test_a_run_of_many_pages_is_read_whole_once_and_in_order_beside_another(
    daemon: DaemonProcess,
) -> None:
    big = start(daemon, "firehose.py", str(MEGABYTES))
    beside = start(daemon, "firehose.py", "1")  # its events interleave with the big run's
    for run_id in (big, beside):
        wait_until(
            lambda r=run_id: daemon.status(r).runs[0].status in TERMINAL_STATUSES, "runs end"
        )

    with daemon.client() as client:
        pages = list(client.read_pages(after=0, run_id=big))
        head = client.hello().head_position
    records = [record for page in pages for record in page]
    assert len(pages) >= MEGABYTES * (1 << 20) // PAGE_BYTES  # the pipeline had work to do
    assert {r.stream for r in records} == {f"run-{big}"}
    assert [r.version for r in records] == list(range(1, len(records) + 1))
    assert all(a.position < b.position <= head for a, b in itertools.pairwise(records))
    text = "".join(
        event.text
        for event in (decode_event(bytes(r.event)) for r in records)
        if isinstance(event, OutputAppended) and event.stream == "stdout"
    )
    assert text == ("y" * 1023 + "\n") * MEGABYTES * 1024

    shown = daemon.orca("logs", big, "--raw")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("y" * 1023 + "\n") == MEGABYTES * 1024


def test_read_pages_from_a_position_gives_only_what_follows(daemon: DaemonProcess) -> None:
    run_id = start(daemon, "firehose.py", "2")
    wait_until(lambda: daemon.status(run_id).runs[0].status in TERMINAL_STATUSES, "run ends")
    with daemon.client() as client:
        whole = [r for page in client.read_pages(run_id=run_id) for r in page]
        middle = whole[len(whole) // 2].position
        rest = [r for page in client.read_pages(after=middle, run_id=run_id) for r in page]
        everything = [r for page in client.read_pages(after=0) for r in page]
    assert rest == whole[len(whole) // 2 + 1 :]
    assert [r.position for r in everything] == sorted({r.position for r in everything})
    assert {r.position for r in whole} <= {r.position for r in everything}


def test_other_requests_while_pages_are_read_lose_no_page(daemon: DaemonProcess) -> None:
    """The next page is asked for before one is handed over: a request made on the same
    client meanwhile must not take (and drop) that page's reply."""
    run_id = start(daemon, "firehose.py", "2")
    wait_until(lambda: daemon.status(run_id).runs[0].status in TERMINAL_STATUSES, "run ends")
    with daemon.client() as client:
        whole = [r for page in client.read_pages(run_id=run_id) for r in page]
        mixed = []
        for page in client.read_pages(run_id=run_id):
            mixed += page
            assert client.request(Status(run_id=run_id)).runs[0].run_id == run_id
            assert client.hello().head_position >= page[-1].position
    assert len(whole) > 2
    assert mixed == whole


def test_pages_read_while_the_run_writes_have_no_gap_and_end_at_a_committed_event(
    daemon: DaemonProcess,
) -> None:
    """Read again and again while the agent prints: every read is a prefix of the run's
    events (versions 1..n, no gap, nothing past what was committed when it was asked), and
    the read after the end is the whole run."""
    run_id = start(daemon, "firehose.py", "8")
    reads = 0
    with daemon.client() as client:
        while daemon.status(run_id).runs[0].status not in TERMINAL_STATUSES:
            records = [r for page in client.read_pages(run_id=run_id) for r in page]
            head = client.hello().head_position
            assert [r.version for r in records] == list(range(1, len(records) + 1))
            assert all(r.position <= head for r in records)
            reads += 1
        whole = [r for page in client.read_pages(run_id=run_id) for r in page]
    assert reads >= 1
    assert [r.version for r in whole] == list(range(1, len(whole) + 1))
    text = "".join(
        event.text
        for event in (decode_event(bytes(r.event)) for r in whole)
        if isinstance(event, OutputAppended) and event.stream == "stdout"
    )
    assert text == ("y" * 1023 + "\n") * 8 * 1024


def test_a_reader_that_stops_early_leaves_no_page_kept_for_it(daemon: DaemonProcess) -> None:
    """The page asked for ahead of one the caller never takes is not kept by the client."""
    run_id = start(daemon, "firehose.py", "2")
    wait_until(lambda: daemon.status(run_id).runs[0].status in TERMINAL_STATUSES, "run ends")
    with daemon.client() as client:
        pages = client.read_pages(run_id=run_id)
        first = next(pages)
        pages.close()
        assert client.request(Status(run_id=run_id)).runs[0].run_id == run_id
        client.hello()
        assert client._early == {} and client._awaited == set()
        again = next(client.read_pages(run_id=run_id))
    assert again == first
