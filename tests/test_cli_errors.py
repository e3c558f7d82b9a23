"""The real `orca` executable meets bad input and bad homes with one line and its exit status,
never a traceback: 2 bad usage (arguments, working directory or environment that are not UTF-8),
1 refused (a home it cannot read, or one that is not private, for `orca daemon start`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
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
