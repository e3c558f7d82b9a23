"""Which agent CLIs Orca supports, through the real orcad and `orca` CLI: `orca doctor --agents`
(every agent's binary, found as a run from that shell would find it, its `--version`, and
whether Orca supports it) and the refusal of a run whose binary is older than the minimum.

The pinned real CLIs come from $ORCA_TEST_AGENT_BIN (scripts/test installs them), else
.cache/agents; those tests are marked `e2e` and fail (never skip) when the CLIs are missing.
The rest use copies of the fake codex (tests/fakes/codex, its version in a VERSION file) and
small scripts standing in for a CLI.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, DaemonProcess, pinned_agent, process_exists, run_orca, wait_until

from orca_daemon.agents.binaries import MINIMUM_VERSIONS, TESTED_VERSIONS

FAKES = Path(__file__).resolve().parent / "fakes"
BUILT_IN = ["claude", "codex", "codex-exec", "synthesizer"]
CLI_TIMEOUT = 60.0
HANG_TIMEOUT = 6.0
"""`--timeout` for the hung `--version`: orcad must answer other requests in half of it."""
"""A bound on every `orca` command here: a hung one fails the test instead of hanging it."""


@pytest.fixture
def daemon(make_daemon: Callable[..., DaemonProcess], orca_home: Path) -> DaemonProcess:
    """orcad without binary overrides of its own (each client's lookup decides); the fakes it
    runs keep their state next to its home."""
    fakes_home = orca_home.parent / "fakes-home"
    return make_daemon(
        extra_env={
            "ORCA_CODEX_PATH": "",
            "ORCA_CLAUDE_PATH": "",
            "FAKE_CODEX_HOME": str(fakes_home / "codex"),
            "FAKE_CLAUDE_HOME": str(fakes_home / "claude"),
        }
    ).start()


def orca(daemon: DaemonProcess, *args: str, path: Path | str, **env: str) -> Any:
    """The real `orca` CLI run from a shell whose PATH is `path` (and `env`)."""
    shell = {**daemon.env, "PATH": str(path), "ORCA_CODEX_PATH": "", "ORCA_CLAUDE_PATH": "", **env}
    return run_orca(shell, *args, timeout=CLI_TIMEOUT, cwd=daemon.home.parent)


def doctor_agents(
    daemon: DaemonProcess, *args: str, path: Path | str, **env: str
) -> tuple[int, dict[str, dict[str, Any]]]:
    """`orca doctor --agents --json`: its exit status and each agent's check, by name."""
    done = orca(daemon, "doctor", "--agents", "--json", *args, path=path, **env)
    assert done.returncode in (0, 1), done.stderr
    checks = json.loads(done.stdout)["agents"]
    return done.returncode, {check["name"]: check for check in checks}


def fake_codex(directory: Path, version: str) -> Path:
    """A copy of the fake codex (tests/fakes/codex) that says it is `version`."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy2(FAKES / "codex", directory / "codex")
    shutil.copy2(FAKES / "fakelib.py", directory / "fakelib.py")
    (directory / "VERSION").write_text(version + "\n")
    return directory / "codex"


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def minimum(kind: str) -> str:
    return ".".join(map(str, MINIMUM_VERSIONS[kind]))


def rows(shown: str) -> dict[str, list[str]]:
    """The table `orca doctor --agents` prints: each agent's cells, by name."""
    table = [re.split(r"\s{2,}", line.strip()) for line in shown.split("\n\n")[0].splitlines()]
    assert table[0] == ["AGENT", "KIND", "STATUS", "VERSION", "BINARY"], shown
    return {cells[0]: cells for cells in table[1:]}


# --------------------------------------------------------------------------- what is pinned


def pinned_versions() -> dict[str, str]:
    lock = json.loads((REPO / "tests/npm/package-lock.json").read_text())["packages"]
    return {
        "codex": lock["node_modules/@openai/codex"]["version"],
        "claude": lock["node_modules/@anthropic-ai/claude-code"]["version"],
    }


def test_the_tested_versions_orca_states_are_the_ones_the_suite_pins() -> None:
    pinned = pinned_versions()
    assert pinned == TESTED_VERSIONS
    for kind, version in pinned.items():
        assert tuple(map(int, version.split("."))) >= MINIMUM_VERSIONS[kind]
    readme = (REPO / "README.md").read_text()
    protocols = (REPO / "docs/real-agent-protocols.md").read_text()
    for text in (readme, protocols):
        for kind in ("codex", "claude"):
            assert f"{kind} {minimum(kind)}" in text
            assert TESTED_VERSIONS[kind] in text


@pytest.mark.e2e
def test_doctor_agents_finds_the_pinned_real_clis_supported(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    bin_dir = pinned_agent("codex").parent
    pinned_agent("claude")

    status, checks = doctor_agents(daemon, path=bin_dir)
    assert status == 0, checks
    assert sorted(checks) == BUILT_IN
    for name, kind in (("codex", "codex"), ("codex-exec", "codex"), ("claude", "claude")):
        check = checks[name]
        assert check["status"] == "supported" and check["usable"], check
        assert check["binary"] == str(bin_dir / kind)
        assert check["version"] == TESTED_VERSIONS[kind]
        assert check["minimum"] == minimum(kind)
    assert checks["codex"]["version_text"] == f"codex-cli {TESTED_VERSIONS['codex']}"
    assert checks["claude"]["version_text"] == f"{TESTED_VERSIONS['claude']} (Claude Code)"
    assert checks["synthesizer"]["kind"] == "command" and checks["synthesizer"]["usable"]

    shown = orca(daemon, "doctor", "--agents", path=bin_dir)
    assert shown.returncode == 0, shown.stderr
    table = rows(shown.stdout)
    assert table["codex"] == [
        "codex", "codex", "supported", TESTED_VERSIONS["codex"], str(bin_dir / "codex")
    ]  # fmt: skip
    assert table["claude"] == [
        "claude", "claude", "supported", TESTED_VERSIONS["claude"], str(bin_dir / "claude")
    ]  # fmt: skip


# --------------------------------------------------------------------------- too old


def test_doctor_agents_says_a_codex_is_too_old_and_exits_1(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    old = fake_codex(tmp_path / "bin", "0.130.0")
    script(tmp_path / "bin" / "claude", "echo '1.0.128 (Claude Code)'\n")

    status, checks = doctor_agents(daemon, path=old.parent)
    assert status == 1
    for name in ("codex", "codex-exec"):
        check = checks[name]
        assert check["status"] == "too_old" and not check["usable"], check
        assert check["binary"] == str(old)
        assert check["version"] == "0.130.0"
        assert check["minimum"] == minimum("codex")
        assert str(old) in check["detail"] and "codex-cli 0.130.0" in check["detail"]
        assert f"codex {minimum('codex')} or newer" in check["detail"]
    assert checks["claude"]["status"] == "too_old"
    assert checks["claude"]["version"] == "1.0.128"
    assert f"claude {minimum('claude')} or newer" in checks["claude"]["detail"]

    shown = orca(daemon, "doctor", "--agents", path=old.parent)
    assert shown.returncode == 1
    assert rows(shown.stdout)["codex-exec"] == [
        "codex-exec", "codex-exec", f"too old: needs >= {minimum('codex')}", "0.130.0", str(old)
    ]  # fmt: skip
    assert f"codex: {old} (codex-cli 0.130.0) is too old" in shown.stdout


def test_doctor_agents_resolves_like_a_run_override_and_configured_command(
    daemon: DaemonProcess, orca_home: Path, tmp_path: Path
) -> None:
    """ORCA_CODEX_PATH wins over everything, then an agent's configured command, then the
    newest on PATH, as for a run; a command agent's program is looked for too."""
    old = fake_codex(tmp_path / "old", "0.120.0")
    configured = fake_codex(tmp_path / "configured", "0.169.0")
    (orca_home / "config.toml").write_text(
        f'[agents.reviewer]\nadapter = "codex-exec"\ncommand = ["{configured}"]\n'
        '[agents.lint]\ncommand = ["no-such-linter-anywhere", "--check"]\n'
    )
    assert orca(daemon, "daemon", "reload", path=FAKES).returncode == 0

    # ORCA_CODEX_PATH comes first for every codex agent, as it does for a run.
    status, checks = doctor_agents(daemon, path=FAKES, ORCA_CODEX_PATH=str(old))
    assert status == 1
    for name in ("codex", "codex-exec", "reviewer"):
        assert checks[name]["binary"] == str(old) and checks[name]["status"] == "too_old"
    assert checks["reviewer"]["kind"] == "codex-exec"
    assert checks["lint"]["status"] == "not_found"
    assert "no-such-linter-anywhere" in checks["lint"]["detail"]
    assert checks["claude"]["binary"] == str(FAKES / "claude")
    assert checks["claude"]["status"] == "supported"

    # Without it: the configured command, else the newest codex on PATH (the fakes' own).
    status, checks = doctor_agents(daemon, path=FAKES)
    assert checks["reviewer"]["binary"] == str(configured)
    assert checks["reviewer"]["version"] == "0.169.0"
    assert checks["codex"]["binary"] == str(FAKES / "codex")
    assert {name: c["status"] for name, c in checks.items() if name != "lint"} == dict.fromkeys(
        [*BUILT_IN, "reviewer"], "supported"
    )
    assert status == 1  # lint is still not found


def test_a_run_with_a_codex_too_old_is_refused_naming_binary_version_and_minimum(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    old = fake_codex(tmp_path / "bin", "0.130.0")
    for agent in ("codex", "codex-exec"):
        refused = orca(daemon, "run", "--agent", agent, "SCENARIO=done", path=old.parent)
        assert refused.returncode == 1, refused.stdout
        assert str(old) in refused.stderr
        assert "codex-cli 0.130.0" in refused.stderr
        assert f"codex {minimum('codex')} or newer" in refused.stderr
    assert daemon.status().runs == []

    # The same binary at the minimum runs.
    fake_codex(tmp_path / "bin", minimum("codex"))
    started = orca(daemon, "run", "--agent", "codex", "--wait", "SCENARIO=done", path=old.parent)
    assert started.returncode == 0, started.stderr


def test_a_run_with_a_claude_too_old_is_refused_naming_binary_version_and_minimum(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    old = script(tmp_path / "bin" / "claude", "echo '1.0.128 (Claude Code)'\n")
    refused = orca(daemon, "run", "--agent", "claude", "hello", path=old.parent)
    assert refused.returncode == 1, refused.stdout
    assert f"{old} (1.0.128 (Claude Code)) is too old" in refused.stderr
    assert f"claude {minimum('claude')} or newer" in refused.stderr
    assert daemon.status().runs == []


# --------------------------------------------------------------------------- missing, hung


def test_doctor_agents_says_which_clis_are_not_found(daemon: DaemonProcess, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    status, checks = doctor_agents(daemon, path=empty)
    assert status == 1
    for name, kind in (("codex", "codex"), ("codex-exec", "codex"), ("claude", "claude")):
        check = checks[name]
        assert check["status"] == "not_found" and check["binary"] is None, check
        assert f"no `{kind}` found on PATH ({empty})" in check["detail"]
    assert checks["synthesizer"]["status"] == "supported"

    missing = orca(daemon, "doctor", "--agents", path=empty, ORCA_CLAUDE_PATH=str(empty / "claude"))
    assert missing.returncode == 1
    assert rows(missing.stdout)["codex"] == ["codex", "codex", "not found", "-", "-"]
    assert f"claude: '{empty / 'claude'}' (from the environment) is not" in missing.stdout


def test_a_hung_version_is_bounded_killed_and_orcad_keeps_answering(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    """A `codex --version` that never ends (and leaves a child) costs `--timeout`, no more; it
    and its child are killed, and orcad answers other requests meanwhile."""
    pids = tmp_path / "pids"
    hung = script(
        tmp_path / "bin" / "codex",
        f"sleep 300 &\necho $$ $! >> {pids}\nwait\n",
    )
    command = ["doctor", "--agents", "--json", "--timeout", str(HANG_TIMEOUT)]
    check = subprocess.Popen(
        [sys.executable, "-m", "orca_client.cli", *command],
        env={**daemon.env, "PATH": str(hung.parent), "ORCA_CODEX_PATH": "", "ORCA_CLAUDE_PATH": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(pids.exists, what="the hung --version to start")
        with daemon.client(timeout=HANG_TIMEOUT / 2) as client:  # it answers while checks wait
            assert client.hello().pid == daemon.process.pid  # type: ignore[union-attr]
        stdout, stderr = check.communicate(timeout=CLI_TIMEOUT)
    finally:
        check.kill()
        check.wait()
    assert check.returncode == 1, stderr
    checks = {c["name"]: c for c in json.loads(stdout)["agents"]}
    for name in ("codex", "codex-exec"):
        assert checks[name]["status"] == "not_runnable", checks[name]
        assert checks[name]["binary"] == str(hung)
        assert f"did not finish within {HANG_TIMEOUT:g}s" in checks[name]["detail"]
    started = pids.read_text().split()
    assert len(started) == 4  # codex and codex-exec each ran it: the script and its sleep
    for pid in map(int, started):
        wait_until(lambda pid=pid: not process_exists(pid), what=f"pid {pid} to be killed")
    assert daemon.status().runs == []


def test_doctor_usage_errors(daemon: DaemonProcess, tmp_path: Path) -> None:
    for args, says in (
        ([], "give a RUN_ID, or --agents"),
        (["--agents", "abcd"], "no RUN_ID"),
        (["--agents", "--timeout", "0"], "--timeout must be more than 0"),
        (["--agents", "--timeout", "31"], "at most 30"),
        (["abcd", "--timeout", "3"], "--timeout goes with --agents"),
    ):
        done = orca(daemon, "doctor", *args, path=tmp_path)
        assert done.returncode == 2, (args, done.stdout)
        assert says in done.stderr
    helped = orca(daemon, "doctor", "--help", path=tmp_path)
    said = " ".join(helped.stdout.split())
    assert "0 when every agent is supported, 1 when one is not" in said
    for kind in ("codex", "claude"):
        assert f"{kind} >= {minimum(kind)}" in said and f"{kind} {TESTED_VERSIONS[kind]}" in said
