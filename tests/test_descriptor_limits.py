"""orcad raises its own open-files limit (libzmq aborts when accept runs out of descriptors), but
the processes it starts get the limit orcad was given: programs that use select() need < 1024."""

from __future__ import annotations

import resource
from collections.abc import Callable

from conftest import DaemonProcess, output_of, wait_until

from orca_client.client import Client, RequestFailed
from orca_client.wire import Cancel, RunStarted, StartRun

GIVEN = 256


def given_limit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (GIVEN, hard))


def soft_limit_of(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as limits:
        line = next(line for line in limits if line.startswith("Max open files"))
    return int(line.split()[3])


def test_orcad_raises_its_own_limit_and_agents_get_the_one_it_was_given(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon()
    daemon.start(preexec_fn=given_limit)
    assert daemon.process is not None
    assert soft_limit_of(daemon.process.pid) > GIVEN
    with daemon.client() as client:
        started: RunStarted = client.request(
            StartRun(cwd=str(daemon.home), command=["sh", "-c", "ulimit -n"])
        )
    daemon.wait_for_run(started.run_id)
    assert output_of(daemon, started.run_id).strip() == str(GIVEN)


def hard_limit(limit: int) -> Callable[[], None]:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return lower


def test_new_runs_are_refused_clearly_before_descriptors_run_out_and_taken_again_after(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    """Issue 14: under a hard limit it cannot raise, orcad refuses a run that would bring it
    near the limit (naming the limit and what to do) and stays up; sessions that end make room.
    Before, sessions took descriptors until libzmq or a spawn failed somewhere in the middle."""
    daemon = make_daemon()
    daemon.start(preexec_fn=hard_limit(GIVEN))
    assert daemon.process is not None
    assert soft_limit_of(daemon.process.pid) == GIVEN
    started: list[str] = []
    refusal = None
    with daemon.client() as client:
        for _ in range(GIVEN):
            try:
                reply: RunStarted = client.request(
                    StartRun(cwd=str(daemon.home), command=["sleep", "600"])
                )
            except RequestFailed as exc:
                refusal = exc
                break
            started.append(reply.run_id)
        assert refusal is not None, "no run was refused"
        assert refusal.code == "busy"
        assert f"of its {GIVEN} open files in use" in str(refusal)
        assert "LimitNOFILE" in str(refusal)
        assert 5 <= len(started) < GIVEN // 2
        for run_id in started:
            wait_until(lambda r=run_id: daemon.status(r).runs[0].status == "running", "running")
        assert len(daemon.status().runs) == len(started)  # every one admitted runs
        ending = started[: len(started) // 2]
        for run_id in ending:
            client.request(Cancel(run_id=run_id))
        for run_id in ending:
            daemon.wait_for_run(run_id)
        wait_until(lambda: _admitted(client, daemon), what="a new run admitted once sessions ended")
    assert daemon.process.poll() is None


def _admitted(client: Client, daemon: DaemonProcess) -> bool:
    try:
        client.request(StartRun(cwd=str(daemon.home), command=["true"]))
    except RequestFailed as exc:
        assert exc.code == "busy", exc
        return False
    return True
