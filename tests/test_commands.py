"""One-shot commands (a plan's verify command): exit status, the end of the output, a time limit,
and a cancel of the caller, which kills the command's whole process group and goes on up."""

from __future__ import annotations

from pathlib import Path

import anyio
from support.processes import live_members, wait_for_line

from orca_daemon.sessions.commands import run_command


async def test_exit_status_and_the_end_of_the_output(tmp_path: Path) -> None:
    passed = await run_command("exit 0", str(tmp_path), 30, {})
    assert passed == (True, 0, "", False)
    script = "printf 'x%.0s' $(seq 1 5000); printf END; echo \"$GREETING\" >&2; exit 3"
    failed = await run_command(script, str(tmp_path), 30, {"GREETING": "from stderr"})
    assert failed[:2] == (False, 3) and not failed.timed_out
    assert failed[2] == ("x" * 5000 + "ENDfrom stderr\n")[-2000:]


async def test_the_output_tail_is_bounded_and_whole_characters(tmp_path: Path) -> None:
    script = "printf 'a'; i=0; while [ $i -lt 20000 ]; do printf '\\303\\251'; i=$((i+1)); done"
    result = await run_command(script, str(tmp_path), 30, {}, tail_chars=100)
    assert result == (True, 0, "\u00e9" * 100, False)


async def test_a_command_that_cannot_start_says_why(tmp_path: Path) -> None:
    result = await run_command("true", str(tmp_path / "missing"), 30, {})
    assert (result.passed, result.exit_code, result.timed_out) == (False, None, False)
    assert result.tail.startswith("could not start:")


async def test_out_of_time_its_group_is_killed_even_after_its_shell_exited(
    tmp_path: Path,
) -> None:
    """Its shell exits at once, but what it left in its group holds the output: not ended."""
    script = "echo $$; sleep 60 & exit 0"
    passed, status, tail, timed_out = await run_command(script, str(tmp_path), 0.5, {})
    assert (passed, status, timed_out) == (False, None, True)
    pgid = int(tail.split()[0])
    assert live_members(pgid) == []


async def test_a_cancel_of_the_caller_kills_the_group_and_goes_on_up(tmp_path: Path) -> None:
    started = tmp_path / "started"
    script = f"sleep 60 & sleep 60 & echo $$ > {started}; wait"
    returned = False
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tasks:

            async def cancel_once_started() -> None:
                await wait_for_line(started)
                scope.cancel()

            tasks.start_soon(cancel_once_started)
            await run_command(script, str(tmp_path), 60, {})
            returned = True
    assert scope.cancelled_caught and not returned
    pgid = int(started.read_text())
    assert live_members(pgid) == []
