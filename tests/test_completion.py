"""Shell completion. The bash script is sourced in a real bash and its completion function is
driven as bash drives it (COMP_WORDS, COMP_CWORD), with run ids from the real orcad through the
real `orca`. zsh and fish are not installed here: their scripts are checked as text (and fish's
with `fish --no-execute` where fish exists)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DaemonProcess, run_orca

BIN = str(Path(sys.executable).parent)


def orca(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_orca(env, *args)


def completions(env: dict[str, str], *words: str) -> list[str]:
    """What bash offers for the command line `words` (the last one is being typed)."""
    script = orca(env, "completion", "bash")
    assert script.returncode == 0, script.stderr
    line = " ".join(shlex.quote(word) for word in words)
    program = (
        f"{script.stdout}\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}\n"
        "_orca\n"
        "printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        env={**env, "PATH": f"{BIN}:{env['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return [word for word in result.stdout.splitlines() if word]


def test_bash_completes_subcommands_and_flags(make_daemon: Callable[..., DaemonProcess]) -> None:
    env = make_daemon().env  # no orcad needed for these
    assert completions(env, "orca", "st") == ["status"]
    assert set(completions(env, "orca", "")) >= {"run", "status", "answer", "daemon", "plan"}
    assert completions(env, "orca", "daemon", "re") == ["reload"]
    assert completions(env, "orca", "daemon", "stop", "--f") == ["--force"]
    assert completions(env, "orca", "cancel", "abcd", "--se") == ["--session"]
    assert completions(env, "orca", "plan", "") == ["run", "validate", "retry"]
    assert completions(env, "orca", "plan", "validate", "--j") == ["--json"]
    assert completions(env, "orca", "completion", "") == ["bash", "zsh", "fish"]
    # A flag's value is not taken for a subcommand: `--title status` leaves `run`'s flags.
    assert completions(env, "orca", "run", "--title", "status", "--ag") == ["--agent"]
    assert completions(env, "orca", "run", "--", "--") == []  # the command's own arguments


def test_bash_completes_run_ids_from_orcad(daemon: DaemonProcess) -> None:
    first = orca(daemon.env, "run", "--", "true").stdout.strip()
    second = orca(daemon.env, "run", "--", "true").stdout.strip()
    assert set(completions(daemon.env, "orca", "status", "")) == {first, second}
    assert completions(daemon.env, "orca", "logs", "--follow", first[:5]) == [first]
    assert completions(daemon.env, "orca", "plan", "retry", second[:5]) == [second]
    assert second in completions(daemon.env, "orca", "run", "--agent", "x", "--follow-up", "")
    listed = orca(daemon.env, "__complete-runs")
    assert listed.returncode == 0 and listed.stderr == ""
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == [second, first]


def test_run_ids_are_quietly_none_when_orcad_is_down(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    env = make_daemon().env
    listed = orca(env, "__complete-runs")
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "", "")
    assert completions(env, "orca", "status", "") == []


def test_zsh_script_runs_the_bash_completion_through_bashcompinit(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    env = make_daemon().env
    zsh = orca(env, "completion", "zsh").stdout
    assert "autoload -U +X bashcompinit && bashcompinit" in zsh
    assert zsh.endswith(orca(env, "completion", "bash").stdout)
    if shutil.which("zsh"):
        checked = subprocess.run(["zsh", "-n"], input=zsh, text=True, capture_output=True)
        assert checked.returncode == 0, checked.stderr


def test_fish_script_names_subcommands_flags_and_run_ids(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    env = make_daemon().env
    fish = orca(env, "completion", "fish").stdout
    lines = fish.splitlines()
    assert "complete -c orca -n '__fish_use_subcommand' -a status" in "\n".join(lines)
    assert any("__fish_seen_subcommand_from cancel'" in x and "-l session -r" in x for x in lines)
    assert any(
        "__fish_seen_subcommand_from daemon; and __fish_seen_subcommand_from stop'" in x
        and "-l force" in x
        for x in lines
    )
    assert any(
        "__fish_seen_subcommand_from answer'" in x and "(orca __complete-runs" in x for x in lines
    )
    assert all(line.startswith(("complete -c orca ", "#")) for line in lines)
    if shutil.which("fish"):
        checked = subprocess.run(
            ["fish", "--no-execute"], input=fish, text=True, capture_output=True
        )
        assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_for_each_shell(
    make_daemon: Callable[..., DaemonProcess], shell: str
) -> None:
    result = orca(make_daemon().env, "completion", shell)
    assert result.returncode == 0 and result.stdout.startswith(f"# orca completion for {shell}")
    assert result.stdout.endswith("\n")
