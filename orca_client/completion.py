"""Shell completion: `orca completion bash|zsh|fish` prints a script that completes subcommands
and flags (taken from the argument parser, so they never drift) and run ids, which the script
gets from `orca __complete-runs` (quiet and empty when orcad is not running)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

RUN_ID_COMMANDS = (
    "status",
    "watch",
    "logs",
    "answer",
    "cancel",
    "orchestrate",
    "doctor",
    "clean",
    "plan retry",
)
"""The commands whose first positional argument is a run id."""
RUN_ID_FLAGS = ("--follow-up",)
FILE_COMMANDS = ("plan run", "plan validate")
HIDDEN_RUNS_COMMAND = "__complete-runs"


@dataclass
class Command:
    """One (sub)command as completion sees it."""

    path: str
    """The words that name it after `orca`, space-separated ("" for `orca` itself)."""
    flags: list[tuple[str, str]] = field(default_factory=list)
    """Each option string with its help."""
    value_flags: list[str] = field(default_factory=list)
    """The options that take a value (the next word is not a subcommand)."""
    subcommands: list[tuple[str, str]] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)
    """The values its first positional argument takes, when it has a fixed set."""


def commands(parser: argparse.ArgumentParser) -> list[Command]:
    """Every command of `parser`, depth first."""
    found: list[Command] = []

    def walk(current: argparse.ArgumentParser, path: str) -> None:
        command = Command(path)
        found.append(command)
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
                for name, sub in action.choices.items():
                    command.subcommands.append((name, helps.get(name, "")))
                    walk(sub, f"{path} {name}".strip())
                continue
            if not action.option_strings and action.choices and not command.choices:
                command.choices = [str(choice) for choice in action.choices]
            for option in action.option_strings:
                command.flags.append((option, (action.help or "").split("\n")[0]))
                if action.nargs != 0:
                    command.value_flags.append(option)

    walk(parser, "")
    return found


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script for `shell` (bash, zsh or fish)."""
    found = commands(parser)
    if shell == "bash":
        return _bash(found)
    if shell == "zsh":
        return _ZSH_HEADER + _bash(found)
    return _fish(found)


def _key(path: str) -> str:
    return path.replace(" ", "_")


def _case(name: str, rows: dict[str, str]) -> str:
    arms = "".join(f'        "{_key(path)}") echo "{words}" ;;\n' for path, words in rows.items())
    return f'{name}() {{\n    case "$1" in\n{arms}    esac\n}}\n'


def _bash(found: list[Command]) -> str:
    subcommands = {
        c.path: " ".join([n for n, _ in c.subcommands] or c.choices)
        for c in found
        if c.subcommands or c.choices
    }
    flags = {c.path: " ".join(f for f, _ in c.flags) for c in found}
    values = {c.path: " ".join(c.value_flags) for c in found if c.value_flags}
    run_ids = " ".join(f'"{_key(p)}"' for p in RUN_ID_COMMANDS)
    files = " ".join(f'"{_key(p)}"' for p in FILE_COMMANDS)
    return (
        '# orca completion for bash: eval "$(orca completion bash)", e.g. in ~/.bashrc\n'
        + _case("_orca_subcommands", subcommands)
        + _case("_orca_flags", flags)
        + _case("_orca_value_flags", values)
        + f"""_orca_runs() {{
    local line
    while IFS=$'\\t' read -r line _; do printf '%s\\n' "$line"; done \\
        < <(command orca {HIDDEN_RUNS_COMMAND} 2>/dev/null)
}}
_orca() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
    local path="" word i skip=""
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${{COMP_WORDS[i]}}
        [[ $word == -- ]] && return 0
        if [[ -n $skip ]]; then skip=""; continue; fi
        if [[ " $(_orca_value_flags "$path") " == *" $word "* ]]; then skip=1; continue; fi
        if [[ $word != -* && " $(_orca_subcommands "$path") " == *" $word "* ]]; then
            path=${{path:+${{path}}_}}$word
        fi
    done
    case "$prev" in
        {"|".join(RUN_ID_FLAGS)})
            COMPREPLY=($(compgen -W "$(_orca_runs)" -- "$cur")); return 0 ;;
    esac
    if [[ " $(_orca_value_flags "$path") " == *" $prev "* ]]; then return 0; fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_orca_flags "$path")" -- "$cur")); return 0
    fi
    local subcommands
    subcommands=$(_orca_subcommands "$path")
    if [[ -n $subcommands ]]; then
        COMPREPLY=($(compgen -W "$subcommands" -- "$cur")); return 0
    fi
    case "$path" in
        {"|".join(run_ids.split())}) COMPREPLY=($(compgen -W "$(_orca_runs)" -- "$cur")) ;;
        {"|".join(files.split())}) COMPREPLY=($(compgen -f -- "$cur")) ;;
    esac
    return 0
}}
complete -F _orca orca
"""
    )


_ZSH_HEADER = """\
# orca completion for zsh: eval "$(orca completion zsh)", e.g. in ~/.zshrc (after compinit).
# zsh runs the bash completion below through bashcompinit.
autoload -U +X bashcompinit && bashcompinit
"""


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish(found: list[Command]) -> str:
    lines = [
        "# orca completion for fish: orca completion fish | source, e.g. in config.fish",
        "complete -c orca -f",
    ]
    for command in found:
        words = command.path.split()
        if not words:
            seen = "__fish_use_subcommand"
        else:
            seen = "; and ".join(f"__fish_seen_subcommand_from {w}" for w in words)
        names = " ".join(n for n, _ in command.subcommands)
        for name, help_text in command.subcommands or [(c, "") for c in command.choices]:
            condition = (
                seen if not words else f"{seen}; and not __fish_seen_subcommand_from {names}"
            )
            lines.append(
                f"complete -c orca -n {_fish_quote(condition)} -a {name} "
                f"-d {_fish_quote(help_text)}"
            )
        for flag, help_text in command.flags:
            kind = f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}"
            takes = " -r" if flag in command.value_flags else ""
            lines.append(
                f"complete -c orca -n {_fish_quote(seen)} {kind}{takes} -d {_fish_quote(help_text)}"
            )
        if command.path in RUN_ID_COMMANDS or command.path in FILE_COMMANDS:
            source = f"(orca {HIDDEN_RUNS_COMMAND} 2>/dev/null)"
            what = "-a " + _fish_quote(source) if command.path in RUN_ID_COMMANDS else "-F"
            lines.append(f"complete -c orca -n {_fish_quote(seen)} {what}")
    runs = f"(orca {HIDDEN_RUNS_COMMAND} 2>/dev/null)"
    for flag in RUN_ID_FLAGS:
        lines.append(
            f"complete -c orca -n {_fish_quote('__fish_seen_subcommand_from run')} "
            f"-l {flag[2:]} -x -a {_fish_quote(runs)}"
        )
    return "\n".join(lines) + "\n"


def print_run_ids() -> int:
    """`orca __complete-runs`: the runs `orca status` shows, one `RUN_ID<tab>STATUS TITLE` a
    line, newest first; nothing at all (and status 0) when orcad does not answer at once."""
    from orca_client.client import Client
    from orca_client.terminal_text import one_line
    from orca_client.views import StatusResult
    from orca_client.wire import Status

    try:
        with Client(timeout=1.0) as client:
            result: StatusResult = client.request(Status(ended=50))
    except Exception:  # completion must never print an error into the user's command line
        return 0
    for run in sorted(result.runs, key=lambda r: r.created_at, reverse=True):
        sys.stdout.write(f"{run.run_id}\t{one_line(f'{run.status} {run.title}')[:60]}\n")
    return 0
