"""Bring the virtualenv this runs in to a lock file, as pip-sync would, with pip alone.

python scripts/_sync_venv.py LOCK [OTHER_LOCK ...]

Installs LOCK's exact versions (hash-checked) where they differ, removes every package that no
lock file pins at its installed version (so the demo keeps the test tools scripts/test put in
the same .venv), then installs Orca itself in editable mode with the locked build backend.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEEP = {"pip", "orca"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: Path) -> dict[str, str]:
    """Package name -> exact version, for every `name==version` line of a pip-compile lock."""
    found = {}
    for line in lock.read_text().splitlines():
        if match := PIN.match(line):
            found[_name(match[1])] = match[2]
    return found


def installed() -> dict[str, str]:
    return {_name(d.name): d.version for d in metadata.distributions() if d.name}


def _orca_is_current() -> bool:
    """Orca is installed editable from this checkout, after pyproject.toml last changed."""
    try:
        dist = metadata.distribution("orca")
    except metadata.PackageNotFoundError:
        return False
    url = dist.read_text("direct_url.json") or ""
    files = dist.files or []
    record = next((f for f in files if f.name == "METADATA"), None)
    if record is None or ROOT.as_uri() not in url or '"editable": true' not in url:
        return False
    return Path(str(dist.locate_file(record))).stat().st_mtime >= (
        (ROOT / "pyproject.toml").stat().st_mtime
    )


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args]
    subprocess.run(command, check=True)


def main(lock: Path, others: list[Path]) -> None:
    required = pins(lock)
    allowed = {(name, version) for path in [lock, *others] for name, version in pins(path).items()}
    present = installed()
    missing = sorted(name for name, version in required.items() if present.get(name) != version)
    stale = sorted(
        name
        for name, version in present.items()
        if name not in KEEP and name not in required and (name, version) not in allowed
    )
    relative = lock.resolve().relative_to(ROOT)
    if stale:
        print(f"==> removing from .venv what {relative} does not pin: {', '.join(stale)}")
        _pip("uninstall", "--yes", *stale)
    if missing:
        print(f"==> installing {len(missing)} locked packages from {relative}")
        _pip("install", "--require-hashes", "--requirement", str(lock))
    if missing or stale or not _orca_is_current():
        print("==> installing orca (editable) into .venv")
        _pip("install", "--no-deps", "--no-build-isolation", "--editable", str(ROOT))
    if not (missing or stale):
        print(f"==> .venv matches {relative}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
