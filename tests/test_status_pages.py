"""`orca status` whatever agents write: each text a view shows is kept to `VIEW_TEXT_CHARS`
with a marker, the whole text stays in the log (`orca logs` prints it), and status comes in
pages of bounded size that the CLI puts back together.

Real orcad, real CLI, real agents (tests/agents/big_text.py writes the big texts).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from conftest import DaemonProcess, agent, wait_until

from orca_client.client import RequestFailed, fetch_status
from orca_client.view_text import VIEW_TEXT_CHARS
from orca_client.views import StatusResult
from orca_client.wire import RunStarted, StartRun, Status

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
