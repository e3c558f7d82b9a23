"""What orcad writes to an agent's stdin never stalls it: an agent that does not read its input
still has its output pumped, finishes, and can be answered; what waits for it is bounded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import DaemonProcess, agent, events_of, output_of, wait_until

from orca_client.client import RequestFailed
from orca_client.wire import Answer, AnswerResult, RunStarted, StartRun

PROMPT_BYTES = (1 << 20) - 8192
"""About 1 MiB: as much as fits in one request, far more than a pipe holds."""
ANSWER_CHARS = 100_000
"""The longest answer to one question."""


def start(daemon: DaemonProcess, command: list[str], prompt: str | None = None) -> str:
    request = StartRun(command=command, cwd=str(daemon.home), prompt=prompt)
    with daemon.client() as client:
        started: RunStarted = client.request(request)
    return started.run_id


def pending_id(daemon: DaemonProcess, run_id: str) -> str:
    pending = [s.pending for s in daemon.status(run_id).sessions if s.pending is not None]
    return pending[0].request_id if pending else ""


def of_type(daemon: DaemonProcess, run_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in events_of(daemon, run_id) if e["type"] == kind]


def test_an_agent_that_never_reads_a_1_mib_prompt_and_prints_2_mib_finishes(
    daemon: DaemonProcess,
) -> None:
    run_id = start(daemon, agent("firehose.py", "2"), prompt="p" * PROMPT_BYTES)
    run = daemon.wait_for_run(run_id, timeout=60)
    assert run.status == "completed"
    assert output_of(daemon, run_id).count("y" * 1023 + "\n") == 2 * 1024
    note = output_of(daemon, run_id, stream="orca")
    assert "the agent exited without reading" in note and "orcad dropped them" in note


def test_an_answer_to_an_agent_that_does_not_read_returns_at_once_and_is_recorded(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    # The prompt fills the agent's pipe; the answer cannot follow it until the agent reads.
    run_id = start(daemon, agent("deaf_asker.py", str(tmp_path), "1"), prompt="p" * 100_000)
    wait_until(lambda: pending_id(daemon, run_id) == "q1", what="the question")
    done = daemon.orca("answer", run_id, "-", input="x" * ANSWER_CHARS)
    assert (done.returncode, done.stderr) == (0, "")
    assert "has not read its input yet" in done.stdout
    [answered] = of_type(daemon, run_id, "question_answered")
    assert (answered["request_id"], answered["answers"]) == ("q1", {"a1": ["x" * ANSWER_CHARS]})
    assert daemon.status(run_id).runs[0].status == "running"  # orcad keeps serving
    (tmp_path / "done").touch()
    assert daemon.wait_for_run(run_id).status == "completed"
    assert "the agent exited without reading" in output_of(daemon, run_id, stream="orca")


def test_answers_an_agent_never_reads_are_refused_past_a_bound_and_nothing_is_recorded(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    count, per_round = 24, 9  # 24 x 900 kB: more than orcad keeps for an agent (16 MiB)
    run_id = start(daemon, agent("deaf_asker.py", str(tmp_path), str(count), str(per_round)))
    texts = {f"a{i}": ["x" * ANSWER_CHARS] for i in range(1, per_round + 1)}
    refusal: RequestFailed | None = None
    with daemon.client() as client:
        for number in range(1, count + 1):
            request_id = f"q{number}"
            wait_until(lambda: pending_id(daemon, run_id) == request_id, what=request_id)  # noqa: B023
            answer = Answer(run_id=run_id, answers=texts, answered_by="test")
            try:
                result: AnswerResult = client.request(answer)
            except RequestFailed as exc:
                refusal = exc
                break
            assert result.delivered is False
            (tmp_path / f"next{number + 1}").touch()
    assert refusal is not None and refusal.code == "invalid_state"
    assert "has not read what orcad already sent it" in str(refusal)
    answered = [e["request_id"] for e in of_type(daemon, run_id, "question_answered")]
    assert answered == [f"q{n}" for n in range(1, number)]
    assert pending_id(daemon, run_id) == f"q{number}"  # still waiting, nothing lost
    for later in range(number + 1, count + 1):
        (tmp_path / f"next{later}").touch()
    (tmp_path / "done").touch()
    assert daemon.wait_for_run(run_id).status == "completed"
