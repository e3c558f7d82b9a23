"""Config reload: `orca daemon reload` and SIGHUP make the real orcad read config.toml again.
A file with errors changes nothing and every error is reported (to the caller, or to orcad's log
for SIGHUP); agents and hooks apply at once; `[daemon]` settings are named as needing a restart."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import EXAMPLES, DaemonProcess, wait_until

from orca_client.wire import Reload, ReloadResult

REVIEWER = json.dumps([sys.executable, str(EXAMPLES / "reviewer.py")])


def agents_now(daemon: DaemonProcess) -> list[str]:
    with daemon.client() as client:
        result: ReloadResult = client.request(Reload(dry_run=True))
    return result.agents


def test_an_agent_added_to_config_toml_runs_after_orca_daemon_reload(
    daemon: DaemonProcess,
) -> None:
    missing = daemon.orca("run", "--agent", "streamer", "look")
    assert missing.returncode == 1
    assert "no agent named 'streamer'" in missing.stderr
    assert "orca daemon reload" in missing.stderr  # what to do about it

    daemon.paths.config_file.write_text(f"[agents.streamer]\ncommand = {REVIEWER}\n")
    check = daemon.orca("daemon", "reload", "--check")
    assert check.returncode == 0, check.stderr
    assert "a reload would apply" in check.stdout and "changed: agents.streamer" in check.stdout
    assert "streamer" not in agents_now(daemon)  # --check changes nothing

    reloaded = daemon.orca("daemon", "reload")
    assert reloaded.returncode == 0, reloaded.stderr
    assert f"orcad reloaded {daemon.paths.config_file}" in reloaded.stdout
    assert "changed: agents.streamer" in reloaded.stdout
    ran = daemon.orca("run", "--agent", "streamer", "--wait", "look")
    assert ran.returncode == 0, ran.stderr
    assert "reviewing for: look" in ran.stdout

    again = daemon.orca("daemon", "reload")
    assert again.returncode == 0 and "nothing changed" in again.stdout


def test_a_config_with_errors_is_refused_whole_listing_every_error(daemon: DaemonProcess) -> None:
    daemon.paths.config_file.write_text(f"[agents.streamer]\ncommand = {REVIEWER}\n")
    assert daemon.orca("daemon", "reload").returncode == 0
    daemon.paths.config_file.write_text(
        f"[agents.streamer]\ncommand = {REVIEWER}\n"
        "[agents.other]\ncomand = ['x']\n"
        "[daemon]\nwatchdog_fraction = 5\n"
        "[hooks]\non_complete = 'touch /tmp/never'\n"
    )
    refused = daemon.orca("daemon", "reload")
    assert refused.returncode == 1
    assert "config not reloaded" in refused.stderr and "2 errors" in refused.stderr
    assert "key agents.other.comand: unknown key" in refused.stderr
    assert "key daemon.watchdog_fraction: must be between 0.1 and 0.9" in refused.stderr
    assert "orcad goes on with the configuration it had" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert "other" not in agents_now(daemon) and "streamer" in agents_now(daemon)
    assert daemon.process is not None and daemon.process.poll() is None


def test_sighup_reloads_and_a_bad_file_is_reported_in_the_log(daemon: DaemonProcess) -> None:
    assert daemon.process is not None
    daemon.paths.config_file.write_text(f"[agents.streamer]\ncommand = {REVIEWER}\n")
    os.kill(daemon.process.pid, signal.SIGHUP)
    wait_until(lambda: "streamer" in agents_now(daemon), "the reload SIGHUP asked for")
    assert "SIGHUP: reloaded" in daemon.output()

    daemon.paths.config_file.write_text("[daemon]\nnope = 1\n[agents.x]\nmodel = 3\n")
    os.kill(daemon.process.pid, signal.SIGHUP)
    wait_until(lambda: "not reloaded" in daemon.output(), "the refusal in orcad's log")
    log = daemon.output()
    assert "key daemon.nope: unknown key" in log and "key agents.x.model" in log
    assert daemon.process.poll() is None
    assert "streamer" in agents_now(daemon)
    assert daemon.orca("run", "--agent", "streamer", "--wait", "again").returncode == 0


def test_hooks_change_at_once_and_daemon_settings_need_a_restart(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    marker = tmp_path / "hook-ran"
    hook = json.dumps([sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ran')"])
    daemon.paths.config_file.write_text(
        f"[hooks]\non_complete = {hook}\n[daemon]\noutput_chunk_chars = 4096\n"
    )
    reloaded = daemon.orca("daemon", "reload", "--json")
    assert reloaded.returncode == 0, reloaded.stderr
    result = json.loads(reloaded.stdout)
    assert result["changed"] == ["daemon.output_chunk_chars", "hooks.on_complete"]
    assert result["needs_restart"] == ["daemon.output_chunk_chars"]
    text = daemon.orca("daemon", "reload", "--check").stdout
    assert "nothing changed" not in text  # the [daemon] change waits for a restart
    assert (
        "needs a restart (orca daemon stop; orca daemon start): daemon.output_chunk_chars" in text
    )

    ran = daemon.orca("run", "--wait", "--", sys.executable, str(EXAMPLES / "reviewer.py"))
    assert ran.returncode == 0, ran.stderr
    wait_until(marker.exists, "the hook added by the reload")


def test_the_clients_list_of_built_in_agents_is_orcads() -> None:
    """`orca plan validate` checks offline against it."""
    from orca_client.plan import BUILTIN_AGENT_NAMES
    from orca_daemon.config import BUILTIN_AGENTS

    assert sorted(BUILTIN_AGENT_NAMES) == sorted(BUILTIN_AGENTS)


def test_no_config_file_ends_orcad_on_sighup_or_start(
    daemon: DaemonProcess, make_daemon: Callable[..., DaemonProcess]
) -> None:
    """Files whose errors Python's own parsers raise oddly (a `~user` that does not exist, TOML
    nested too deeply): SIGHUP and `orca daemon reload` say so; a live session goes on."""
    assert daemon.process is not None
    started = daemon.orca("run", "--", "sleep", "300")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    bad_files = {
        '[[repos]]\nname = "web"\npath = "~nosuchuser-orca/web"\n': "nosuchuser-orca",
        "a = " + "[" * 5000 + "]" * 5000 + "\n": "nested too deeply",
    }
    for text, says in bad_files.items():
        daemon.paths.config_file.write_text(text)
        refused = daemon.orca("daemon", "reload")
        assert refused.returncode == 1 and says in refused.stderr, refused.stderr
        assert "internal error" not in refused.stderr
        os.kill(daemon.process.pid, signal.SIGHUP)
        wait_until(lambda says=says: says in daemon.output(), "the refusal in orcad's log")
        assert daemon.process.poll() is None
    assert daemon.status(run_id).runs[0].status == "running"
    daemon.orca("cancel", run_id)
    # And orcad refuses to start on such a file with a message, not a traceback.
    daemon.stop()
    restarted = make_daemon()
    earlier = len(restarted.output())
    restarted.start(wait=False)
    assert restarted.process is not None
    assert restarted.process.wait(30) != 0
    said = restarted.output()[earlier:]
    assert "nested too deeply" in said and "Traceback" not in said, said
