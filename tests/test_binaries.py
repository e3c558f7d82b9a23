"""Finding an agent CLI (orca_daemon/agents/binaries.py) on real directories: a search path or
an override orcad cannot use (a NUL byte, a relative path, a name too long) is never an error
of orcad's own, only a binary not found."""

from __future__ import annotations

from pathlib import Path

import pytest

from orca_daemon.agents.binaries import BinaryNotFound, candidates, select_binary


def executable(directory: Path, name: str = "codex") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\necho 'codex-cli 1.2.3'\n")
    path.chmod(0o755)
    return path


def test_search_path_entries_that_cannot_be_looked_in_are_skipped(tmp_path: Path) -> None:
    found = executable(tmp_path / "bin")
    search = ":".join(["/" + "x" * 300, "/tmp/b\0in", "", str(found.parent)])
    assert candidates("codex", search) == [str(found)]


@pytest.mark.parametrize("override", ["/usr/bin/co\0dex", "bin/codex", "/" + "x" * 5000])
def test_an_override_orcad_cannot_use_is_a_binary_not_found(override: str) -> None:
    with pytest.raises(BinaryNotFound, match="absolute path of an executable"):
        select_binary("codex", override=override, configured=None, search_path="")


def test_a_configured_command_with_a_nul_byte_has_an_unknown_version() -> None:
    binary = select_binary("codex", override=None, configured=["/bin/co\0dex"], search_path="")
    assert binary.version is None and "version unknown" in binary.version_text
