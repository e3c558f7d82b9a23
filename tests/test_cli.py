"""The `orca` CLI as a user runs it: real processes against a real orcad."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, DaemonProcess, agent

SUBCOMMANDS = ["run", "status", "watch", "logs", "cancel", "daemon"]


@pytest.mark.parametrize("args", [[], *[[name] for name in SUBCOMMANDS], ["daemon", "start"]])
def test_every_command_has_help_with_exit_statuses(daemon: DaemonProcess, args: list[str]) -> None:
    result = daemon.orca(*args, "--help")
    assert result.returncode == 0
    assert "usage: orca" in result.stdout
    if args != ["daemon", "start"]:
        assert "exit status" in result.stdout


def test_run_wait_streams_output_and_exits_by_outcome(daemon: DaemonProcess) -> None:
    done = daemon.orca("run", "--wait", "--prompt", "check", "--", *agent("reviewer.py"))
    assert done.returncode == 0, done.stderr
    assert "reviewing for: check" in done.stdout
    assert "progress notes can go to stderr" in done.stderr
    assert "completed" in done.stderr
    failed = daemon.orca("run", "--wait", "--", *agent("failing.py"))
    assert failed.returncode == 4
    assert "1 test failed: test_parse" in failed.stderr


def test_run_prints_the_run_id_and_json(daemon: DaemonProcess) -> None:
    plain = daemon.orca("run", "--title", "t1", "--", "true")
    assert plain.returncode == 0
    run_id = plain.stdout.strip()
    assert daemon.wait_for_run(run_id).title == "t1"
    as_json = daemon.orca("run", "--json", "--", "true")
    assert json.loads(as_json.stdout)["run_id"] != run_id


def test_run_resolves_the_program_on_the_callers_path(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "my-agent"
    tool.write_text('#!/bin/sh\necho \'{"type":"result","outcome":"done","summary":"found"}\'\n')
    tool.chmod(0o755)
    env_path = f"{bin_dir}:/usr/bin:/bin"
    result = subprocess.run(
        [sys.executable, "-m", "orca_client.cli", "run", "--wait", "--", "my-agent"],
        env={**daemon.env, "PATH": env_path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "found" in result.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run"], "give the command to run"),
        (["run", "--", "no-such-program-anywhere"], "command not found"),
        (["frobnicate"], "invalid choice"),
        (["status", "--bogus"], "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_2(daemon: DaemonProcess, args: list[str], words: str) -> None:
    result = daemon.orca(*args)
    assert result.returncode == 2
    assert words in result.stderr


def test_status_table_detail_and_json(daemon: DaemonProcess) -> None:
    run_id = daemon.orca("run", "--title", "review it", "--", *agent("reviewer.py")).stdout.strip()
    daemon.wait_for_run(run_id)
    table = daemon.orca("status")
    assert table.returncode == 0
    assert run_id in table.stdout and "completed" in table.stdout and "review it" in table.stdout
    detail = daemon.orca("status", run_id[:8])
    assert f"session  {run_id}.1" in detail.stdout
    assert "summary  reviewed" in detail.stdout
    data = json.loads(daemon.orca("status", run_id, "--json").stdout)
    assert data["status"] == "completed"
    assert data["sessions"][0]["session_id"] == f"{run_id}.1"
    everything = json.loads(daemon.orca("status", "--json").stdout)
    assert [r["run_id"] for r in everything["runs"]] == [run_id]


def test_status_of_an_unknown_run_exits_1(daemon: DaemonProcess) -> None:
    result = daemon.orca("status", "ffffffffffff")
    assert result.returncode == 1
    assert "not_found" in result.stderr


def test_logs_print_output_by_stream(daemon: DaemonProcess) -> None:
    run_id = daemon.orca("run", "--", *agent("reviewer.py")).stdout.strip()
    daemon.wait_for_run(run_id)
    logs = daemon.orca("logs", run_id)
    assert logs.returncode == 0
    assert "a plain line is output too\n" in logs.stdout
    assert "progress notes can go to stderr\n" in logs.stderr
    lines = [json.loads(line) for line in daemon.orca("logs", run_id, "--json").stdout.splitlines()]
    assert all(json.loads(json.dumps(r["event"]))["type"] == "output_appended" for r in lines)


def test_logs_follow_ends_when_the_run_ends(daemon: DaemonProcess) -> None:
    run_id = daemon.orca("run", "--", *agent("long_task.py", "1")).stdout.strip()
    follow = daemon.orca("logs", run_id, "--follow")
    assert follow.returncode == 0
    assert "step 1\n" in follow.stdout


def test_cancel_from_the_cli(daemon: DaemonProcess) -> None:
    run_id = daemon.orca("run", "--", *agent("long_task.py", "60")).stdout.strip()
    daemon.wait_for_run(run_id, frozenset({"running"}))
    result = daemon.orca("cancel", run_id, "--reason", "changed my mind")
    assert result.returncode == 0
    assert "cancelled" in result.stdout
    assert daemon.wait_for_run(run_id).status == "cancelled"
    again = daemon.orca("cancel", run_id, "--json")
    assert json.loads(again.stdout) == {
        "run_id": run_id,
        "status": "cancelled",
        "already_terminal": True,
    }


def test_watch_shows_live_events_and_survives_a_restart(daemon: DaemonProcess) -> None:
    watch = subprocess.Popen(
        [sys.executable, "-m", "orca_client.cli", "watch", "--after", "0", "--json"],
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        daemon.orca("run", "--title", "before", "--", "true")
        assert _read_until(watch, '"title":"before"')
        daemon.stop()
        daemon.start()
        daemon.orca("run", "--title", "after", "--", "true")
        lines = _read_until(watch, '"title":"after"')
        assert lines
    finally:
        watch.terminate()
        _, stderr = watch.communicate(timeout=10)
    assert "orcad restarted; resuming after position" in stderr or "come back" in stderr


def _read_until(process: subprocess.Popen[str], needle: str, timeout: float = 30.0) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not seen in {lines}")


def test_without_a_daemon_the_cli_says_how_to_start_it(
    make_daemon: object, orca_home: Path
) -> None:
    env_home = {"ORCA_HOME": str(orca_home)}
    result = subprocess.run(
        [sys.executable, "-m", "orca_client.cli", "status"],
        env={**_base_env(), **env_home},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 3
    assert "orca daemon start" in result.stderr


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("ORCA_")}


def test_the_client_package_never_imports_the_daemon() -> None:
    code = (
        "import sys, orca_client.cli, orca_client.client, orca_client.render, "
        "orca_client.render_events, "
        "orca_client.cli.daemon, orca_client.wire, orca_client.paths; "
        "bad = [m for m in sys.modules if m.startswith('orca_daemon')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    for source in (REPO / "orca_client").rglob("*.py"):
        assert "import orca_daemon" not in source.read_text()
        assert "from orca_daemon" not in source.read_text()


def test_status_lists_live_runs_and_the_newest_ended_ones(daemon: DaemonProcess) -> None:
    from orca_client.views import StatusResult
    from orca_client.wire import StartRun, Status

    with daemon.client() as client:
        live = client.request(StartRun(command=agent("long_task.py", "60"), cwd=str(daemon.home)))
        ended = [client.request(StartRun(command=["true"], cwd=str(daemon.home))) for _ in range(4)]
        for started in ended:
            daemon.wait_for_run(started.run_id)
        few: StatusResult = client.request(Status(ended=2))
    assert [r.run_id for r in few.runs] == [live.run_id, ended[2].run_id, ended[3].run_id]
    assert few.ended_not_shown == 2
    assert {s.run_id for s in few.sessions} == {r.run_id for r in few.runs}
    assert len(json.loads(daemon.orca("status", "--all", "--json").stdout)["runs"]) == 5
    daemon.orca("cancel", live.run_id)
