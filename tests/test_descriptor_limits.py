"""orcad raises its own open-files limit (libzmq aborts when accept runs out of descriptors), but
the processes it starts get the limit orcad was given: programs that use select() need < 1024."""

from __future__ import annotations

import resource
from collections.abc import Callable

from conftest import DaemonProcess, output_of

from orca_client.wire import RunStarted, StartRun

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
