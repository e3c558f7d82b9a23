"""The lock files in requirements/ cover pyproject.toml, and the tests run on what they pin."""

from __future__ import annotations

import importlib.util
import tomllib
from importlib import metadata
from pathlib import Path
from types import ModuleType

from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

RUN_LOCK = REPO / "requirements" / "run.txt"
DEV_LOCK = REPO / "requirements" / "dev.txt"


def _sync_venv() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_sync_venv", REPO / "scripts" / "_sync_venv.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pins(lock: Path) -> dict[str, str]:
    pins: dict[str, str] = _sync_venv().pins(lock)
    assert pins, lock
    return pins


def _requirements() -> tuple[list[Requirement], list[Requirement]]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    build = [Requirement(r) for r in pyproject["build-system"]["requires"]]
    run = [Requirement(r) for r in pyproject["project"]["dependencies"]]
    extras = pyproject["project"]["optional-dependencies"]
    dev = [Requirement(r) for extra in ("dev", "mcp") for r in extras[extra]]
    return build + run, build + run + dev


def test_every_declared_dependency_is_locked_at_a_version_it_allows() -> None:
    run, dev = _requirements()
    for lock, requirements in [(RUN_LOCK, run), (DEV_LOCK, dev)]:
        pins = _pins(lock)
        for requirement in requirements:
            version = pins.get(canonicalize_name(requirement.name))
            assert version is not None, f"{requirement.name} is not in {lock}: run scripts/lock"
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock} pins {requirement.name}=={version}, not {requirement}: run scripts/lock"
            )


def test_the_mcp_sdk_is_in_the_test_lock_only() -> None:
    """`orca mcp` is tested, so the tests install the extra; the demo needs none of it."""
    assert "mcp" in _pins(DEV_LOCK)
    assert "mcp" not in _pins(RUN_LOCK)


def test_the_demo_lock_pins_the_same_versions_as_the_test_lock() -> None:
    dev = _pins(DEV_LOCK)
    for name, version in _pins(RUN_LOCK).items():
        assert dev.get(name) == version, name


def test_every_pin_carries_hashes() -> None:
    for lock in [RUN_LOCK, DEV_LOCK]:
        lines = lock.read_text().splitlines()
        for number, line in enumerate(lines):
            if "==" in line and not line.startswith((" ", "#")):
                assert line.endswith("\\") and lines[number + 1].lstrip().startswith(
                    "--hash=sha256:"
                ), f"{lock}:{number + 1} has no hash"


def test_the_tests_run_on_exactly_the_locked_versions() -> None:
    """scripts/test installs from the lock; this is what pytest found installed."""
    for name, version in _pins(DEV_LOCK).items():
        assert metadata.version(name) == version, name
