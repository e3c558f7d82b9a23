"""A full log against the real orcad: SQLite refuses every write that needs a new page (the
store's test hook sets `PRAGMA max_page_count` from a file, so no privileges are needed), then
the space comes back.

What must hold: a session that ends while the log is full is recorded with its true end once it
can be; the output dropped meanwhile is counted exactly and the loss is recorded; a client that
starts a run while the log is full is told why, clearly; orcad logs the outage once, without
tracebacks.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import (
    DaemonProcess,
    agent,
    events_of,
    output_of,
    process_exists,
    wait_until,
)
from support.homes import small_tmpfs, write_config

from orca_client.client import RequestFailed
from orca_client.events import STOPPED_REASON
from orca_client.plan import Plan, PlanTask
from orca_client.wire import (
    Answer,
    AnswerResult,
    RunStarted,
    Shutdown,
    StartDebug,
    StartPlan,
    StartRun,
)
from orca_daemon.log.transactions import TEST_PAGE_LIMIT_VARIABLE

MEGABYTES = 4
SUMMARY_BYTES = 20_000
"""Larger than a page: recording the session's end needs new pages, which a full log refuses."""
LOSS_NOTE = re.compile(
    r"orcad: (\d+) bytes of stdout were not recorded because the log could not be written "
    r"\(disk full at (.+)\)\n"
)


def test_a_session_that_ends_while_the_log_is_full_ends_completed_once_it_can_be_written(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    limit_file = orca_home.parent / "page-limit"
    daemon = make_daemon(extra_env={TEST_PAGE_LIMIT_VARIABLE: str(limit_file)}).start()
    session_ends_while_full(
        daemon,
        orca_home.parent / "work",
        fill=lambda: limit_file.write_text("1\n"),  # no new page from now on
        free=limit_file.unlink,
    )


def test_on_a_file_system_that_is_really_full_a_session_ends_completed_once_there_is_space(
    small_home: Path, make_daemon: Callable[..., DaemonProcess]
) -> None:
    daemon = make_daemon().start()
    ballast = small_home / "ballast"

    def fill() -> None:
        block = b"\0" * 65536
        with open(ballast, "wb", buffering=0) as out, contextlib.suppress(OSError):  # ENOSPC
            while True:
                out.write(block)

    session_ends_while_full(
        daemon, small_home.parent / "work", fill, ballast.unlink, spool_on_full_disk=True
    )


@pytest.fixture
def small_home(orca_home: Path) -> Iterator[Path]:
    """ORCA_HOME on its own 32 MiB tmpfs (needs the privilege to mount, e.g. root): room for the
    output twice (the holder's spool and the log) once the ballast is gone."""
    with small_tmpfs(orca_home, "32m", "the page-limit test covers a full log") as home:
        yield home


def session_ends_while_full(
    daemon: DaemonProcess,
    work: Path,
    fill: Callable[[], object],
    free: Callable[[], object],
    spool_on_full_disk: bool = False,
) -> None:
    """A session prints MEGABYTES while the log is full and ends; then there is space again.
    With `spool_on_full_disk`, its holder cannot spool what it prints either: the agent waits on
    its full pipe until there is space (nothing is lost), and ends after that."""
    work.mkdir()
    gate = work / "gate"
    log_file = str(daemon.paths.log_file)
    command = agent("gated_firehose.py", str(gate), str(MEGABYTES), str(SUMMARY_BYTES))
    with daemon.client() as client:
        started: RunStarted = client.request(StartRun(command=command, cwd=str(work)))
    wait_until(lambda: "ready" in output_of(daemon, started.run_id), what="the agent to start")
    pid = daemon.status(started.run_id).sessions[0].pid
    assert pid is not None

    fill()
    gate.touch()
    if not spool_on_full_disk:
        wait_until(lambda: not process_exists(pid), what="the agent to finish its output, exit")
        wait_until(
            lambda: (
                f"the log cannot be written: disk full at {log_file}" in daemon.output()
                or daemon.status(started.run_id).runs[0].status != "running"
            ),
            what="orcad to find the log full",
        )

    # A client asking for a run now is told why it cannot have one.
    refused = daemon.orca("run", "--cwd", str(work), "--", "echo", "x" * SUMMARY_BYTES)
    assert f"log_unavailable: the log cannot be written: disk full at {log_file}" in refused.stderr
    assert refused.returncode == 1, refused
    # Its end waits to be recorded: the run is neither ended by an error nor given up on.
    assert daemon.status(started.run_id).runs[0].status == "running"
    if spool_on_full_disk:
        assert process_exists(pid), "the agent ended while its output could not be kept"

    free()
    run = daemon.wait_for_run(started.run_id, timeout=30)
    session = daemon.status(started.run_id).sessions[0]
    assert (run.status, session.status, session.reason) == (
        "completed",
        "completed",
        "the agent reported done",
    )
    ended = [e for e in events_of(daemon, started.run_id) if e["type"] == "session_terminated"]
    assert len(ended) == 1 and len(ended[0]["summary"]) == SUMMARY_BYTES  # all of it, in the log

    written = len("ready\n") + MEGABYTES * 1024 * 1024
    recorded = len(output_of(daemon, started.run_id).encode())
    notes = LOSS_NOTE.findall(output_of(daemon, started.run_id, "orca"))
    assert notes or spool_on_full_disk, output_of(daemon, started.run_id, "orca")
    assert {where for _, where in notes} <= {log_file}
    lost = sum(int(size) for size, _ in notes)
    assert recorded + lost == written  # every byte is either in the log or counted as lost
    types = [e["type"] for e in events_of(daemon, started.run_id)]
    assert types.count("session_terminated") == 1
    assert max(i for i, t in enumerate(types) if t == "output_appended") < types.index(
        "session_terminated"
    )  # the note of the loss comes before the end

    output = daemon.output()
    assert output.count("orca_daemon.log.outage: the log cannot be written") == 1, output
    assert "the log can be written again" in output
    assert "Traceback" not in output, output
    if spool_on_full_disk:
        holder_log = next((daemon.home / "runs").glob("*/spool/*/holder.log"), None)
        assert holder_log is None or "Traceback" not in holder_log.read_text()

    assert daemon.stop(signal.SIGTERM) == 0
    daemon.start()
    assert daemon.status(started.run_id).runs[0].status == "completed"


def test_a_run_started_while_the_log_is_full_is_refused_with_the_reason_and_not_recorded(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    """The first append to find the log full is a client's: it is refused at once, not left
    waiting, and nothing of it is recorded; once there is space, runs start again."""
    limit_file = orca_home.parent / "page-limit"
    daemon = make_daemon(extra_env={TEST_PAGE_LIMIT_VARIABLE: str(limit_file)}).start()
    log_file = str(daemon.paths.log_file)
    limit_file.write_text("1\n")
    big_argument = "x" * SUMMARY_BYTES  # its run needs new pages in the log
    for _ in range(2):  # the first finds out; the second is refused from what orcad knows
        refused = daemon.orca("run", "--cwd", str(orca_home.parent), "--", "echo", big_argument)
        assert refused.returncode == 1, refused
        assert (
            f"orca: log_unavailable: the log cannot be written: disk full at {log_file}"
            in refused.stderr
        )
    assert daemon.status().runs == []

    limit_file.unlink()

    def started() -> bool:
        result = daemon.orca("run", "--cwd", str(orca_home.parent), "--", "echo", big_argument)
        return result.returncode == 0

    wait_until(started, what="a run to be accepted once the log has space")
    output = daemon.output()
    assert output.count("orca_daemon.log.outage: the log cannot be written") == 1, output
    assert "Traceback" not in output, output


BIG = "x" * SUMMARY_BYTES
"""Text larger than a page: an event that holds it needs new pages, which a full log refuses."""


def stopped_quickly(daemon: DaemonProcess, pid: int) -> None:
    """Stop orcad, ending its sessions, while the log is full: it signals the agents at once (it
    does not wait for the log first); once the space is back, it exits cleanly."""
    with daemon.client() as client:
        client.request(Shutdown(cancel_sessions=True))
    wait_until(
        lambda: "stopping: signalled the processes" in daemon.output(),
        what="orcad to signal the agents",
    )
    wait_until(lambda: not process_exists(pid), what="the agent to be stopped")


@pytest.mark.parametrize("kind", ["fan-out", "plan", "several repositories"])
def test_a_fanout_plan_or_multi_repo_run_that_finds_the_log_full_is_refused_and_orcad_stops(
    kind: str, make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    """The request's own append is the first to find the log full: the client is told why at
    once (not left waiting for space), and a stop that ends sessions still stops orcad and its
    agents."""
    limit_file = orca_home.parent / "page-limit"
    work = orca_home.parent / "work"
    work.mkdir()
    sleeper = ["sleep", "300"]
    write_config(
        orca_home,
        f'[agents.work]\nadapter = "command"\ncommand = {json.dumps(sleeper)}\n'
        + "".join(f'[[repos]]\nname = "r{n}"\npath = "{work}"\n' for n in (1, 2)),
    )
    daemon = make_daemon(extra_env={TEST_PAGE_LIMIT_VARIABLE: str(limit_file)}).start()
    log_file = str(daemon.paths.log_file)
    with daemon.client() as client:
        running: RunStarted = client.request(StartRun(command=sleeper, cwd=str(work)))
    pid = wait_until(lambda: daemon.status(running.run_id).sessions[0].pid, what="sleep to run")

    limit_file.write_text("1\n")
    request: StartDebug | StartPlan | StartRun
    if kind == "fan-out":
        request = StartDebug(cwd=str(work), agents=["work"], prompt=BIG)
    elif kind == "plan":
        plan = Plan(title="big", tasks=[PlanTask(id="a", prompt=BIG)])
        request = StartPlan(cwd=str(work), plan=plan, agent="work")
    else:
        request = StartRun(cwd=str(work), command=sleeper, prompt=BIG, repos=["r1", "r2"])
    with daemon.client() as client, pytest.raises(RequestFailed) as refused:
        client.request(request)
    assert refused.value.code == "log_unavailable"
    assert str(refused.value) == f"the log cannot be written: disk full at {log_file}"

    stopped_quickly(daemon, pid)
    limit_file.unlink()
    assert daemon.stop(timeout=30) == 0
    daemon.start()
    assert [r.run_id for r in daemon.status().runs] == [running.run_id]
    session = daemon.status(running.run_id).sessions[0]
    assert (session.status, session.reason) == ("failed", STOPPED_REASON)


def pump_waited_for_the_log(daemon: DaemonProcess, session_id: str) -> bool:
    """orcad has given up reading the exited agent's pipes, or said that what the agent wrote
    waits for the log (both say so on a line naming the session and "its output")."""
    return any(
        f"session {session_id}: " in line and "its output" in line
        for line in daemon.output().splitlines()
    )


def test_a_result_given_while_the_log_is_full_decides_the_sessions_end(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    """The agent asks a question the log cannot take yet, then reports failure and exits 0:
    its end is the failure it reported, however long the log stays full."""
    limit_file = orca_home.parent / "page-limit"
    daemon = make_daemon(extra_env={TEST_PAGE_LIMIT_VARIABLE: str(limit_file)}).start()
    gate = orca_home.parent / "gate"
    script = {
        "steps": [
            {"wait_file": str(gate)},
            {"ask_nowait": [{"id": "q1", "question": BIG}]},
            {"result": {"outcome": "failed", "error": "it broke"}},
        ],
        "exit": 0,
    }
    command = agent("q_ask.py", json.dumps(script))
    with daemon.client() as client:
        started: RunStarted = client.request(StartRun(command=command, cwd=str(orca_home.parent)))
    wait_until(lambda: "pid " in output_of(daemon, started.run_id), what="the agent to start")
    session = daemon.status(started.run_id).sessions[0]
    assert session.pid is not None

    limit_file.write_text("1\n")
    gate.touch()
    wait_until(lambda: not process_exists(session.pid), what="the agent to exit")
    wait_until(
        lambda: pump_waited_for_the_log(daemon, session.session_id),
        what="orcad to wait for the log after the agent's exit",
    )
    limit_file.unlink()

    run = daemon.wait_for_run(started.run_id)
    ended = daemon.status(started.run_id).sessions[0]
    assert (run.status, ended.status, ended.reason, ended.exit_code) == (
        "failed",
        "failed",
        "it broke",
        0,
    )
    types = [e["type"] for e in events_of(daemon, started.run_id)]
    assert types.count("question_asked") == 1 and types.count("session_terminated") == 1
    assert "Traceback" not in daemon.output()


def test_an_idle_session_records_its_lost_output_as_soon_as_the_log_can_be_written(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    """The note of what was lost does not wait for the session's next output or its end."""
    limit_file = orca_home.parent / "page-limit"
    daemon = make_daemon(extra_env={TEST_PAGE_LIMIT_VARIABLE: str(limit_file)}).start()
    log_file = str(daemon.paths.log_file)
    speak, finish = orca_home.parent / "speak", orca_home.parent / "finish"
    script = {
        "steps": [
            {"wait_file": str(speak)},
            {"say": BIG},
            {"wait_file": str(finish)},  # idle, and alive, until the test says
            {"result": {"outcome": "done", "summary": "ok"}},
        ]
    }
    command = agent("q_ask.py", json.dumps(script))
    with daemon.client() as client:
        started: RunStarted = client.request(StartRun(command=command, cwd=str(orca_home.parent)))
    wait_until(lambda: "pid " in output_of(daemon, started.run_id), what="the agent to start")

    limit_file.write_text("1\n")
    speak.touch()
    wait_until(
        lambda: f"the log cannot be written: disk full at {log_file}" in daemon.output(),
        what="orcad to find the log full",
    )
    limit_file.unlink()
    notes = wait_until(
        lambda: LOSS_NOTE.findall(output_of(daemon, started.run_id, "orca")),
        what="the loss to be recorded while the session is idle",
    )
    assert daemon.status(started.run_id).sessions[0].status == "running"
    finish.touch()
    assert daemon.wait_for_run(started.run_id).status == "completed"

    notes = LOSS_NOTE.findall(output_of(daemon, started.run_id, "orca"))
    assert notes == [(str(len(BIG + "\n")), log_file)]  # what was said while the log was full
    assert BIG[:100] not in output_of(daemon, started.run_id)


def test_a_session_that_ends_while_another_connection_holds_the_log_locked_ends_once_released(
    daemon: DaemonProcess, orca_home: Path
) -> None:
    """An operator's sqlite3 holds the write lock (a VACUUM, say) for longer than orcad's busy
    timeout while a session ends: its end waits, and is recorded once the lock is released."""
    work = orca_home.parent / "work"
    work.mkdir()
    gate = work / "gate"
    command = agent("gated_firehose.py", str(gate), "0", str(SUMMARY_BYTES))
    with daemon.client() as client:
        started: RunStarted = client.request(StartRun(command=command, cwd=str(work)))
    wait_until(lambda: "ready" in output_of(daemon, started.run_id), what="the agent to start")

    with contextlib.closing(sqlite3.connect(daemon.paths.log_file, isolation_level=None)) as db:
        db.execute("BEGIN IMMEDIATE")
        gate.touch()
        wait_until(
            lambda: (
                "the log cannot be written" in daemon.output() or "Traceback" in daemon.output()
            ),
            what="orcad to find the log locked",
            timeout=30,
        )
        assert daemon.status(started.run_id).runs[0].status == "running"
        db.execute("ROLLBACK")

    run = daemon.wait_for_run(started.run_id)
    session = daemon.status(started.run_id).sessions[0]
    assert (run.status, session.status, session.reason) == (
        "completed",
        "completed",
        "the agent reported done",
    )
    types = [e["type"] for e in events_of(daemon, started.run_id)]
    assert types.count("session_terminated") == 1
    output = daemon.output()
    assert "locked" in output and "the log can be written again" in output
    assert "Traceback" not in output, output


def test_a_multi_repo_run_whose_children_find_the_log_full_starts_them_once_it_can_be_written(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    """The parent run is recorded, its children are not (the log fills in between): the client
    is answered at once, and the children start when the log can be written again."""
    limit_file = orca_home.parent / "page-limit"
    work = orca_home.parent / "work"
    work.mkdir()
    write_config(orca_home, "".join(f'[[repos]]\nname = "r{n}"\npath = "{work}"\n' for n in (1, 2)))
    daemon = make_daemon(extra_env={TEST_PAGE_LIMIT_VARIABLE: str(limit_file)}).start()
    with contextlib.closing(sqlite3.connect(daemon.paths.log_file)) as db:
        pages = int(db.execute("PRAGMA page_count").fetchone()[0])
    # Room for the parent's RunCreated (its prompt: about 5 pages), not for a child's (twice that).
    limit_file.write_text(f"{pages + 8}\n")
    request = StartRun(cwd=str(work), command=["true"], prompt=BIG, repos=["r1", "r2"])
    with daemon.client() as client:
        started: RunStarted = client.request(request)
    assert started.child_run_ids == []
    assert [r.run_id for r in daemon.status().runs] == [started.run_id]

    limit_file.unlink()
    parent = daemon.wait_for_run(started.run_id)
    assert parent.status == "completed"
    assert len(parent.child_run_ids) == 2
    assert "Traceback" not in daemon.output()


def test_an_answer_the_log_cannot_take_is_refused_and_the_question_stays_answerable(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    """The answer's record does not fit in the full log: the client is told so at once, the
    agent gets nothing, and the question is still pending; once the log can be written, the
    same question is answered and the run carries on."""
    limit_file = orca_home.parent / "page-limit"
    daemon = make_daemon(extra_env={TEST_PAGE_LIMIT_VARIABLE: str(limit_file)}).start()
    script = {
        "steps": [
            {"ask": [{"id": "q1", "question": "Which plan?"}]},
            {"result": {"outcome": "done", "summary": "answered"}},
        ]
    }
    command = agent("q_ask.py", json.dumps(script))
    with daemon.client() as client:
        started: RunStarted = client.request(StartRun(command=command, cwd=str(orca_home.parent)))
    run_id = started.run_id
    wait_until(
        lambda: daemon.status(run_id).runs[0].status == "waiting_for_answer",
        what="the question",
    )

    limit_file.write_text("1\n")  # no new page: an answer of BIG text cannot be recorded
    with daemon.client() as client, pytest.raises(RequestFailed) as refused:
        client.request(Answer(run_id=run_id, answered_by="test", text=BIG))
    assert refused.value.code == "log_unavailable", refused.value
    session = daemon.status(run_id).sessions[0]
    assert session.pending is not None and session.pending.request_id == "q1"
    assert "received " not in output_of(daemon, run_id)  # the agent was sent nothing

    limit_file.unlink()
    answers: list[AnswerResult] = []

    def answered_once_writable() -> bool:
        """Answer again; the log may still be in its outage for a moment (it probes)."""
        with daemon.client() as client:
            try:
                answers.append(
                    client.request(Answer(run_id=run_id, answered_by="test", text="the small one"))
                )
            except RequestFailed as error:
                assert error.code == "log_unavailable", error
                return False
        return True

    wait_until(answered_once_writable, what="the answer to be taken once the log can be written")
    assert answers[0].request_id == "q1"
    assert daemon.wait_for_run(run_id).status == "completed"
    assert output_of(daemon, run_id).count("received ") == 1
    assert '"the small one"' in output_of(daemon, run_id)
    types = [e["type"] for e in events_of(daemon, run_id)]
    assert types.count("question_answered") == 1
