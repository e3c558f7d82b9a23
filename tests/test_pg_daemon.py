"""orcad with its log in PostgreSQL (`ORCA_LOG_URL`, `[log] url`), against a real server.

The daemon-level contract on this log is also run by the tests that take `any_log_env` (kill -9
at random moments: tests/test_durability.py). Here: what a user sees of the setting itself — a
run end to end, `orca daemon status` naming the daemon and the database without its password,
the runs still there for the next daemon; three daemons on one log, each showing every run with
its owner and acting for its own runs only, answers and cancels asked of any daemon carried out
by the owner (a secret answer refused elsewhere, naming the owner); a second daemon with a name
already in use refused; a bad URL or an unreachable server refused.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from conftest import DaemonProcess, agent, run_orca, short_tempdir, wait_until
from support.fanouts import fan_agent, start_debug
from support.homes import write_config
from support.hooks import hooks_config
from support.processes import kill_processes_with_env
from support.questions import DONE, q
from support.snapshots import read_log

from orca_client.plan import Plan, PlanTask
from orca_client.wire import RunStarted, StartPlan

SECRET = "pg-s3cret-word"


@pytest.fixture
def log_env(postgres_url: str) -> dict[str, str]:
    """Every daemon of these tests keeps its log in the test's database; its URL carries a
    password (the private server trusts loopback, so any password does) that must not show."""
    return {"ORCA_LOG_URL": postgres_url.replace("orca@", f"orca:{SECRET}@")}


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


def test_three_daemons_share_one_log_and_each_acts_for_its_own_runs(
    make_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    url = {"ORCA_LOG_URL": ""}
    homes = [short_tempdir() for _ in range(2)]
    try:
        a = make_daemon(extra_env={"ORCA_CONFIG": "/nonexistent.toml"}).start()
        url["ORCA_LOG_URL"] = a.env["ORCA_LOG_URL"]
        b = DaemonProcess(homes[0] / "h", extra_env={**url, "ORCA_CONFIG": "/nonexistent.toml"})
        c = DaemonProcess(homes[1] / "h", extra_env={**url, "ORCA_CONFIG": "/nonexistent.toml"})
        b.start()
        c.start()
        names = [d.name() for d in (a, b, c)]
        assert len(set(names)) == 3, names

        long_run = a.orca("run", "--title", "long on a", "--", "sleep", "30").stdout.strip()
        quick = b.orca("run", "--title", "quick on b", "--", "echo", "from b").stdout.strip()
        assert b.wait_for_run(quick).status == "completed"
        a.wait_for_run(long_run, frozenset({"running"}))

        def owners(daemon: DaemonProcess) -> dict[str, str | None]:
            return {r.run_id: r.owner for r in daemon.status().runs}

        expected = {long_run: names[0], quick: names[1]}
        for daemon in (a, b, c):  # every daemon shows every run, with its owner
            wait_until(lambda d=daemon: owners(d) == expected, f"{daemon.home}'s status")
        logs = c.orca("logs", quick)
        assert "from b" in logs.stdout, logs
        table = c.orca("status").stdout.splitlines()
        assert table[0].split()[:4] == ["RUN", "STATUS", "ACTIVITY", "OWNER"], table
        assert any(line.startswith(long_run) and names[0] in line for line in table), table
        assert any(line.startswith(quick) and names[1] in line for line in table), table
        detail = c.orca("status", long_run).stdout
        assert f"owner    orcad {names[0]} (its sessions run there)" in detail, detail

        # An answer given on C to A's run reaches A's agent; a secret one is refused on C.
        script = {
            "steps": [
                {"ask": [q("color")]},
                {"ask": [q("token", isSecret=True)]},
                {"say": "thanks"},
                DONE,
            ]
        }
        asking = a.orca("run", "--title", "asks on a", "--", *agent("q_ask.py", json.dumps(script)))
        asker = asking.stdout.strip()
        a.wait_for_run(asker, frozenset({"waiting_for_answer"}))
        c.wait_for_run(asker, frozenset({"waiting_for_answer"}))
        answered = c.orca("answer", asker, "blue")
        assert answered.returncode == 0, answered.stderr
        echo = '"color": {"answers": ["blue"]}'
        wait_until(lambda: echo in a.orca("logs", asker).stdout, "A's agent to get the answer")

        c.wait_for_run(asker, frozenset({"waiting_for_answer"}))  # the secret question
        secret = b.orca("answer", asker, "s3cr3t-value")
        assert secret.returncode != 0
        assert "is secret, and a secret answer never goes through the log: answer it on " in (
            secret.stderr
        )
        assert f"orcad {names[0]}, which owns the run" in secret.stderr
        assert a.orca("answer", asker, "s3cr3t-value").returncode == 0
        assert a.wait_for_run(asker).status == "completed"
        assert "s3cr3t-value" not in str(read_log(a.log_source))

        # A cancel asked of B, for A's run, is carried out by A.
        cancelled = b.orca("cancel", long_run)
        assert cancelled.returncode == 0, cancelled.stderr
        for daemon in (a, b, c):
            daemon.wait_for_run(long_run, frozenset({"cancelled"}))
        relayed = [e.type for e in read_log(a.log_source) if e.stream == f"run-{long_run}"]
        assert relayed.count("cancel_requested") == relayed.count("relayed_request_settled") == 1
        for daemon in (b, c, a):
            assert daemon.stop() == 0  # (each stop checks its snapshot against a replay)
    finally:
        for home in homes:
            kill_processes_with_env("ORCA_HOME", str(home / "h"))
            shutil.rmtree(home, ignore_errors=True)


def test_a_second_daemon_with_the_same_name_is_refused_naming_the_first(
    make_daemon: Callable[..., DaemonProcess], other_home: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[daemon]\nname = "build-1"\n')
    first = make_daemon(extra_env={"ORCA_CONFIG": str(config)}).start()
    assert first.name() == "build-1"
    second = DaemonProcess(
        other_home,
        extra_env={"ORCA_LOG_URL": first.env["ORCA_LOG_URL"], "ORCA_CONFIG": str(config)},
    )
    second.start(wait=False)
    assert second.process is not None
    assert second.process.wait(30) == 1
    said = second.output()
    assert "orcad: refusing to start: a daemon named build-1 runs on " in said
    assert f"state directory {first.home}) and shares the log at postgresql://orca@" in said
    assert "give this one another name ([daemon] name in config.toml)" in said
    assert SECRET not in said


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


def test_a_fanout_on_a_answered_from_b_watched_from_c_and_a_plan_on_b(
    make_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    """Three daemons, one log. A fan-out started on A runs its workers on A; one of them asks a
    question, answered from B; C watches it all; the synthesis happens once, on A. A plan
    started on B runs on B, and every daemon shows both runs, with their owners."""
    asker = agent("q_ask.py", json.dumps({"steps": [{"ask": [q("scope")]}, DONE]}))
    config = (
        '[agents.asker]\nadapter = "command"\n'
        f"command = {json.dumps(asker)}\n"
        '[agents.quick]\nadapter = "command"\n'
        f"command = {json.dumps(fan_agent(say=['finding: quick'], summary='quick'))}\n"
    )
    homes = [short_tempdir() for _ in range(2)]
    watching: subprocess.Popen[bytes] | None = None
    try:
        a = make_daemon()
        write_config(a.home, config)
        a.start()
        url = {"ORCA_LOG_URL": a.env["ORCA_LOG_URL"]}
        b, c = (DaemonProcess(home / "h", extra_env=url) for home in homes)
        for daemon in (b, c):
            write_config(daemon.home, config)
            daemon.start()
        names = [d.name() for d in (a, b, c)]

        fanout = start_debug(a, ["asker", "quick"]).run_id
        watched = tmp_path / "watched.jsonl"
        with open(watched, "w") as out:
            watching = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "orca_client.cli",
                    "watch",
                    "--after",
                    "0",
                    "--json",
                    fanout,
                ],
                env=c.env,
                stdout=out,
                stderr=subprocess.DEVNULL,
            )
        b.wait_for_run(fanout, frozenset({"waiting_for_answer"}))
        answered = b.orca("answer", fanout, "the cache layer")
        assert answered.returncode == 0, answered.stderr

        plan = Plan(title="on b", tasks=[PlanTask(id="only", prompt="do it", agent="quick")])
        with b.client() as client:
            planned: RunStarted = client.request(StartPlan(cwd=str(tmp_path), plan=plan))

        for daemon in (a, b, c):
            assert daemon.wait_for_run(fanout, timeout=60).status == "completed"
            assert daemon.wait_for_run(planned.run_id, timeout=60).status == "completed"
            owners = {r.run_id: r.owner for r in daemon.status().runs}
            assert owners == {fanout: names[0], planned.run_id: names[1]}
        sessions = a.status(fanout).sessions
        assert sorted((s.role, s.agent) for s in sessions) == [
            ("orchestrator", "synthesizer"),
            ("worker", "asker"),
            ("worker", "quick"),
        ]
        events = [e.type for e in read_log(a.log_source) if e.stream == f"run-{fanout}"]
        assert events.count("orchestrator_triggered") == 1
        assert events.count("answer_requested") == events.count("question_answered") == 1

        def seen_on_c() -> list[str]:
            lines = watched.read_text().splitlines()
            return [json.loads(line)["event"]["type"] for line in lines if line.strip()]

        wait_until(lambda: "orchestration_finished" in seen_on_c(), "C's watch to see the end")
        for kind in ("question_asked", "question_answered", "orchestrator_triggered"):
            assert kind in seen_on_c(), (kind, seen_on_c())
        for daemon in (b, c, a):
            assert daemon.stop() == 0
    finally:
        if watching is not None and watching.poll() is None:
            watching.kill()
        for home in homes:
            kill_processes_with_env("ORCA_HOME", str(home / "h"))
            shutil.rmtree(home, ignore_errors=True)


def test_agents_and_hooks_never_see_the_database_or_its_password(
    make_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    """orcad's log URL and libpq's password variables stay orcad's: an agent's output is
    recorded, and an agent must not reach the log but through orcad."""
    hook_env = tmp_path / "hook.env"
    daemon = make_daemon(
        extra_env={"PGPASSWORD": SECRET, "ORCA_CONFIG": str(tmp_path / "config.toml")}
    )
    (tmp_path / "config.toml").write_text(
        hooks_config(on_complete=["/bin/sh", "-c", f"env > {hook_env}"])
    )
    daemon.start()
    run_id = daemon.orca("run", "--", "env").stdout.strip()
    assert daemon.wait_for_run(run_id).status == "completed"
    printed = daemon.orca("logs", run_id).stdout
    assert "ORCA_HOME=" in printed  # (the agent's environment was printed)
    assert "ORCA_LOG_URL" not in printed and "PGPASSWORD" not in printed
    assert SECRET not in printed
    wait_until(
        lambda: "ORCA_HOOK=" in (hook_env.read_text() if hook_env.exists() else ""), "the hook"
    )
    seen_by_hook = hook_env.read_text()
    assert SECRET not in seen_by_hook and "ORCA_LOG_URL" not in seen_by_hook


def test_without_psycopg_the_sqlite_log_works_and_a_postgresql_url_says_what_is_missing(
    orca_home: Path, tmp_path: Path
) -> None:
    """psycopg is the `postgres` extra: orcad on its own SQLite file must not need it, and one
    told to use PostgreSQL without it says how to get it."""
    blocked = (
        "import sys; sys.modules['psycopg'] = None; sys.modules['psycopg_pool'] = None; "
        "from orca_daemon.main import main; sys.argv = ['orcad']; sys.exit(main())"
    )
    env = {
        **os.environ,
        "ORCA_HOME": str(orca_home),
        "ORCA_CONFIG": str(tmp_path / "none.toml"),
    }
    env.pop("ORCA_LOG_URL", None)
    daemon = subprocess.Popen([sys.executable, "-c", blocked], env=env, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: run_orca(env, "status").returncode == 0, "orcad without psycopg")
        run_id = run_orca(env, "run", "--", "true").stdout.strip()
        wait_until(lambda: '"completed"' in run_orca(env, "status", run_id, "--json").stdout)
    finally:
        daemon.terminate()
        daemon.wait(30)
    env["ORCA_LOG_URL"] = "postgresql://orca@127.0.0.1:1/orca"
    refused = subprocess.run(
        [sys.executable, "-c", blocked], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1
    assert "pip install 'orca[postgres]'" in refused.stderr, refused.stderr


def test_orcad_still_stops_when_its_database_is_gone(
    make_daemon: Callable[..., DaemonProcess], postgres_server_url: str, postgres_url: str
) -> None:
    """The database goes away (dropped, here) under a running orcad: asked to stop, it gives up
    on what it can no longer record, within bounded waits, and exits cleanly rather than
    hanging until systemd kills it."""
    daemon = make_daemon(extra_env={"ORCA_CONFIG": "/nonexistent.toml"}).start()
    run_id = daemon.orca("run", "--", "true").stdout.strip()
    daemon.wait_for_run(run_id)
    name = postgres_url.rsplit("/", 1)[1]
    with psycopg.connect(postgres_server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)'.encode())
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=50) == 0  # (systemd's TimeoutStopSec is 60)
    said = daemon.output()
    assert "the log cannot be written: cannot reach PostgreSQL at postgresql://orca@" in said
    assert "INFO orcad: stopped" in said
