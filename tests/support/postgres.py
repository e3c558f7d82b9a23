"""A private PostgreSQL server for the tests, or an existing one.

With `ORCA_TEST_POSTGRES_URL` set (a `postgresql://` URL whose user may create databases), the
tests use that server. Otherwise each test process starts its own, from the machine's PostgreSQL
binaries (Debian's `postgresql` package; scripts/test installs it when missing), in a temporary
directory, as an unprivileged user when run as root (the server refuses to run as root), and
stops it at the end. Each test gets a database of its own.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from conftest import process_exists

URL_VARIABLE = "ORCA_TEST_POSTGRES_URL"


def server_binaries() -> Path:
    """The directory of `initdb` and `pg_ctl`: PostgreSQL's own (Debian keeps them off PATH)."""
    for directory in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (directory / "pg_ctl").exists():
            return directory
    found = shutil.which("pg_ctl")
    if found is None:
        raise RuntimeError(
            "no PostgreSQL server here (initdb, pg_ctl): scripts/test installs Debian's "
            f"postgresql package, or set {URL_VARIABLE} to an existing server's URL"
        )
    return Path(found).resolve().parent


def _server_user() -> str | None:
    """Whom to run the server as: None (ourselves) unless we are root, which it refuses."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root, and there is no postgres or nobody user to run as")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


PREFIX = "orca-pg-"
OWNER_FILE = "owner.pid"
"""In a server's directory: the pid of the test process that started it."""


def reap_abandoned() -> None:
    """Stop and remove the private servers of test processes that are gone (killed before
    they could stop their servers)."""
    for root in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            owner = int((root / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if process_exists(owner):
            continue
        pid_file = root / "data" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)  # immediate stop
        shutil.rmtree(root, ignore_errors=True)


class PrivateServer:
    """A PostgreSQL server of the tests' own, in a temporary directory."""

    def __init__(self) -> None:
        reap_abandoned()
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.root / OWNER_FILE).write_text(str(os.getpid()))
        self.user = _server_user()
        self.port = 0
        self._bin = server_binaries()

    def _run(self, *command: str) -> None:
        argv = [str(self._bin / command[0]), *command[1:]]
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stdout}{result.stderr}")

    def start(self) -> str:
        """Create and start the server; returns a URL of its `postgres` database."""
        if self.user is not None:
            record = pwd.getpwnam(self.user)
            os.chown(self.root, record.pw_uid, record.pw_gid)
        data = self.root / "data"
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", "orca", "--no-sync", "-E", "UTF8")
        for _attempt in range(5):
            self.port = _free_port()
            options = f"-k {self.root} -c listen_addresses=127.0.0.1 -p {self.port}"
            try:
                self._run(
                    "pg_ctl",
                    "-D",
                    str(data),
                    "-l",
                    str(self.root / "log"),
                    "-o",
                    options,
                    "-w",
                    "start",
                )
                break
            except RuntimeError:
                if _attempt == 4:
                    raise
        return f"postgresql://orca@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """The URL of a server's maintenance database: `ORCA_TEST_POSTGRES_URL`'s, or a private
    server's, started for the duration."""
    configured = os.environ.get(URL_VARIABLE)
    if configured:
        yield configured
        return
    server = PrivateServer()
    try:
        yield server.start()
    finally:
        server.stop()


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server at `server_url`, dropped afterwards; its URL."""
    name = f"orca_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield urlsplit(server_url)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
