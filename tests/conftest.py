"""Fixtures that build real daemons: `orcad` as a subprocess in a temporary ORCA_HOME.

Socket paths must stay under ~107 characters, so homes are made directly under /tmp.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from support.holders import Holders
from support.homes import write_config
from support.processes import kill_processes_with_env
from support.snapshots import assert_snapshot_matches_log

from orca_client.client import Client, DaemonUnavailable
from orca_client.paths import OrcaPaths, resolve_paths
from orca_client.views import TERMINAL_STATUSES, RunInfo, StatusResult
from orca_client.wire import EventRecord, ReadEvents, Shutdown, Status

REPO = Path(__file__).resolve().parent.parent
AGENTS = Path(__file__).resolve().parent / "agents"
EXAMPLES = REPO / "examples" / "agents"


PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def as_an_ordinary_user() -> None:
    """In the child before exec: root loses the capabilities that ignore file modes, so a
    directory with mode 000 is unreadable to it too."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_orca(
    env: dict[str, str],
    *args: str | bytes,
    cwd: Path | str | None = None,
    input: str | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """The real `orca` CLI as a subprocess; its stdin is empty unless `input` is given."""
    return subprocess.run(
        [sys.executable, "-m", "orca_client.cli", *args],
        env=env,
        cwd=cwd,
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def agent_bin() -> Path:
    """Where the pinned real agent CLIs are: $ORCA_TEST_AGENT_BIN (set by scripts/test), else
    the cache scripts/_agents.sh installs into."""
    configured = os.environ.get("ORCA_TEST_AGENT_BIN")
    return Path(configured) if configured else REPO / ".cache/agents/node_modules/.bin"


def pinned_agent(name: str) -> Path:
    """A pinned real agent CLI (`codex`, `claude`); a missing one fails the test, never skips
    it: the test command installs them."""
    path = agent_bin() / name
    assert os.access(path, os.X_OK), (
        f"no real {name} at {path}: run scripts/test (it installs the pinned agent CLIs), "
        "or ROOT=$PWD bash -c '. scripts/_agents.sh'"
    )
    return path


class DaemonProcess:
    """A real orcad subprocess on a private ORCA_HOME, with helpers to drive it."""

    def __init__(self, home: Path, extra_env: dict[str, str] | None = None) -> None:
        self.home = home
        self.env = {**os.environ, "ORCA_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.update(extra_env or {})
        self.paths: OrcaPaths = resolve_paths(self.env)
        self.process: subprocess.Popen[bytes] | None = None
        self.stderr_path = home.parent / f"{home.name}.orcad.stderr"

    @property
    def log_source(self) -> Path | str:
        """Where this daemon's log is: its PostgreSQL URL (`ORCA_LOG_URL`), or its SQLite file."""
        return self.env.get("ORCA_LOG_URL") or self.paths.log_file

    def start(
        self,
        wait: bool = True,
        timeout: float = 15.0,
        preexec_fn: Callable[[], None] | None = None,
    ) -> DaemonProcess:
        stderr = open(self.stderr_path, "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orca_daemon"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            preexec_fn=preexec_fn,
        )
        stderr.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"orcad exited with {self.process.returncode}:\n{self.output()}"
                )
            if self.paths.socket_file.exists():
                try:
                    with self.client(timeout=1.0) as client:
                        client.hello()
                    return
                except DaemonUnavailable:
                    pass
            time.sleep(0.02)
        raise AssertionError(f"orcad not ready after {timeout}s:\n{self.output()}")

    def client(self, timeout: float = 10.0) -> Client:
        return Client(self.paths, timeout=timeout)

    def name(self) -> str:
        """The daemon's name (`[daemon] name`, or the one it made up)."""
        with self.client() as client:
            return client.hello().daemon_name

    def on_its_log(self, home: Path) -> DaemonProcess:
        """Another daemon, in `home`, on this one's PostgreSQL log (not started)."""
        return DaemonProcess(home, extra_env={"ORCA_LOG_URL": self.env["ORCA_LOG_URL"]})

    def output(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def orca(
        self, *args: str, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `orca` CLI against this daemon."""
        return run_orca(self.env, *args, input=input, timeout=timeout)

    def status(self, run_id: str | None = None) -> StatusResult:
        """One run, or every run (live and ended)."""
        with self.client() as client:
            result: StatusResult = client.request(Status(run_id=run_id, ended=None))
            return result

    def wait_for_run(
        self, run_id: str, statuses: frozenset[str] = TERMINAL_STATUSES, timeout: float = 30.0
    ) -> RunInfo:
        """Poll until the run reaches one of `statuses`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.status(run_id).runs[0]
            if run.status in statuses:
                return run
            time.sleep(0.02)
        raise AssertionError(
            f"run {run_id} did not reach {sorted(statuses)}: {self.status(run_id)}"
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal orcad and wait for it to exit; returns its exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self._stopped(self.process.wait(timeout), sig)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def stop_ending_sessions(self, timeout: float = 30.0) -> int:
        """Stop orcad as `orca daemon stop --cancel-sessions` does: its running sessions end
        (failed, stopped) instead of running on in their holders. Returns orcad's exit status."""
        assert self.process is not None
        with self.client() as client:
            client.request(Shutdown(cancel_sessions=True))
        return self._stopped(self.process.wait(timeout))

    def _stopped(self, code: int, sig: int = signal.SIGTERM) -> int:
        """After a clean stop, the snapshot orcad saved must be the projection of its log:
        every test that stops a daemon checks snapshots against a replay."""
        if code == 0 and sig != signal.SIGKILL:
            assert_snapshot_matches_log(self.paths.state_dir, self.log_source, self.output())
        return code

    def crash_with_sessions(self) -> list[int]:
        """What a reboot does: SIGKILL orcad, then every session holder and agent of this home
        (they run with its ORCA_HOME). Returns the pids killed besides orcad's."""
        self.kill()
        killed = kill_processes_with_env("ORCA_HOME", str(self.home))
        wait_until(
            lambda: not any(process_exists(pid) for pid in killed), what="the holders to die"
        )
        return killed


def short_tempdir(prefix: str = "orca-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@pytest.fixture
def orca_home() -> Iterator[Path]:
    base = short_tempdir()
    home = base / "h"
    yield home
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def holders() -> Iterator[Holders]:
    """Session holders started for real, ended with their agents at the test's end."""
    made = Holders(short_tempdir("orca-h-"))
    yield made
    made.end()


@pytest.fixture
def log_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """What places the daemons' log: nothing, the SQLite file in ORCA_HOME; for a test marked
    `shared_log`, the test's own PostgreSQL database. A module whose tests run on both logs
    overrides it with `any_log_env`."""
    if request.node.get_closest_marker("shared_log") is None:
        return {}
    return {"ORCA_LOG_URL": request.getfixturevalue("postgres_url")}


@pytest.fixture
def other_home() -> Iterator[Path]:
    """A second ORCA_HOME, for a second daemon (whatever it leaves running is ended)."""
    base = short_tempdir()
    yield base / "h"
    kill_processes_with_env("ORCA_HOME", str(base / "h"))
    shutil.rmtree(base, ignore_errors=True)


def two_daemons(
    make_daemon: Callable[..., DaemonProcess], other_home: Path, config: str
) -> tuple[DaemonProcess, DaemonProcess]:
    """Two running daemons on one PostgreSQL log (a test marked `shared_log`), both with the
    config file `config`: the test's own, and one in `other_home`."""
    first = make_daemon()
    write_config(first.home, config)
    write_config(other_home, config)
    first.start()
    return first, first.on_its_log(other_home).start()


@pytest.fixture(params=["sqlite", "postgres"])
def any_log_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The SQLite file, then a PostgreSQL database of the test's own (`ORCA_LOG_URL`)."""
    if request.param == "sqlite":
        return {}
    return {"ORCA_LOG_URL": request.getfixturevalue("postgres_url")}


@pytest.fixture
def make_daemon(orca_home: Path, log_env: dict[str, str]) -> Iterator[Callable[..., DaemonProcess]]:
    """Build (and afterwards stop) daemons on the test's ORCA_HOME (and log: `log_env`)."""
    made: list[DaemonProcess] = []

    def build(**kwargs: Any) -> DaemonProcess:
        kwargs["extra_env"] = {**log_env, **(kwargs.get("extra_env") or {})}
        daemon = DaemonProcess(orca_home, **kwargs)
        made.append(daemon)
        return daemon

    yield build
    for daemon in made:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.stop(signal.SIGKILL)
    # Session holders outlive orcad by design: end those the test's daemons left.
    kill_processes_with_env("ORCA_HOME", str(orca_home))


@pytest.fixture
def daemon(make_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    """A running orcad on a fresh ORCA_HOME."""
    return make_daemon().start()


def agent(name: str, *args: str) -> list[str]:
    """The argv of a command agent under tests/agents/ (or examples/agents/)."""
    path = AGENTS / name if (AGENTS / name).exists() else EXAMPLES / name
    return [sys.executable, str(path), *args]


def wait_until(condition: Callable[[], Any], what: str = "", timeout: float = 20.0) -> Any:
    """Poll `condition` until it returns something truthy (returned); fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")


def parent_of(pid: int) -> int:
    """The parent pid of `pid` (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        return int(handle.read().rsplit(b")", 1)[1].split()[1])


def process_exists(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except OSError:  # gone between the kill and the read (ENOENT, or ESRCH mid-read)
        return False


def records_of(daemon: DaemonProcess, run_id: str) -> list[EventRecord]:
    """Every event of one run, read page by page over the socket."""
    records: list[EventRecord] = []
    with daemon.client() as client:
        while True:
            after = records[-1].position if records else 0
            page = client.request(ReadEvents(after=after, limit=1000, run_id=run_id))
            if not page.events:
                return records
            records.extend(page.events)


def events_of(daemon: DaemonProcess, run_id: str) -> list[dict[str, Any]]:
    return [msgspec.json.decode(r.event) for r in records_of(daemon, run_id)]


def output_of(daemon: DaemonProcess, run_id: str, stream: str = "stdout") -> str:
    """A run's recorded output on one stream, joined."""
    return "".join(
        str(e["text"])
        for e in events_of(daemon, run_id)
        if e["type"] == "output_appended" and e["stream"] == stream
    )


def all_records(daemon: DaemonProcess) -> list[EventRecord]:
    """Every event of the whole log, in order."""
    records: list[EventRecord] = []
    with daemon.client() as client:
        while True:
            after = records[-1].position if records else 0
            page = client.request(ReadEvents(after=after, limit=1000))
            if not page.events:
                return records
            records.extend(page.events)


def all_events(daemon: DaemonProcess) -> list[tuple[int, dict[str, Any]]]:
    """Every event of the whole log, decoded, with its position."""
    return [(r.position, msgspec.json.decode(r.event)) for r in all_records(daemon)]


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A PostgreSQL server for this test process (see support/postgres.py)."""
    from support.postgres import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database of this test's own."""
    from support.postgres import fresh_database

    with fresh_database(postgres_server_url) as url:
        yield url
