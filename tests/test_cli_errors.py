"""The real `orca` executable meets bad input and bad homes with one line and its exit status,
never a traceback: 2 bad usage (arguments, working directory or environment that are not UTF-8),
1 refused (a home it cannot read, or one that is not private, for `orca daemon start`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from conftest import DaemonProcess, as_an_ordinary_user, short_tempdir


def orca(
    args: Sequence[str | bytes],
    env: dict[str, str],
    *,
    cwd: str | bytes | None = None,
    ordinary: bool = False,
) -> tuple[int, str]:
    """Run the real `orca`; its exit status and stderr, which must be one line, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "orca_client.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        timeout=60,
        preexec_fn=as_an_ordinary_user if ordinary else None,
    )
    stderr = result.stderr.decode(errors="replace")
    assert "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    return result.returncode, stderr


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCA_", "XDG_"))}
    return {**env, **extra}


@pytest.fixture
def scratch() -> Iterator[Path]:
    base = short_tempdir("orca-err-")
    yield base
    for path in (base, *base.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o700)
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (["run", "--title", b"\xff", "--", "true"], "after --title"),
        (["run", "--", "echo", b"caf\xe9"], "argument 4"),
        ([b"status\xff"], "argument 1"),
        (["answer", "abcd", b"\xfe\xff"], "argument 3"),
    ],
)
def test_arguments_that_are_not_utf8_are_bad_usage(
    daemon: DaemonProcess, args: list[str | bytes], where: str
) -> None:
    code, stderr = orca(args, daemon.env)
    assert code == 2
    assert "not valid UTF-8" in stderr and where in stderr


def test_a_working_directory_that_is_not_utf8_is_bad_usage(
    daemon: DaemonProcess, scratch: Path
) -> None:
    odd = os.path.join(os.fsencode(scratch), b"caf\xe9")
    os.mkdir(odd)
    code, stderr = orca(["run", "--", "true"], daemon.env, cwd=odd)
    assert code == 2
    assert "working directory" in stderr and "not valid UTF-8" in stderr


def test_an_agent_path_in_the_environment_that_is_not_utf8_is_bad_usage(
    daemon: DaemonProcess,
) -> None:
    env_bytes = {os.fsencode(k): os.fsencode(v) for k, v in daemon.env.items()}
    env_bytes[b"ORCA_CODEX_PATH"] = b"/opt/caf\xe9/codex"
    result = subprocess.run(
        [sys.executable, "-m", "orca_client.cli", "run", "--agent", "codex", "hi"],
        env=env_bytes,
        capture_output=True,
        timeout=60,
    )
    stderr = result.stderr.decode(errors="replace")
    assert "Traceback" not in stderr
    assert result.returncode == 2
    assert "ORCA_CODEX_PATH" in stderr and "not valid UTF-8" in stderr


def test_daemon_start_refuses_a_home_whose_name_is_not_utf8(scratch: Path) -> None:
    home = os.path.join(os.fsencode(scratch), b"caf\xe9")
    env = {os.fsencode(k): os.fsencode(v) for k, v in clean_env().items()}
    result = subprocess.run(
        [sys.executable, "-m", "orca_client.cli", "daemon", "start"],
        env={**env, b"ORCA_HOME": home},
        capture_output=True,
        timeout=60,
    )
    stderr = result.stderr.decode(errors="replace")
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert result.returncode == 1
    assert "not valid UTF-8" in stderr
    assert not os.path.exists(home)


def test_an_unreadable_orca_home_is_refused(scratch: Path) -> None:
    home = scratch / "h"
    home.mkdir(mode=0o700)
    home.chmod(0o000)
    for args in (["status"], ["daemon", "status"], ["daemon", "start"], ["logs", "abcd"]):
        code, stderr = orca(args, clean_env(ORCA_HOME=str(home)), ordinary=True)
        assert code == 1, (args, stderr)
        assert "permission denied" in stderr.lower() and str(home) in stderr


def test_an_unreadable_home_directory_is_refused(scratch: Path) -> None:
    home = scratch / "me"
    home.mkdir(mode=0o700)
    home.chmod(0o000)
    for args in (["status"], ["daemon", "start"]):
        code, stderr = orca(args, clean_env(HOME=str(home)), ordinary=True)
        assert code == 1, (args, stderr)
        assert "permission denied" in stderr.lower() and str(home) in stderr


def test_daemon_start_refuses_a_home_others_can_read(scratch: Path) -> None:
    home = scratch / "h"
    home.mkdir()
    home.chmod(0o755)
    code, stderr = orca(["daemon", "start"], clean_env(ORCA_HOME=str(home)))
    assert code == 1
    assert "0755" in stderr and f"chmod 0700 {home}" in stderr
    assert list(home.iterdir()) == []


def test_daemon_start_refuses_a_home_another_user_owns(scratch: Path) -> None:
    home = scratch / "h"
    home.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(home, 65534, 65534)
    else:
        home = Path("/usr")  # owned by root
    code, stderr = orca(["daemon", "start"], clean_env(ORCA_HOME=str(home)))
    assert code == 1
    assert "owned by uid" in stderr and str(home) in stderr


def test_the_client_library_reports_an_unreadable_home_as_its_own_error(scratch: Path) -> None:
    """Not only the CLI: any caller of `Client` gets an OrcaClientError, not a PermissionError."""
    home = scratch / "h"
    home.mkdir(mode=0o700)
    home.chmod(0o000)
    program = (
        "from orca_client.client import Client, OrcaClientError\n"
        "from orca_client.paths import resolve_paths\n"
        "try:\n"
        "    Client(resolve_paths()).hello()\n"
        "except OrcaClientError as exc:\n"
        "    print('refused:', exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        env=clean_env(ORCA_HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=as_an_ordinary_user,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout.startswith("refused: cannot look for orcad's socket"), result.stdout
    assert "Permission denied" in result.stdout


# ------------------------------------------------------------- errors that say what to do


def orca_lines(args: Sequence[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run the real `orca`; its exit status, stdout and stderr (no traceback)."""
    result = subprocess.run(
        [sys.executable, "-m", "orca_client.cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr


def test_a_run_prefix_under_four_characters_says_the_minimum(daemon: DaemonProcess) -> None:
    run_id = orca_lines(["run", "--", "true"], daemon.env)[1].strip()
    code, stderr = orca(["status", run_id[:3]], daemon.env)
    assert code == 1
    assert f"no run with id '{run_id[:3]}'" in stderr and "at least 4 characters" in stderr
    assert orca_lines(["status", run_id[:4]], daemon.env)[0] == 0


def test_cancel_of_an_unknown_session_lists_the_runs_sessions(daemon: DaemonProcess) -> None:
    run_id = orca_lines(["run", "--", "sleep", "30"], daemon.env)[1].strip()
    code, stderr = orca(["cancel", run_id, "--session", "3"], daemon.env)
    assert code == 1
    assert f"run {run_id} has no session '3'; its sessions: {run_id}.1" in stderr
    assert orca_lines(["cancel", run_id], daemon.env)[0] == 0


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (["cancel", "abcd", "--sesion", "3"], "usage: orca cancel "),
        (["daemon", "stop", "--forse"], "usage: orca daemon stop "),
        (["plan", "validate", "p.json", "--jsn"], "usage: orca plan validate "),
        (["status", "--bogus"], "usage: orca status "),
    ],
)
def test_a_mistyped_flag_shows_the_usage_of_its_subcommand(
    daemon: DaemonProcess, args: list[str], usage: str
) -> None:
    code, _, stderr = orca_lines(args, daemon.env)
    assert code == 2
    assert stderr.startswith(usage), stderr
    assert f"unrecognized arguments: {args[-2] if args[-1] == '3' else args[-1]}" in stderr


def test_an_agent_and_a_command_are_exclusive(daemon: DaemonProcess) -> None:
    for args in (
        ["run", "--agent", "codex", "fix it", "--", "python3", "agent.py"],
        ["run", "--agent", "codex", "--prompt", "fix it", "--", "python3", "agent.py"],
    ):
        code, stderr = orca(args, daemon.env)
        assert code == 2
        assert "exclusive" in stderr and "-- python3 agent.py" in stderr
    assert daemon.status().runs == []


def test_daemon_start_shows_this_attempts_errors_only_and_all_of_them(scratch: Path) -> None:
    home = scratch / "h"
    home.mkdir(mode=0o700)
    env = clean_env(ORCA_HOME=str(home))
    (home / "config.toml").write_text("[daemon]\nfirst_mistake = 1\n")
    code, _, stderr = orca_lines(["daemon", "start"], env)
    assert code == 1 and "first_mistake" in stderr

    (home / "config.toml").write_text(
        "[daemon]\nsecond_mistake = 1\n[orchestration]\nheartbeat_seconds = 0\n"
    )
    code, _, stderr = orca_lines(["daemon", "start"], env)
    assert code == 1
    assert "first_mistake" not in stderr  # an earlier attempt's lines stay in orcad.log
    assert "key daemon.second_mistake: unknown key" in stderr
    assert "key orchestration.heartbeat_seconds: must be between" in stderr
    assert "first_mistake" in (home / "orcad.log").read_text()


PLAN_WITH_ERRORS = {
    "title": "t",
    "tasks": [
        {"id": "a", "prompt": " "},
        {"id": "a", "prompt": "p", "max_retries": 99},
        {"id": "b", "prompt": "p", "depends_on": ["zz"]},
    ],
}


def test_plan_validate_reports_every_error_at_once(daemon: DaemonProcess, scratch: Path) -> None:
    path = scratch / "plan.json"
    path.write_text(json.dumps(PLAN_WITH_ERRORS))
    code, _, stderr = orca_lines(["plan", "validate", str(path)], daemon.env)
    assert code == 2
    for error in (
        "task a has an empty prompt",
        "task id 'a' is used twice",
        "task a: max_retries must be between 0 and 20",
        "unknown dependencies: b -> zz",
        "4 errors",
    ):
        assert error in stderr, stderr
    shapes = {"title": "t", "tasks": [{"id": "a"}, {"id": "b", "prompt": "p", "colour": 1}]}
    path.write_text(json.dumps(shapes))
    code, _, stderr = orca_lines(["plan", "validate", str(path)], daemon.env)
    assert code == 2
    assert "tasks[0]: Object missing required field `prompt`" in stderr
    assert "tasks[1]: Object contains unknown field `colour`" in stderr


def test_plan_validate_flags_an_agent_that_does_not_exist(
    make_daemon: Callable[..., DaemonProcess], scratch: Path
) -> None:
    daemon = make_daemon()
    plan = {
        "title": "t",
        "tasks": [
            {"id": "a", "prompt": "p", "agent": "codex"},
            {"id": "b", "prompt": "p", "agent": "streamer"},
        ],
    }
    path = scratch / "plan.json"
    path.write_text(json.dumps(plan))
    daemon.home.mkdir(mode=0o700)

    # orcad down, no config file: the built-in agents.
    code, _, stderr = orca_lines(["plan", "validate", str(path)], daemon.env)
    assert code == 2
    assert "task b: no agent named 'streamer' in the built-in agents" in stderr
    # orcad down: the config file's agents.
    daemon.paths.config_file.write_text("[agents.streamer]\ncommand = ['x']\n")
    code, stdout, stderr = orca_lines(["plan", "validate", str(path)], daemon.env)
    assert code == 0, stderr
    assert "valid: 2 tasks" in stdout and f"against {daemon.paths.config_file}" in stderr
    # orcad down and the config file unreadable as TOML: it says it could not check.
    daemon.paths.config_file.write_text("[agents.streamer\n")
    code, stdout, stderr = orca_lines(["plan", "validate", str(path)], daemon.env)
    assert code == 0 and "valid" in stdout
    assert "agents not checked" in stderr

    # orcad up: its configuration, which lacks what config.toml gained since it started.
    daemon.paths.config_file.write_text("")
    daemon.start()
    daemon.paths.config_file.write_text("[agents.streamer]\ncommand = ['x']\n")
    code, _, stderr = orca_lines(["plan", "validate", str(path)], daemon.env)
    assert code == 2
    assert "task b: no agent named 'streamer' in orcad's configuration" in stderr
    assert "orcad has not loaded it: orca daemon reload" in stderr
    assert orca_lines(["daemon", "reload"], daemon.env)[0] == 0
    code, _, stderr = orca_lines(["plan", "validate", str(path)], daemon.env)
    assert code == 0 and "agents checked against orcad's configuration" in stderr
