"""The daemon's configuration file (orca_daemon/config.py), read from real files in tmp_path.

A missing file means defaults; a bad file is refused with a `ConfigError` that names the file and
the offending key, so `orcad` can say exactly what to fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orca_daemon.config import Config, ConfigError, DaemonSettings, load_config


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


@pytest.mark.parametrize(
    "key",
    [
        "cancel_grace_seconds",
        "output_chunk_chars",
        "output_flush_seconds",
        "max_line_bytes",
        "subscriber_queue_events",
    ],
)
@pytest.mark.parametrize("value", ["-1", "0"])
def test_a_value_that_must_be_positive_is_refused_naming_the_key(
    tmp_path: Path, key: str, value: str
) -> None:
    message = refusal(write(tmp_path, f"[daemon]\n{key} = {value}\n"))
    assert f"daemon.{key}" in message
    assert "greater than 0" in message


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.5"])
def test_a_watchdog_fraction_outside_0_and_1_is_refused(tmp_path: Path, value: str) -> None:
    message = refusal(write(tmp_path, f"[daemon]\nwatchdog_fraction = {value}\n"))
    assert "daemon.watchdog_fraction" in message


def test_the_settings_cannot_be_built_invalid_in_code_either() -> None:
    with pytest.raises(ValueError, match=r"daemon\.cancel_grace_seconds"):
        DaemonSettings(cancel_grace_seconds=-1.0)


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


def test_nan_and_infinity_are_refused(tmp_path: Path) -> None:
    for value in ("nan", "inf"):
        path = tmp_path / f"{value}.toml"
        path.write_text(f"[daemon]\noutput_flush_seconds = {value}\n")
        with pytest.raises(ConfigError, match="output_flush_seconds"):
            load_config(path)
