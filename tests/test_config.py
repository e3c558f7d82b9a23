"""The daemon's configuration file (orca_daemon/config.py), read from real files in tmp_path.

A missing file means defaults; a bad file is refused with a `ConfigError` that names the file and
the offending key, so `orcad` can say exactly what to fix.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orca_daemon.config import (
    RANGES,
    Config,
    ConfigError,
    DaemonSettings,
    HookSettings,
    NotifySettings,
    OrchestrationSettings,
    load_config,
)


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "config.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def refusal(path: Path) -> str:
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert str(path) in message, "the error must name the file"
    return message


def test_a_missing_file_gives_the_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "absent.toml")
    assert config == Config()
    daemon = config.daemon
    assert daemon.synchronous == "FULL"
    assert daemon.cancel_grace_seconds == 5.0
    assert daemon.output_chunk_chars == 16_384
    assert daemon.output_flush_seconds == 0.05
    assert daemon.max_line_bytes == 1 << 20
    assert daemon.subscriber_queue_events == 10_000
    assert daemon.watchdog_fraction == 0.5


def test_an_empty_file_or_empty_section_gives_the_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")) == Config()
    assert load_config(write(tmp_path, "# nothing yet\n[daemon]\n")) == Config()


def test_set_keys_override_and_the_rest_keep_their_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[daemon]\nsynchronous = "NORMAL"\ncancel_grace_seconds = 2\noutput_chunk_chars = 1024\n',
    )
    daemon = load_config(path).daemon
    assert daemon.synchronous == "NORMAL"
    assert daemon.cancel_grace_seconds == 2.0  # a TOML integer is fine for seconds
    assert daemon.output_chunk_chars == 1024
    assert daemon.output_flush_seconds == DaemonSettings().output_flush_seconds


def test_a_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, "[daemon\ncancel_grace_seconds = 1\n"))
    assert "not valid TOML" in message
    assert "line 1" in message


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    assert "not valid TOML" in refusal(write(tmp_path, b'[daemon]\nsynchronous = "\xff"\n'))


def test_an_unreadable_path_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "config.toml"
    directory.mkdir()
    assert "cannot read" in refusal(directory)


def test_an_unknown_key_in_the_daemon_section_is_refused_by_its_full_name(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, "[daemon]\ncancel_grace_secs = 1\n"))
    assert "daemon.cancel_grace_secs" in message


def test_an_unknown_top_level_key_is_refused(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, "[server]\nport = 1\n"))
    assert "server" in message


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('output_chunk_chars = "big"', "daemon.output_chunk_chars"),
        ("output_chunk_chars = 1.5", "daemon.output_chunk_chars"),
        ('cancel_grace_seconds = "5s"', "daemon.cancel_grace_seconds"),
        ("max_line_bytes = true", "daemon.max_line_bytes"),
        ('synchronous = "OFF"', "daemon.synchronous"),
        ("synchronous = 1", "daemon.synchronous"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_key(
    tmp_path: Path, line: str, key: str
) -> None:
    assert key in refusal(write(tmp_path, f"[daemon]\n{line}\n"))


def test_a_section_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    assert "daemon" in refusal(write(tmp_path, "daemon = 3\n"))


NUMBERS = [
    (section, key, low, high)
    for section, ranges in RANGES.items()
    for key, (low, high) in ranges.items()
]


def number(value: float) -> str:
    """`value` as TOML (and as the error message shows it)."""
    return str(int(value)) if float(value).is_integer() else repr(value)


@pytest.mark.parametrize(("section", "key", "low", "high"), NUMBERS)
def test_every_number_outside_its_range_is_refused_with_the_key_and_the_range(
    tmp_path: Path, section: str, key: str, low: float, high: float
) -> None:
    integer = isinstance(low, int)
    below = low - 1 if integer else low / 2
    above = high + 1 if integer else high * 2
    for value in (number(below), number(above), "-1", "0"):
        message = refusal(write(tmp_path, f"[{section}]\n{key} = {value}\n"))
        assert f"key {section}.{key}: must be between {number(low)} and {number(high)}" in message
    for value in (low, high):
        settings = getattr(load_config(write(tmp_path, f"[{section}]\n{key} = {value}\n")), section)
        assert getattr(settings, key) == value


@pytest.mark.parametrize(("section", "key"), [(section, key) for section, key, *_ in NUMBERS])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_nan_and_infinity_are_refused_for_every_number(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    assert f"{section}.{key}" in refusal(write(tmp_path, f"[{section}]\n{key} = {value}\n"))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[orchestration]\nheartbeat_seconds = 1e-9\n", "between 0.1 and 3600"),
        ("[daemon]\nmax_line_bytes = 100000000000000000000\n", "between 1024 and 16777216"),
        ("[daemon]\nmax_line_bytes = 1e23\n", "daemon.max_line_bytes"),
        ("[daemon]\nwatchdog_fraction = 1\n", "between 0.1 and 0.9"),
    ],
)
def test_the_absurd_values_from_issue_8_are_refused(tmp_path: Path, text: str, words: str) -> None:
    assert words in refusal(write(tmp_path, text))


def test_every_number_in_the_config_has_a_range_and_its_default_is_inside() -> None:
    for section, settings in (
        ("daemon", DaemonSettings()),
        ("hooks", HookSettings()),
        ("notify", NotifySettings()),
        ("orchestration", OrchestrationSettings()),
    ):
        numbers = {
            key
            for key in settings.__struct_fields__
            if type(getattr(settings, key)) in (int, float)
        }
        assert numbers == set(RANGES[section]), section
        for key, (low, high) in RANGES[section].items():
            assert low <= getattr(settings, key) <= high


def test_the_settings_cannot_be_built_invalid_in_code_either() -> None:
    with pytest.raises(ValueError, match=r"daemon\.cancel_grace_seconds"):
        DaemonSettings(cancel_grace_seconds=-1.0)


def test_orcad_refuses_to_start_with_a_number_out_of_range(orca_home: Path) -> None:
    orca_home.mkdir(mode=0o700)
    config = orca_home / "config.toml"
    config.write_text("[orchestration]\nheartbeat_seconds = 1e-9\n")
    env = {**os.environ, "ORCA_HOME": str(orca_home)}
    env.pop("NOTIFY_SOCKET", None)
    result = subprocess.run(
        [sys.executable, "-m", "orca_daemon"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert "key orchestration.heartbeat_seconds: must be between 0.1 and 3600" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (orca_home / "orcad.sock").exists()


def test_a_project_file_may_not_choose_what_runs(tmp_path: Path) -> None:
    project = tmp_path / "repo"
    (project / ".orca").mkdir(parents=True)
    (project / ".orca" / "config.toml").write_text('[agents.codex]\ncommand = ["/tmp/evil"]\n')
    with pytest.raises(ConfigError, match=r"agents\.codex\.command: not allowed in a project file"):
        Config().agent("codex", project)
    (project / ".orca" / "config.toml").write_text(
        "[agents.codex]\nmulti_agent = false\nmodel = 'm'\n"
    )
    (project / "sub").mkdir()
    settings = Config().agent("codex", project / "sub")
    assert (settings.adapter, settings.multi_agent, settings.model) == ("codex", False, "m")


@pytest.mark.parametrize("policy", ["on-failure", "always", "granular"])
def test_finding_2_an_approval_policy_codex_does_not_accept_is_refused_naming_those_it_does(
    tmp_path: Path, policy: str
) -> None:
    message = refusal(write(tmp_path, f'[agents.codex]\napproval_policy = "{policy}"\n'))
    assert f"key agents.codex: approval_policy '{policy}' is not one Codex 0.169 accepts" in message
    assert "use untrusted, on-request, never" in message


def test_every_approval_policy_codex_accepts_loads(tmp_path: Path) -> None:
    for policy in ("untrusted", "on-request", "never"):
        config = load_config(write(tmp_path, f'[agents.codex]\napproval_policy = "{policy}"\n'))
        assert config.agents["codex"].approval_policy == policy
