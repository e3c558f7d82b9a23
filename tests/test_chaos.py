"""The chaos script (bench/chaos.py), small: kill -9 orcad under load, restart; nothing is lost,
sessions run on through the kills with every line recorded once, nothing is left behind."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.slow
def test_kill9_under_load_loses_nothing_and_leaves_no_orphan() -> None:
    chaos = subprocess.run(
        [sys.executable, str(REPO / "bench" / "chaos.py"), "--kills", "3", "--seconds", "15"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert chaos.returncode == 0, chaos.stdout + chaos.stderr
    figures = dict(re.findall(r"^  (\w[\w !=-]*\w) +(\d+)", chaos.stdout, re.MULTILINE))
    assert figures["violations"] == "0", chaos.stdout
    assert int(figures["acknowledged runs"]) >= 3 * 10, chaos.stdout
    assert figures["runs present"] == figures["acknowledged runs"], chaos.stdout
    assert int(figures["sessions in flight"]) >= 3, chaos.stdout
    # From the second kill on, at least the first round's long sessions (one a client) run on.
    assert int(figures["re-attached"]) >= 2 * 4, chaos.stdout
    assert figures["output wrong"] == "0", chaos.stdout
    assert figures["orphaned processes"] == "0", chaos.stdout
