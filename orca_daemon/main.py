"""`orcad`, the composition root: the log, the projection, runs, orchestration and the socket,
each component started in one task tree (`await tg.start(component.run)`).

Start-up: check paths and token, take the lock, replay the log, reconcile sessions left in
flight, bind, tell systemd READY. SIGTERM: stop serving, end sessions in a recorded state, let the
writer finish, close. SIGHUP (or a `reload` request): read the config file again (`ConfigReloader`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import msgspec

from orca_client.paths import InsecurePathError, OrcaPaths, ensure_private_dir, resolve_paths
from orca_client.wire import ReloadResult, WireError
from orca_daemon import __version__
from orca_daemon.collector import tune_collector
from orca_daemon.config import (
    LOG_URL_VARIABLE,
    Config,
    ConfigError,
    DaemonSettings,
    agent_names,
    changes,
    load_config,
)
from orca_daemon.limits import connection_cap, descriptor_limit, raise_descriptor_limit
from orca_daemon.log.records import StoredEvent, StoreError
from orca_daemon.log.store import DaemonIdentity, EventStore
from orca_daemon.orchestration.adoption import Adopter
from orca_daemon.orchestration.fanout import FanOutCoordinator
from orca_daemon.orchestration.hooks import TRACKING as HOOKS_TRACKING
from orca_daemon.orchestration.hooks import HookRunner
from orca_daemon.orchestration.notifications import TRACKING as NOTIFICATIONS_TRACKING
from orca_daemon.orchestration.notifications import NotificationRunner
from orca_daemon.orchestration.parents import ParentCoordinator
from orca_daemon.orchestration.plan_verify import PlanVerifier
from orca_daemon.orchestration.plans import PlanCoordinator
from orca_daemon.orchestration.reactions import Reactions
from orca_daemon.orchestration.reactor import Reactor
from orca_daemon.orchestration.recovery import reconcile, shutdown
from orca_daemon.orchestration.relayed import RelayedRequests
from orca_daemon.runs.admission import Admission
from orca_daemon.runs.launcher import Launcher
from orca_daemon.runs.lifecycle import Lifecycle
from orca_daemon.runs.relay import Relay
from orca_daemon.runs.run_log import RunLog
from orca_daemon.runs.supervisor import Supervisor
from orca_daemon.runs.world import RunWorld
from orca_daemon.sessions.process import PumpSettings
from orca_daemon.socket.api import Api, RunServices
from orca_daemon.socket.server import Server
from orca_daemon.socket.subscriptions import Subscriptions
from orca_daemon.state.projection import State, apply
from orca_daemon.state.snapshot_keeper import SNAPSHOT_NAME, SnapshotKeeper, load_snapshot
from orca_daemon.systemd import Notifier
from orca_daemon.token import load_or_create_token

log = logging.getLogger("orcad")

MAX_IPC_PATH = 107
REPLAY_PAGE = 10_000
REPLAY_PAGE_BYTES = 8 << 20


def log_url(config: Config) -> str | None:
    """The PostgreSQL log's URL (`ORCA_LOG_URL`, else `[log] url`); None: the SQLite file."""
    return os.environ.get(LOG_URL_VARIABLE) or config.log.url


def daemon_name(config: Config, paths: OrcaPaths) -> str:
    """`[daemon] name`, else the host's name and a digest of the state directory."""
    if config.daemon.name:
        return config.daemon.name
    host = socket.gethostname().split(".")[0] or "orcad"
    digest = hashlib.sha256(str(paths.state_dir).encode()).hexdigest()[:6]
    return f"{host}-{digest}"


class StartupError(Exception):
    """orcad cannot start; the message says why and what to do."""


@contextlib.contextmanager
def hold_locks(paths: OrcaPaths) -> Iterator[None]:
    """Hold an exclusive lock beside the log and the socket for the daemon's lifetime.

    Binding an `ipc://` path that another daemon holds would silently steal it, so a second
    orcad on the same home must stop here.
    """
    handles = []
    try:
        for lock_path in paths.lock_files:
            handle = open(lock_path, "a+")  # noqa: SIM115 - held open for the daemon's life
            handles.append(handle)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StartupError(
                    f"another orcad is already running for {paths.state_dir} "
                    f"(it holds {lock_path}); stop it with `orca daemon stop`"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        yield
    finally:
        for handle in handles:
            handle.close()


def prepare(paths: OrcaPaths) -> bytes:
    """Create or check the private directories and the token; returns the token."""
    for directory in {paths.state_dir, paths.runtime_dir}:
        ensure_private_dir(directory)
    if len(str(paths.socket_file)) > MAX_IPC_PATH:
        raise StartupError(
            f"socket path {paths.socket_file} is longer than {MAX_IPC_PATH} characters; "
            "set ORCA_HOME or XDG_RUNTIME_DIR to a shorter directory"
        )
    return load_or_create_token(paths.token_file)


class ConfigReloader:
    """Reads the config file again and hands it to the parts that use it. A file with errors
    changes nothing. What changes at once: agents, `[orchestration]` and repositories (for every
    run, session and decision started afterwards; sessions running keep what they started
    with), hooks and notifications (from the next event handled). `[daemon]` and `[log]`
    settings are used from the next start only: they size the log, the socket, subscriptions
    and each session's pump."""

    def __init__(self, path: Path, config: Config) -> None:
        self.path = path
        self.config = config
        self._launcher: Launcher | None = None
        self._hooks: HookRunner | None = None
        self._notifications: NotificationRunner | None = None
        self._lock = anyio.Lock()

    def attach(
        self, launcher: Launcher, hooks: HookRunner, notifications: NotificationRunner
    ) -> None:
        self._launcher, self._hooks, self._notifications = launcher, hooks, notifications

    async def reload(self, dry_run: bool = False) -> ReloadResult:
        """Reload (or, with `dry_run`, only compare); raises ConfigError naming every error
        (a dry run reports them in its result)."""
        async with self._lock:
            try:
                new = await anyio.to_thread.run_sync(load_config, self.path)
            except ConfigError as exc:
                if not dry_run:
                    raise
                return ReloadResult(
                    str(self.path), False, [], [], agent_names(self.config), error=str(exc)
                )
            changed = changes(self.config, new)
            new = msgspec.structs.replace(new, daemon=self.config.daemon, log=self.config.log)
            if not dry_run:
                self.config = new
                if self._launcher is not None:
                    self._launcher.config = new
                if self._hooks is not None:
                    self._hooks.reconfigure(new.hooks.commands(), new.hooks.timeout_seconds)
                if self._notifications is not None:
                    self._notifications.reconfigure(new.notify)
            return ReloadResult(
                config_file=str(self.path),
                applied=not dry_run,
                changed=changed,
                needs_restart=[key for key in changed if key.startswith(("daemon.", "log."))],
                agents=agent_names(self.config),
            )

    async def answer(self, dry_run: bool) -> ReloadResult:
        """`reload` for a client: a bad file is a `bad_request` that lists its errors."""
        try:
            return await self.reload(dry_run)
        except ConfigError as exc:
            raise WireError(
                "bad_request", f"{exc}\norcad goes on with the configuration it had"
            ) from None

    async def on_signal(self, wanted: asyncio.Event) -> None:
        """Reload each time `wanted` is set (SIGHUP); the outcome goes to the log."""
        while True:
            await wanted.wait()
            wanted.clear()
            try:
                result = await self.reload()
            except Exception as exc:  # nothing a config file holds may end orcad
                log.error(
                    "SIGHUP: %s not reloaded; orcad goes on with the configuration it had: %s",
                    self.path,
                    exc if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}",
                )
                continue
            log.info(
                "SIGHUP: reloaded %s; changed: %s; needs a restart: %s",
                self.path,
                ", ".join(result.changed) or "nothing",
                ", ".join(result.needs_restart) or "nothing",
            )


class Daemon:
    """One running orcad: the task tree and its orderly shutdown."""

    def __init__(self, paths: OrcaPaths, config: Config, token: bytes) -> None:
        self._paths = paths
        self._config = config
        self._name = daemon_name(config, paths)
        self._token = token
        self._stop = asyncio.Event()
        self._end_sessions = False
        self._reload_wanted = asyncio.Event()
        self._reloader = ConfigReloader(paths.config_file, config)
        self._notifier = Notifier()

    def _tracking_name(self, name: str) -> str:
        """A reaction's tracking name: with a log several daemons share, each daemon follows
        the log on its own, so each has its own tracking row (`hooks@build-1`)."""
        return name if log_url(self._config) is None else f"{name}@{self._name}"

    def _log_place(self) -> str:
        """Where the log is, for clients: the file, or the database (never its password)."""
        url = log_url(self._config)
        if url is None:
            return str(self._paths.log_file)
        from orca_daemon.log.pg_schema import describe

        return describe(url)

    def request_stop(self, end_sessions: bool = False) -> None:
        """Stop orcad: sessions keep running in their holders unless `end_sessions` (once
        asked for, a later plain stop does not take it back)."""
        self._end_sessions = self._end_sessions or end_sessions
        self._stop.set()

    async def run(self) -> None:
        settings = self._config.daemon
        started_at = time.time()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload_wanted.set)  # handled once serving
        store = await self._open_log()
        try:
            async with anyio.create_task_group() as lease_group:
                # With a shared log, the lease is renewed from the start: replaying a long log
                # must not let other daemons take this one's runs over meanwhile.
                lease_group.start_soon(store.renew_lease)
                await self._run_on(store, settings, started_at)
                lease_group.cancel_scope.cancel()
        finally:
            # With a shared log: sessions left running in their holders wait for this daemon as
            # long as the holders do, and no other daemon takes its runs over meanwhile; once
            # they have ended (--cancel-sessions), another takes the runs over at once.
            end = self._end_sessions
            store.keep_lease_after_close(0.0 if end else settings.orphan_timeout_seconds)
            await store.close()
            self._notifier.close()

    async def _run_on(self, store: EventStore, settings: DaemonSettings, started_at: float) -> None:
        """Load the state, run the writer and serve until asked to stop."""
        snapshot_file = self._paths.state_dir / SNAPSHOT_NAME
        loaded = await load_snapshot(snapshot_file, store)
        saved_at = None if loaded is None else loaded.position  # before the tail is in
        state = await self._replay(store, loaded)
        store.add_listener(lambda events: _fold(state, events))
        keeper = SnapshotKeeper(
            snapshot_file, store, state, settings.snapshot_every_events, saved_at
        )
        async with anyio.create_task_group() as writer_group:
            writer_group.start_soon(store.run_writer)
            try:
                await self._serve(store, state, started_at, keeper)
            finally:
                store.stop_accepting()
        await keeper.save()  # every append is done: the next start replays nothing

    async def _open_log(self) -> EventStore:
        """The log: the SQLite file, or the PostgreSQL database of `[log] url` (or
        `ORCA_LOG_URL`), shared with other daemons, as this daemon (its name and lease)."""
        url = log_url(self._config)
        if url is None:
            return await EventStore.open(self._paths.log_file, self._config.daemon.synchronous)
        identity = DaemonIdentity(
            self._name, str(self._paths.state_dir), self._config.daemon.lease_seconds
        )
        try:
            return await EventStore.open_postgres(url, daemon=identity)
        except StoreError as exc:
            raise StartupError(str(exc)) from None
        except ImportError as exc:  # psycopg is the `postgres` extra
            raise StartupError(
                f"a log in PostgreSQL needs psycopg ({exc}): pip install 'orca[postgres]'"
            ) from None

    async def _replay(self, store: EventStore, loaded: State | None) -> State:
        """`loaded` (from the snapshot), or a new state, with the rest of the log folded in."""
        state = State() if loaded is None else loaded
        start = state.position
        while page := await store.read_all(
            after=state.position, limit=REPLAY_PAGE, max_bytes=REPLAY_PAGE_BYTES
        ):
            _fold(state, page)
        log.info(
            "%s and replayed %d events: %d runs",
            "started empty" if loaded is None else f"loaded the snapshot at position {start}",
            state.position - start,
            len(state.runs),
        )
        return state

    async def _serve(
        self, store: EventStore, state: State, started_at: float, keeper: SnapshotKeeper
    ) -> None:
        settings = self._config.daemon
        pump = PumpSettings(
            output_chunk_chars=settings.output_chunk_chars,
            output_flush_seconds=settings.output_flush_seconds,
            max_line_bytes=settings.max_line_bytes,
            orphan_timeout_seconds=settings.orphan_timeout_seconds,
        )
        runs_dir = self._paths.state_dir / "runs"
        shared = log_url(self._config) is not None
        run_log = RunLog(store, state, self._name if shared else None)
        acts_for = run_log.acts_for if shared else None
        launcher = Launcher(self._config, state)
        admission = Admission()
        lifecycle = Lifecycle(run_log)
        supervisor = Supervisor(
            run_log,
            lifecycle,
            admission,
            pump,
            settings.cancel_grace_seconds,
            runs_dir,
            self._paths.runtime_dir,
            lambda: launcher.config.orchestration.heartbeat_seconds,
        )
        world = RunWorld(run_log, launcher, supervisor, lifecycle, admission)
        verifier = PlanVerifier(world)
        fanout = FanOutCoordinator(world)
        plans = PlanCoordinator(world, verifier)
        parents = ParentCoordinator(world)
        relayed = RelayedRequests(run_log, lifecycle, supervisor, self._name) if shared else None
        relay = Relay(run_log, self._name) if shared else None
        if relay is not None:
            store.add_listener(relay.on_commit)
        reactor = Reactor(
            state,
            Reactions(world, launcher, fanout, plans, parents, relayed).react,
            acts_for=run_log.acts_for,
        )
        world.follow_with(reactor.mark)
        store.add_listener(reactor.on_commit)
        hooks = HookRunner(
            store,
            state,
            self._config.hooks.commands(),
            self._config.hooks.timeout_seconds,
            acts_for=run_log.acts_for,
            tracking=self._tracking_name(HOOKS_TRACKING),
        )
        notifications = NotificationRunner(
            store,
            state,
            self._config.notify,
            acts_for=run_log.acts_for,
            tracking=self._tracking_name(NOTIFICATIONS_TRACKING),
        )
        self._reloader.attach(launcher, hooks, notifications)
        services = RunServices(
            run_log, launcher, admission, supervisor, lifecycle, fanout, plans, parents
        )
        async with anyio.create_task_group() as work:
            await work.start(keeper.run)
            await work.start(supervisor.run)
            await work.start(verifier.run)
            await reconcile(state, lifecycle, launcher, supervisor, reactor.mark, acts_for)
            if shared:
                adopter = Adopter(
                    store,
                    state,
                    lifecycle,
                    launcher,
                    supervisor,
                    admission,
                    reactor.mark,
                    settings.lease_seconds / 3,
                )
                await work.start(adopter.run)
            await work.start(reactor.run)
            await work.start(hooks.run)
            await work.start(notifications.run)
            work.start_soon(self._reloader.on_signal, self._reload_wanted)
            server = Server(
                self._paths.socket_endpoint,
                self._token,
                started_at,
                connection_cap(descriptor_limit()),
            )
            try:
                subscriptions = Subscriptions(
                    store,
                    server,
                    settings.subscriber_queue_events,
                    settings.subscription_lease_seconds,
                )
                await work.start(subscriptions.run)
                api = Api(
                    store=store,
                    state=state,
                    runs=services,
                    subscriptions=subscriptions,
                    instance=secrets.token_hex(8),
                    started_at=started_at,
                    log_file=self._log_place(),
                    daemon_name=self._name,
                    relay=relay,
                    request_shutdown=self.request_stop,
                    reload_config=self._reloader.answer,
                )
                server.bind()
                await work.start(server.run, api)
                work.start_soon(self._notifier.run_watchdog, settings.watchdog_fraction)
                log.info("orcad %s listening on %s", __version__, self._paths.socket_endpoint)
                self._notifier.ready(f"serving {len(state.runs)} runs")
                await self._stop.wait()
                server.stop_receiving()
                end_sessions = self._end_sessions
                self._notifier.stopping(
                    "ending sessions" if end_sessions else "letting go of sessions"
                )
                await shutdown(admission, reactor.stop, supervisor, lifecycle, end_sessions)
                await hooks.stop(grace=settings.cancel_grace_seconds)
                await notifications.stop(grace=settings.cancel_grace_seconds)
                subscriptions.close_all()
                work.cancel_scope.cancel()
            finally:
                server.close()
                with contextlib.suppress(FileNotFoundError):
                    self._paths.socket_file.unlink()


def _fold(state: State, events: list[StoredEvent]) -> None:
    """Apply each event; one that cannot be read is logged and skipped, never fatal."""
    for stored in events:
        try:
            apply(state, stored)
        except msgspec.ValidationError as exc:
            log.error(
                "skipped unreadable event at position %d (%s): %s",
                stored.position,
                stored.type,
                exc,
            )
            state.position = stored.position


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="orcad",
        description=(
            "The Orca daemon (foreground). Runs agent sessions, records every event in its log, "
            "and serves the `orca` CLI and editor plugins over a token-authenticated socket. "
            "Usually started by `orca daemon start` or the systemd user unit."
        ),
        epilog=(
            "Files: ORCA_HOME puts the log, socket, token and config.toml in one directory; "
            "otherwise $XDG_STATE_HOME/orca (log), $XDG_RUNTIME_DIR/orca (socket, token) and "
            "$XDG_CONFIG_HOME/orca/config.toml. ORCA_CONFIG names another config file; "
            "SIGHUP (or `orca daemon reload`) reads it again. "
            "Exit status: 0 after a clean stop, 1 when it cannot start, 2 on a bad config file."
        ),
    )
    parser.add_argument("--version", action="version", version=f"orcad {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("ORCA_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default INFO, or $ORCA_LOG_LEVEL)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # everything orcad creates is private, however it was started
    # Until the event loop handles SIGHUP (a reload), one must not kill orcad. The loop's own
    # handler replaces this before any agent starts, so agents get SIGHUP's default again.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    args = _parse_args(argv)
    under_systemd = "INVOCATION_ID" in os.environ or "NOTIFY_SOCKET" in os.environ
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s"
        if under_systemd
        else "%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    raise_descriptor_limit()
    tune_collector()
    paths = resolve_paths()
    try:
        config = load_config(paths.config_file)
    except ConfigError as exc:
        print(f"orcad: bad configuration: {exc}", file=sys.stderr)
        return 2
    try:
        token = prepare(paths)
        with hold_locks(paths):
            asyncio.run(Daemon(paths, config, token).run())
    except (StartupError, InsecurePathError) as exc:
        print(f"orcad: refusing to start: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"orcad: cannot start: {exc}", file=sys.stderr)
        return 1
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
