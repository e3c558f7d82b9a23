"""orcad with its log in PostgreSQL (`ORCA_LOG_URL`, `[log] url`), against a real server.

The daemon-level contract on this log is also run by the tests that take `any_log_env` (kill -9
at random moments: tests/test_durability.py). Here: what a user sees of the setting itself — a
run end to end, `orca daemon status` naming the daemon and the database without its password,
the runs still there for the next daemon, a second daemon on the same log refused (naming the
first) until runs have owners, and a bad URL or an unreachable server refused at start.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import DaemonProcess, run_orca, short_tempdir

SECRET = "pg-s3cret-word"


@pytest.fixture
def log_env(postgres_url: str) -> dict[str, str]:
    """Every daemon of these tests keeps its log in the test's database; its URL carries a
    password (the private server trusts loopback, so any password does) that must not show."""
    return {"ORCA_LOG_URL": postgres_url.replace("orca@", f"orca:{SECRET}@")}


@pytest.fixture
def other_home() -> Iterator[Path]:
    base = short_tempdir()
    yield base / "h"
    shutil.rmtree(base, ignore_errors=True)


def test_a_run_on_a_postgresql_log_and_what_status_says(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = make_daemon(extra_env={"ORCA_CONFIG": "/nonexistent.toml"}).start()
    started = daemon.orca("run", "--title", "echoes", "--", "echo", "hello")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    assert daemon.wait_for_run(run_id).status == "completed"
    logs = daemon.orca("logs", run_id)
    assert "hello" in logs.stdout, logs

    shown = daemon.orca("daemon", "status")
    assert shown.returncode == 0, shown.stderr
    place = daemon.env["ORCA_LOG_URL"].replace(f":{SECRET}", "")
    host_port = place.split("@")[1].split("/")[0]
    assert f"  log      postgresql://orca@{host_port}/" in shown.stdout, shown.stdout
    assert "  name     " in shown.stdout
    assert SECRET not in shown.stdout

    assert daemon.stop() == 0  # (the stop checks the snapshot against a replay of the log)
    assert SECRET not in daemon.output()
    again = daemon.start()
    runs = again.status().runs
    assert [(r.title, r.status) for r in runs] == [("echoes", "completed")]


def test_a_second_daemon_on_the_same_log_is_refused_naming_the_first(
    make_daemon: Callable[..., DaemonProcess], other_home: Path
) -> None:
    first = make_daemon(extra_env={"ORCA_CONFIG": "/nonexistent.toml"}).start()
    name = first.orca("daemon", "status").stdout.split("  name     ")[1].split()[0]
    run_id = first.orca("run", "--title", "first's", "--", "true").stdout.strip()
    first.wait_for_run(run_id)
    second = DaemonProcess(other_home, extra_env={"ORCA_LOG_URL": first.env["ORCA_LOG_URL"]})
    second.start(wait=False)
    assert second.process is not None
    assert second.process.wait(30) == 1
    said = second.output()
    assert "orcad: refusing to start: the log at postgresql://orca@" in said
    assert f"is in use by orcad {name}: one orcad at a time acts on a log" in said
    assert SECRET not in said

    head = first.status().head_position
    assert first.stop() == 0
    second.start()  # the log is free again, and holds the first daemon's runs
    assert second.status().head_position >= head
    assert [(r.run_id, r.title) for r in second.status().runs] == [(run_id, "first's")]
    assert second.stop() == 0


def test_a_log_url_that_is_not_postgresql_is_a_configuration_error(
    orca_home: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[log]\nurl = "mysql://orca@127.0.0.1/orca"\n')
    env = {"ORCA_HOME": str(orca_home), "ORCA_CONFIG": str(config), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "orca_daemon"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "log.url: must be a postgresql:// URL" in result.stderr


def test_an_unreachable_server_is_refused_at_start_without_the_password(
    orca_home: Path,
) -> None:
    env = {
        "ORCA_HOME": str(orca_home),
        "ORCA_CONFIG": "/nonexistent.toml",
        "ORCA_LOG_URL": f"postgresql://orca:{SECRET}@127.0.0.1:1/orca?connect_timeout=2",
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-m", "orca_daemon"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stderr
    assert (
        "orcad: refusing to start: cannot open the log at postgresql://orca@127.0.0.1:1/orca"
        in (result.stderr)
    )
    assert SECRET not in result.stderr
    assert run_orca(env, "status").returncode != 0
