"""`orca daemon start|stop|reload|status|install`: run orcad in the background and look after
it."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec

from orca_client.cli.common import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, Args
from orca_client.client import (
    START_HINT,
    Client,
    DaemonUnavailable,
    OrcaClientError,
    RequestFailed,
    fetch_status,
)
from orca_client.paths import InsecurePathError, OrcaPaths, ensure_private_dir, resolve_paths
from orca_client.systemd_unit import ORCA_ENVIRONMENT, UnitError, render_unit
from orca_client.terminal_text import one_line, visible
from orca_client.views import TERMINAL_STATUSES, RunInfo, SessionInfo
from orca_client.wire import HelloResult, Reload, ReloadResult, Shutdown, Status


def cmd_daemon(args: Args) -> int:
    """Carry out `orca daemon ACTION`; returns the exit status."""
    action = args.daemon_command
    if action == "start":
        return start(timeout=args.timeout, as_json=args.json)
    if action == "stop":
        return stop(timeout=args.timeout, force=args.force, cancel_sessions=args.cancel_sessions)
    if action == "status":
        return status(as_json=args.json)
    if action == "reload":
        return reload(check=args.check, as_json=args.json)
    return install(force=args.force)


def daemon_command() -> list[str]:
    """How to run orcad from this installation: the `orcad` beside this Python, else -m."""
    beside = Path(sys.executable).with_name("orcad")
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-m", "orca_daemon"]


def _hello(paths: OrcaPaths, timeout: float = 2.0) -> HelloResult | None:
    try:
        with Client(paths, timeout=timeout) as client:
            return client.hello()
    except DaemonUnavailable:
        return None


def start(timeout: float, as_json: bool) -> int:
    paths = resolve_paths()
    try:
        hello, started = ensure_running(paths, timeout)
    except StartFailed as exc:
        print(f"orca: {exc}", file=sys.stderr)
        return exc.status
    if started:
        text = f"orcad started (pid {hello.pid}); log: {paths.daemon_log_file}"
    else:
        text = f"orcad is already running (pid {hello.pid})"
    _print_hello(hello, as_json, text)
    return EXIT_OK


class StartFailed(Exception):
    """orcad could not be started, or did not become ready; `status` is the exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


def ensure_running(paths: OrcaPaths, timeout: float) -> tuple[HelloResult, bool]:
    """orcad's hello, once it answers: started in the background (its output appended to
    orcad.log) if it did not answer already; and whether it was started now. Writes nothing;
    StartFailed says what went wrong."""
    try:
        hello = _hello(paths)
        if hello is not None:
            return hello, False
        for directory in {paths.state_dir, paths.runtime_dir}:
            ensure_private_dir(directory)
        log_start = _size(paths.daemon_log_file)
        process = _spawn(paths.daemon_log_file)
    except (InsecurePathError, OSError) as exc:
        raise StartFailed(f"refusing to start orcad: {_reason(exc)}") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartFailed(
                f"orcad exited with status {process.returncode} during start-up:\n"
                + _tail(paths.daemon_log_file, log_start)
            )
        hello = _hello(paths, timeout=1.0) if paths.socket_file.exists() else None
        if hello is not None:
            _reap_when_it_ends(process)
            return hello, True
        time.sleep(0.05)
    _reap_when_it_ends(process)
    raise StartFailed(
        f"orcad did not become ready within {timeout:.0f}s; see {paths.daemon_log_file}",
        EXIT_UNAVAILABLE,
    )


def _spawn(log_file: Path) -> subprocess.Popen[bytes]:
    """orcad in its own session, its output appended to `log_file` (made 0600)."""
    log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return subprocess.Popen(
            daemon_command(),
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(log_fd)


def _reap_when_it_ends(process: subprocess.Popen[bytes]) -> None:
    """Wait for orcad in a thread of its own: a long-lived caller (`orca bridge --start`) is its
    parent, and an orcad nobody waits for stays a zombie once stopped (and `orca daemon stop`
    waits for it in vain). The thread ends with orcad, or with this process."""
    threading.Thread(target=process.wait, name="reap orcad", daemon=True).start()


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename is not None else ""
        return f"{exc.strerror.lower()}{where}"
    return str(exc)


def stop(timeout: float, force: bool = False, cancel_sessions: bool = False) -> int:
    """Stop orcad. Its running sessions keep running in their holders, and the next orcad
    re-attaches to them; with `cancel_sessions` they end (failed): then, with live runs, it first
    says which and asks on a terminal, and without a terminal it needs `force`."""
    paths = resolve_paths()
    try:
        with Client(paths) as client:
            pid = client.hello().pid
            status = fetch_status(client, Status(ended=0))
            live, running = status.runs, _running(status.sessions)
            if cancel_sessions and live and not force:
                _tell_live_runs(live)
                if not sys.stdin.isatty():
                    print(
                        "orca: not stopping orcad: it would end these runs; "
                        "stop it anyway with: orca daemon stop --cancel-sessions --force",
                        file=sys.stderr,
                    )
                    return EXIT_USAGE
                if not _confirm("stop orcad and end them? [y/N] "):
                    print("orcad is still running", file=sys.stderr)
                    return EXIT_FAILED
            elif cancel_sessions and live:
                _tell_live_runs(live)
            # It may stop before its reply goes out: either way, watch the process below.
            with contextlib.suppress(DaemonUnavailable):
                client.request(Shutdown(cancel_sessions=cancel_sessions), timeout=5.0)
    except DaemonUnavailable:
        print("orcad is not running")
        return EXIT_OK
    except OrcaClientError as exc:
        print(f"orca: {exc}", file=sys.stderr)
        return EXIT_FAILED
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _process_exists(pid):
            print(f"orcad stopped (pid {pid})")
            if running and not cancel_sessions:
                print(
                    f"{running} session{' keeps' if running == 1 else 's keep'} running; orcad "
                    "will re-attach to them when it starts (orca daemon start). To end them "
                    "instead: orca daemon start, then orca daemon stop --cancel-sessions"
                )
            return EXIT_OK
        time.sleep(0.05)
    print(f"orca: orcad (pid {pid}) is still stopping after {timeout:.0f}s", file=sys.stderr)
    return EXIT_FAILED


SHOWN_LIVE_RUNS = 10


def _running(sessions: list[SessionInfo]) -> int:
    """Sessions whose agent runs now (they keep running when orcad stops)."""
    return sum(s.status not in TERMINAL_STATUSES and s.pid is not None for s in sessions)


def _tell_live_runs(live: list[RunInfo]) -> None:
    """On stderr: the live runs that stopping orcad with --cancel-sessions ends (their running
    sessions are recorded failed; work orcad had decided on but not started resumes at its
    next start)."""
    print(
        f"orcad has {len(live)} live run{'s' if len(live) != 1 else ''}; stopping it with "
        "--cancel-sessions ends their running sessions (recorded as failed):",
        file=sys.stderr,
    )
    for run in live[:SHOWN_LIVE_RUNS]:
        print(visible(f"  {run.run_id}  {run.status}  {one_line(run.title)}"), file=sys.stderr)
    if len(live) > SHOWN_LIVE_RUNS:
        print(f"  … and {len(live) - SHOWN_LIVE_RUNS} more (orca status)", file=sys.stderr)


def _confirm(question: str) -> bool:
    try:
        reply = input(question)
    except EOFError:
        print(file=sys.stderr)
        return False
    return reply.strip().lower() in ("y", "yes")


def reload(check: bool, as_json: bool) -> int:
    """`orca daemon reload`: orcad reads its config file again (with `check`: only compares)."""
    try:
        with Client(resolve_paths()) as client:
            result: ReloadResult = client.request(Reload(dry_run=check))
    except DaemonUnavailable as exc:
        print(f"orca: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except RequestFailed as exc:
        print(visible(f"orca: config not reloaded: {exc}"), file=sys.stderr)
        return EXIT_FAILED
    if as_json:
        print(msgspec.json.encode(result).decode())
        return EXIT_OK if result.error is None else EXIT_FAILED
    if result.error is not None:
        print(visible(f"orca: a reload would be refused: {result.error}"), file=sys.stderr)
        return EXIT_FAILED
    done = "orcad reloaded" if result.applied else "a reload would apply"
    if not result.changed:
        print(f"{done} {result.config_file}: nothing changed")
        return EXIT_OK
    at_once = [key for key in result.changed if key not in result.needs_restart]
    print(f"{done} {result.config_file}")
    if at_once:
        print(f"  changed: {', '.join(at_once)}")
    if result.needs_restart:
        print(
            f"  needs a restart (orca daemon stop; orca daemon start): "
            f"{', '.join(result.needs_restart)}"
        )
    return EXIT_OK


def status(as_json: bool) -> int:
    paths = resolve_paths()
    hello = _hello(paths)
    if hello is None:
        if as_json:
            print(
                msgspec.json.encode({"running": False, "socket": str(paths.socket_file)}).decode()
            )
        else:
            print(f"orcad is not running (no answer on {paths.socket_file}); {START_HINT}")
        return EXIT_UNAVAILABLE
    if as_json:
        data = msgspec.to_builtins(hello)
        data.update(running=True, socket=str(paths.socket_file), config=str(paths.config_file))
        print(msgspec.json.encode(data).decode())
        return EXIT_OK
    uptime = int(time.time() - hello.started_at)
    print(f"orcad {hello.daemon_version} is running (pid {hello.pid}, up {uptime}s)")
    if hello.daemon_name:
        print(f"  name     {hello.daemon_name}")
    print(f"  socket   {paths.socket_file}")
    print(f"  log      {hello.log_file} (position {hello.head_position})")
    print(f"  config   {paths.config_file}")
    return EXIT_OK


def install(force: bool) -> int:
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    unit_path = config_home / "systemd" / "user" / "orcad.service"
    if unit_path.exists() and not force:
        print(f"orca: {unit_path} exists; use --force to overwrite it", file=sys.stderr)
        return EXIT_FAILED
    command = daemon_command()
    exec_start = " ".join(command) if len(command) > 1 else command[0]
    environment = {
        name: str(Path(value).expanduser().absolute())
        for name in ORCA_ENVIRONMENT
        if (value := os.environ.get(name))
    }
    try:
        text = render_unit(exec_start, _documentation(), environment)
    except UnitError as exc:
        print(f"orca: cannot write the unit: {exc}", file=sys.stderr)
        return EXIT_FAILED
    unit_path.parent.mkdir(parents=True, exist_ok=True)
    unit_path.write_text(text)
    print(f"wrote {unit_path}")
    for name, value in environment.items():
        print(f"  with {name}={value} (as in this shell), so orcad uses the same files")
    print("enable and start it with:")
    print("  systemctl --user daemon-reload")
    print("  systemctl --user enable --now orcad.service")
    print("then follow its log with: journalctl --user -u orcad -f")
    print(
        "agents started by it get the user manager's environment, not this shell's: put what "
        "they need (PATH, API keys) in ~/.config/orca/agents.env, as KEY=value lines"
    )
    if shutil.which("systemctl") is None:
        print("(systemctl was not found on this machine)")
    return EXIT_OK


def _documentation() -> list[Path]:
    """This installation's README and architecture notes, when they are on disk (a checkout or an
    editable install)."""
    checkout = Path(__file__).resolve().parents[2]  # orca_client/cli/daemon.py
    found = [checkout / "README.md", checkout / "docs" / "ARCHITECTURE.md"]
    return [path for path in found if path.is_file()]


def _print_hello(hello: HelloResult, as_json: bool, text: str) -> None:
    print(msgspec.json.encode(hello).decode() if as_json else text)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _tail(path: Path, start: int, lines: int = 20) -> str:
    """The last `lines` lines `path` got after byte `start`: this start-up's, not earlier ones'."""
    try:
        with path.open("rb") as handle:
            handle.seek(start)
            text = handle.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return visible("\n".join(text.splitlines()[-lines:])) or "(it wrote nothing)"
