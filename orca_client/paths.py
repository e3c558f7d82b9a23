"""Where Orca keeps its files: one place that the daemon and every client agree on.

`ORCA_HOME` puts everything under one directory; otherwise the XDG base directories apply.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import NamedTuple

SOCKET_NAME = "orcad.sock"
TOKEN_NAME = "token"
LOG_NAME = "events.sqlite3"
LOCK_NAME = "orcad.lock"
DAEMON_LOG_NAME = "orcad.log"
HOLDERS_NAME = "holders"


class OrcaPaths(NamedTuple):
    """The resolved locations of the event log, socket, token and config file."""

    state_dir: Path
    runtime_dir: Path
    config_file: Path

    @property
    def log_file(self) -> Path:
        return self.state_dir / LOG_NAME

    @property
    def socket_file(self) -> Path:
        return self.runtime_dir / SOCKET_NAME

    @property
    def socket_endpoint(self) -> str:
        return f"ipc://{self.socket_file}"

    @property
    def token_file(self) -> Path:
        return self.runtime_dir / TOKEN_NAME

    @property
    def holders_dir(self) -> Path:
        """Where each session holder keeps its socket (one directory per session)."""
        return self.runtime_dir / HOLDERS_NAME

    @property
    def daemon_log_file(self) -> Path:
        """Where `orca daemon start` sends the background daemon's stderr."""
        return self.state_dir / DAEMON_LOG_NAME

    @property
    def lock_files(self) -> tuple[Path, ...]:
        """One lock beside the log and one beside the socket (the same file under ORCA_HOME)."""
        locks = {self.state_dir / LOCK_NAME, self.runtime_dir / LOCK_NAME}
        return tuple(sorted(locks))


def resolve_paths(env: os._Environ[str] | dict[str, str] | None = None) -> OrcaPaths:
    """Resolve Orca's paths from the environment (`ORCA_HOME`, `ORCA_CONFIG`, XDG)."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    config_override = env.get("ORCA_CONFIG")
    orca_home = env.get("ORCA_HOME")
    if orca_home:
        base = Path(orca_home).expanduser().absolute()
        config = Path(config_override) if config_override else base / "config.toml"
        return OrcaPaths(state_dir=base, runtime_dir=base, config_file=config.absolute())
    state = Path(env.get("XDG_STATE_HOME") or home / ".local" / "state") / "orca"
    runtime_base = env.get("XDG_RUNTIME_DIR")
    runtime = Path(runtime_base) / "orca" if runtime_base else state
    config_home = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    config = Path(config_override) if config_override else config_home / "orca" / "config.toml"
    return OrcaPaths(
        state_dir=state.absolute(), runtime_dir=runtime.absolute(), config_file=config.absolute()
    )


class InsecurePathError(Exception):
    """A directory or file Orca refuses: group or others can access it, another user owns it,
    or its name is not UTF-8 (the socket's address must be text)."""


def check_private(path: Path, *, directory: bool) -> None:
    """Refuse a path that group or others can access, or that another user owns."""
    info = path.stat()
    expected = "directory" if directory else "file"
    if directory != stat.S_ISDIR(info.st_mode):
        raise InsecurePathError(f"{path} should be a {expected}")
    if info.st_uid != os.getuid():
        raise InsecurePathError(f"{path} is owned by uid {info.st_uid}, not by you")
    loose = stat.S_IMODE(info.st_mode) & 0o077
    if loose:
        want = "0700" if directory else "0600"
        raise InsecurePathError(
            f"{path} has mode {stat.S_IMODE(info.st_mode):04o}: group or others can access it; "
            f"it must be {want} (fix with: chmod {want} {path})"
        )


def ensure_private_dir(path: Path) -> None:
    """Create `path` as a 0700 directory if missing; refuse an existing one that is not private."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise InsecurePathError(
            f"{os.fsencode(path)!r} is not valid UTF-8; choose a UTF-8 ORCA_HOME (or XDG directory)"
        ) from None
    if not path.exists():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
    check_private(path, directory=True)


def read_token(path: Path) -> bytes:
    """The daemon's token as the socket protocol signs with it."""
    return path.read_text().strip().encode()
