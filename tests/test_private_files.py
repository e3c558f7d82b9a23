"""Everything orcad writes under its home is private to its user, whatever umask started it:
`orca daemon start` from a shell with umask 022, a fan-out (which makes the runs/ folder), and
then no file or directory under ORCA_HOME is open to group or others."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from conftest import wait_until


def test_orcad_started_with_a_loose_umask_keeps_its_home_private(orca_home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCA_", "NOTIFY_"))}
    env["ORCA_HOME"] = str(orca_home)

    def orca(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orca_client.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=lambda: os.umask(0o022),
        )

    started = orca("daemon", "start")
    assert started.returncode == 0, started.stderr
    try:
        fan_out = orca("debug", "--agents", "synthesizer", "--json", "look")
        run_id = json.loads(fan_out.stdout)["run_id"]

        def ended() -> bool:
            status = json.loads(orca("status", run_id, "--json").stdout)["status"]
            return status in ("completed", "failed", "cancelled")

        wait_until(ended, "the fan-out's end")
        assert (orca_home / "runs" / run_id).is_dir()
        loose = {
            str(path): f"{stat.S_IMODE(path.lstat().st_mode):04o}"
            for path in (orca_home, *orca_home.rglob("*"))
            if stat.S_IMODE(path.lstat().st_mode) & 0o077
        }
        assert loose == {}
    finally:
        assert orca("daemon", "stop").returncode == 0
