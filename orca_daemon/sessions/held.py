"""orcad's side of a session holder (holder.py): start one, attach to it, read what it left.

A holder starts the agent, spools its output to files and outlives orcad; orcad talks to it over
a unix socket in `socket_dir`. Frames both ways are 1 byte kind + 4 bytes big-endian length +
payload (1 MiB at most; 4 KiB before the hello is accepted). To the holder: `h` hello (JSON:
version, secret, nonce, stdout and stderr offsets), `i` stdin bytes, `c` close the agent's stdin
once what the holder holds for it is written, `a` the exit is collected (the holder exits once
the exit is final and, if this client is still attached, sent to it; it may come early). From
it: `w` welcome (JSON: proof = HMAC-SHA256 keyed by the secret's hex text over the nonce's hex
text, pids, stdin_received = bytes for the agent's stdin so far (its initial input included),
stdin_written = those of them written into its pipe, stdin_closed, the exit if any), `o`/`e`
output from the offsets asked, `s` stdin progress, sent when it changed (8 bytes big-endian
stdin_received, 8 bytes stdin_written, 1 byte: 1 once the pipe is closed and nothing more will
be written; the holder tries the pipe as soon as it receives `i`, so the first `s` after it says
whether the pipe took it), `x` the exit (final: everything the agent printed is spooled).

Files in `spool_dir`: `stdout` and `stderr` (append-only: everything the agent printed),
`exit.json` (the exit, once final; written again until the disk takes it), `holder.log`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import os
import secrets
import select
import shutil
import socket
import struct
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread

from orca_client.paths import HOLDERS_NAME, ensure_private_dir
from orca_daemon.limits import INHERITED_DESCRIPTOR_LIMIT
from orca_daemon.sessions.procs import process_start_ticks
from orca_daemon.sessions.zygote import ZYGOTE, ZygoteSilent

__all__ = [
    "HeldAgent",
    "HeldInput",
    "HolderError",
    "HolderExit",
    "HolderGone",
    "HolderLaunch",
    "HolderPlaces",
    "attach_holder",
    "read_exit",
    "remove_places",
    "spool_bytes",
    "start_holder",
]

VERSION = 1
MAX_PAYLOAD = 1 << 20
STDIN_FRAME = 256 << 10
READY_TIMEOUT = 10.0
WELCOME_TIMEOUT = 10.0
Stream = Literal["stdout", "stderr"]


class HolderError(Exception):
    """A holder could not be started or reached, with why (for the session's end reason)."""


class HolderGone(HolderError):
    """No holder answers for this session (none started, or it has exited / died)."""


@dataclass(frozen=True)
class HolderPlaces:
    """Where a session's holder keeps its socket and secret, and its spooled output."""

    socket_dir: Path
    spool_dir: Path

    @classmethod
    def of(cls, runtime_dir: Path, runs_dir: Path, run_id: str, session_id: str) -> HolderPlaces:
        return cls(
            runtime_dir / HOLDERS_NAME / session_id, runs_dir / run_id / "spool" / session_id
        )


@dataclass(frozen=True)
class HolderLaunch:
    command: list[str]
    cwd: str
    env: dict[str, str]
    initial_input: bytes = b""
    close_input: bool = False
    orphan_timeout: float = 86_400.0
    exit_drain: float = 2.0
    hello_timeout: float = 5.0
    """How long a connection may take to say hello (shorter in tests)."""
    kill_grace: float = 5.0
    """After the orphan timeout's SIGTERM, how long before SIGKILL (shorter in tests)."""


@dataclass(frozen=True)
class HolderExit:
    """How the agent ended (exit.json, and the `x` frame)."""

    exit_code: int
    """Popen-style: the negative signal number when a signal killed it."""
    stdout: int
    stderr: int
    """The spool files' sizes: all the agent printed."""
    stdin_dropped: int
    """Bytes for its stdin it never read (it had exited or closed its stdin)."""

    @classmethod
    def parse(cls, data: Any) -> HolderExit:
        try:
            fields = {name: data[name] for name in ("exit_code", "stdout", "stderr")}
            exit = cls(**fields, stdin_dropped=data.get("stdin_dropped", 0))
        except (TypeError, KeyError, AttributeError):
            raise HolderError(f"the holder described the exit wrongly: {data!r:.200}") from None
        if not all(type(value) is int for value in vars(exit).values()):
            raise HolderError(f"the holder described the exit wrongly: {data!r:.200}")
        return exit


def _frame(kind: bytes, payload: bytes) -> bytes:
    return kind + len(payload).to_bytes(4, "big") + payload


class HeldInput:
    """The agent's stdin, through the holder, as a pipe of its own would be: `buffered` is what
    is not in the agent's pipe yet (here, on the way, or held by the holder), `drain` waits
    until nothing is. The holder's `s` frames (read by HeldAgent.read) say how far it got."""

    def __init__(self, writer: asyncio.StreamWriter, welcome: dict[str, Any]) -> None:
        self._writer = writer
        self._sent: int = welcome["stdin_received"]
        """Bytes for the agent's stdin given to the holder (by anyone) or on their way."""
        self._written: int = welcome["stdin_written"]
        """Of those, the bytes the holder has written into the agent's pipe."""
        self._received: int = welcome["stdin_received"]
        """What the holder last said it has received."""
        self._closed: bool = welcome["stdin_closed"]
        self._pipe_closed = False
        self._broken: HolderError | None = None
        self._progress = asyncio.Event()
        writer.transport.set_write_buffer_limits(high=0)

    def write(self, data: bytes) -> None:
        if self.is_closing():
            return
        for start in range(0, len(data), STDIN_FRAME):
            self._writer.write(_frame(b"i", data[start : start + STDIN_FRAME]))
        self._sent += len(data)

    async def drain(self) -> None:
        """Return once the holder has written everything into the agent's pipe. Raises
        BrokenPipeError when the pipe closed first (the agent exited or closed its stdin),
        HolderGone when the connection broke."""
        while not (self._closed or self._writer.is_closing()) and self._written < self._sent:
            if self._broken is not None:
                raise self._broken
            if self._pipe_closed:
                raise BrokenPipeError(f"the agent's stdin closed with {self.buffered()} unread")
            progress = self._progress
            try:
                await self._writer.drain()
            except (ConnectionError, RuntimeError) as exc:
                raise HolderGone(f"the connection to the holder broke: {exc}") from exc
            await progress.wait()

    async def settle(self) -> None:
        """Return once the holder has said what became of everything written here: all of it
        is in the agent's pipe, or some waits because the pipe is full (or closed)."""
        while not self.is_closing() and self._written < self._sent:
            if self._broken is not None or self._written < self._received:
                return
            await self._progress.wait()

    def close(self) -> None:
        """Ask the holder to close the agent's stdin once what it holds is written."""
        if not self.is_closing():
            self._writer.write(_frame(b"c", b""))
        self._closed = True
        self._woken()

    def is_closing(self) -> bool:
        return self._closed or self._pipe_closed or self._writer.is_closing()

    def buffered(self) -> int:
        """Bytes written here (or by an earlier orcad) not yet in the agent's pipe."""
        return self._sent - self._written

    def abort(self) -> None:
        """Stop writing (the agent has exited): what the holder did not write is dropped."""
        self._closed = True
        self._woken()

    def progressed(self, payload: bytes) -> None:
        """An `s` frame: the holder has received this much, written this much into the pipe
        (and closed it)."""
        if len(payload) != 17:
            raise HolderError(f"the holder sent a stdin progress of {len(payload)} bytes")
        self._received = int.from_bytes(payload[:8], "big")
        self._written = int.from_bytes(payload[8:16], "big")
        self._pipe_closed = self._pipe_closed or payload[16] != 0
        self._woken()

    def broken(self, error: HolderError) -> None:
        self._broken = error
        self._woken()

    def _woken(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()


class HeldAgent:
    """One connection to a session's holder."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        welcome: dict[str, Any],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.pid: int = welcome["pid"]
        """The agent's."""
        self.start_ticks: int | None = welcome["start_ticks"]
        self.holder_pid: int = welcome["holder_pid"]
        self.holder_start_ticks: int | None = welcome["holder_start_ticks"]
        self.stdin_received: int = welcome["stdin_received"]
        """Bytes for the agent's stdin the holder has had so far (its initial input too)."""
        self.stdin_closed: bool = welcome["stdin_closed"]
        exit = welcome["exit"]
        self.exit: HolderExit | None = None if exit is None else HolderExit.parse(exit)
        self.returncode: int | None = None if self.exit is None else self.exit.exit_code
        self.stdin = HeldInput(writer, welcome)
        self._ended = False
        self._exited = asyncio.Event()
        self._reading = False
        self._broken: HolderError | None = None

    async def read(self) -> tuple[Stream, bytes] | None:
        """The next piece of output (in the order the holder sends it); None once the agent has
        exited and all its output has come (returncode is set then). Raises HolderGone when the
        connection breaks first (the holder died). Stdin progress on the way goes to `stdin`."""
        while not self._ended:
            self._reading = True
            try:
                kind, payload = await self._next_frame()
            finally:
                self._reading = False
            if kind == b"o":
                return "stdout", payload
            if kind == b"e":
                return "stderr", payload
            if kind == b"s":
                try:
                    self.stdin.progressed(payload)
                except HolderError as exc:
                    raise self._break(exc) from None
                continue
            if kind == b"x":
                self.exit = HolderExit.parse(_json(payload))
                self.returncode = self.exit.exit_code
                self._ended = True
                self._exited.set()
                return None
            raise self._break(HolderError(f"the holder sent an unknown frame {kind!r}"))
        return None

    async def _next_frame(self) -> tuple[bytes, bytes]:
        if self._broken is not None:
            raise self._broken
        try:
            header = await self._reader.readexactly(5)
            length = int.from_bytes(header[1:], "big")
            if length > MAX_PAYLOAD:
                raise self._break(HolderError(f"the holder sent a frame of {length} bytes"))
            return header[:1], await self._reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise self._break(HolderGone(f"the connection to the holder broke: {exc}")) from exc

    def _break(self, error: HolderError) -> HolderError:
        self._broken = error
        self._exited.set()
        self.stdin.broken(error)
        self._writer.close()
        return error

    async def wait_exited(self) -> int:
        """Return the agent's returncode once the exit frame came. While nobody else reads,
        this reads (and drops) the output that comes before it."""
        while not self._ended:
            if self._broken is not None:
                raise self._broken
            if self._reading:
                await self._exited.wait()
            else:
                await self.read()
        assert self.returncode is not None
        return self.returncode

    async def acknowledge(self) -> None:
        """Send `a` and close: the holder exits."""
        with contextlib.suppress(ConnectionError, RuntimeError):
            if not self._writer.is_closing():
                self._writer.write(_frame(b"a", b""))
            self._writer.close()
            await self._writer.wait_closed()

    def detach(self) -> None:
        """Close the connection; the holder keeps the agent running."""
        self.stdin.abort()
        self._writer.close()


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        raise HolderError(f"the holder sent garbage: {payload[:200]!r}") from None


def _log_tail(places: HolderPlaces, size: int = 2000) -> str:
    try:
        with open(places.spool_dir / "holder.log", "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - size))
            tail = handle.read().decode(errors="replace").strip()
    except OSError:
        return ""
    return f"; holder.log ends with: {tail}" if tail else ""


def _private_file(path: Path, data: bytes | None = None) -> int:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(descriptor, 0o600)
    if data is not None:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, data)
    return descriptor


async def start_holder(places: HolderPlaces, launch: HolderLaunch) -> HeldAgent:
    """Create the dirs (0700) and secret (0600), launch the holder, read its ready line, attach at
    offsets 0. Raises HolderError (with the agent's spawn error text when the agent could not
    start).

    The launch runs on a worker thread: its directories, files, fork and exec, and the wait for
    the holder's ready line are blocking calls, and with many sessions starting on a busy
    machine they held orcad's loop (and every running session's output) for seconds."""
    ready = await anyio.to_thread.run_sync(
        _launch_holder, places, launch, limiter=_launch_limiter()
    )
    if "error" in ready:
        raise HolderError(str(ready["error"]))
    try:
        expected = (int(ready["holder_pid"]), ready["holder_start_ticks"])
    except (KeyError, TypeError, ValueError):
        raise HolderError(f"the holder said {ready!r:.200}{_log_tail(places)}") from None
    return await attach_holder(places, 0, 0, expected=expected)


LAUNCHES_AT_ONCE = 16
"""Holder launches on worker threads at a time: each may wait up to READY_TIMEOUT, and a burst
of starts must not take every thread that orcad's other blocking work uses."""
_launch_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


def _launch_limiter() -> anyio.CapacityLimiter:
    """This event loop's limiter of holder launches."""
    loop = asyncio.get_running_loop()
    limiter = _launch_limiters.get(loop)
    if limiter is None:
        limiter = _launch_limiters[loop] = anyio.CapacityLimiter(LAUNCHES_AT_ONCE)
    return limiter


def _launch_holder(places: HolderPlaces, launch: HolderLaunch) -> dict[str, Any]:
    """Blocking: the holder's places, its process, its spec handed over and its ready line."""
    for directory in (places.socket_dir.parent, places.socket_dir):
        ensure_private_dir(directory)
    for directory in (places.spool_dir.parent, places.spool_dir):
        ensure_private_dir(directory)
    secret = secrets.token_hex(32)
    os.close(_private_file(places.socket_dir / "secret", secret.encode()))
    spec = {
        "version": VERSION,
        "secret": secret,
        "command": launch.command,
        "cwd": launch.cwd,
        "env": launch.env,
        "spool_dir": str(places.spool_dir),
        "socket_dir": str(places.socket_dir),
        "orphan_timeout": launch.orphan_timeout,
        "initial_input": base64.b64encode(launch.initial_input).decode(),
        "close_input": launch.close_input,
        "nofile": INHERITED_DESCRIPTOR_LIMIT,
        "exit_drain": launch.exit_drain,
        "hello_timeout": launch.hello_timeout,
        "kill_grace": launch.kill_grace,
    }
    encoded = json.dumps(spec).encode()
    try:
        return _fork_holder(places, encoded)
    except ZygoteSilent:  # it died as it was asked: a new one, with new pipes
        try:
            return _fork_holder(places, encoded)
        except ZygoteSilent as exc:
            raise HolderError(f"could not start the holder: {exc}") from exc


def _fork_holder(places: HolderPlaces, spec: bytes) -> dict[str, Any]:
    """One try: the holder's stdio made and handed to the zygote; its ready line. Raises
    ZygoteSilent when the zygote took them without answering (a holder forked unbeknown then
    reads the end of its spec and exits: its descriptors are closed here)."""
    opened: list[int] = []
    try:
        opened.append(log := _private_file(places.spool_dir / "holder.log"))
        opened.extend(spec_pipe := os.pipe())
        opened.extend(said_pipe := os.pipe())
        leader = ZYGOTE.fork(places.spool_dir, spec_pipe[0], said_pipe[1], log)
    except OSError as exc:
        for descriptor in opened:
            os.close(descriptor)
        if isinstance(exc, ZygoteSilent):
            raise
        raise HolderError(f"could not start the holder: {exc}") from exc
    for descriptor in (log, spec_pipe[0], said_pipe[1]):  # the holder has its own
        os.close(descriptor)
    return _ready_line(leader, spec_pipe[1], said_pipe[0], spec, places)


def _ready_line(
    leader: int, spec_out: int, said_in: int, spec: bytes, places: HolderPlaces
) -> dict[str, Any]:
    """Hand the holder its spec and read the one line it answers with: its parent exits at once,
    and the holder proper closes its stdout once it has said it. Closes both descriptors."""
    try:
        said = _exchange(spec_out, said_in, spec, time.monotonic() + READY_TIMEOUT)
    except (TimeoutError, OSError) as exc:
        # The holder proper stays in the group of the parent, which led a session of its own.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(leader, 9)
        timed_out = isinstance(exc, TimeoutError)
        why = "did not say it was ready in time" if timed_out else str(exc)
        raise HolderError(f"the holder {why}{_log_tail(places)}") from exc
    line = said.split(b"\n", 1)[0]
    try:
        ready = json.loads(line)
        if not isinstance(ready, dict):
            raise ValueError
    except ValueError:
        said_what = f"said {line[:200]!r}" if line else "exited before it was ready"
        raise HolderError(f"the holder {said_what}{_log_tail(places)}") from None
    return ready


def _exchange(spec_out: int, said_in: int, spec: bytes, deadline: float) -> bytes:
    """Write `spec` to one pipe (then close it) while reading the other to its end, by
    `deadline` (TimeoutError); closes both. A holder that exits early leaves its spec unread:
    what it said is returned all the same."""
    said = bytearray()
    left = memoryview(spec)
    try:
        os.set_blocking(spec_out, False)
        poller = select.poll()  # (no descriptor of its own, unlike epoll)
        poller.register(spec_out, select.POLLOUT)
        poller.register(said_in, select.POLLIN)
        while True:
            if not left and spec_out >= 0:
                poller.unregister(spec_out)
                os.close(spec_out)
                spec_out = -1
            wait = deadline - time.monotonic()
            if wait <= 0:
                raise TimeoutError
            for descriptor, _ in poller.poll(wait * 1000):
                if descriptor == said_in:
                    data = os.read(said_in, 65536)
                    if not data:
                        return bytes(said)
                    said += data
                elif descriptor == spec_out:
                    try:
                        left = left[os.write(spec_out, left[:65536]) :]
                    except BlockingIOError:
                        pass
                    except BrokenPipeError:
                        left = left[:0]
    finally:
        if spec_out >= 0:
            os.close(spec_out)
        os.close(said_in)


async def attach_holder(
    places: HolderPlaces,
    stdout: int,
    stderr: int,
    expected: tuple[int, int | None] | None = None,
) -> HeldAgent:
    """Connect to a running holder with the secret from places.socket_dir/'secret', ask for output
    from these offsets, verify its proof, and — when `expected` (holder pid, start ticks) is given
    — that the peer (SO_PEERCRED pid) is that process (pid + start ticks). HolderGone when there
    is no socket / nobody listens / no secret file; HolderError when it answers wrongly."""
    try:
        secret = (places.socket_dir / "secret").read_text().strip()
        directory = os.open(places.socket_dir, os.O_PATH | os.O_DIRECTORY)
    except FileNotFoundError as exc:
        raise HolderGone(f"no holder for this session: {exc}") from None
    except OSError as exc:
        raise HolderError(f"cannot reach the holder: {exc}") from exc
    try:
        reader, writer = await asyncio.open_unix_connection(path=f"/proc/self/fd/{directory}/sock")
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise HolderGone(f"no holder listens for this session: {exc}") from None
    except OSError as exc:
        raise HolderError(f"cannot reach the holder: {exc}") from exc
    finally:
        os.close(directory)
    try:
        _check_peer(writer, expected)
        nonce = secrets.token_hex(16)
        hello = {"version": VERSION, "secret": secret, "nonce": nonce}
        writer.write(
            _frame(b"h", json.dumps({**hello, "stdout": stdout, "stderr": stderr}).encode())
        )
        welcome = await asyncio.wait_for(_welcome(reader, places), WELCOME_TIMEOUT)
        proof = hmac.new(secret.encode(), nonce.encode(), "sha256").hexdigest()
        if not hmac.compare_digest(str(welcome.get("proof")), proof):
            raise HolderError("the holder's proof is wrong: it does not know the secret")
        return HeldAgent(reader, writer, welcome)
    except TimeoutError:
        writer.close()
        raise HolderError("the holder did not welcome us in time") from None
    except (KeyError, TypeError) as exc:
        writer.close()
        raise HolderError(f"the holder's welcome lacks {exc}") from None
    except BaseException:
        writer.close()
        raise


def _check_peer(writer: asyncio.StreamWriter, expected: tuple[int, int | None] | None) -> None:
    sock: socket.socket = writer.get_extra_info("socket")
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", credentials)
    if uid != os.getuid():
        raise HolderError(f"the holder's socket is served by uid {uid}, not by us")
    if expected is None:
        return
    holder_pid, ticks = expected
    if pid != holder_pid or (ticks is not None and process_start_ticks(pid) != ticks):
        raise HolderError(f"the holder's socket is served by pid {pid}, not holder {holder_pid}")


async def _welcome(reader: asyncio.StreamReader, places: HolderPlaces) -> dict[str, Any]:
    try:
        header = await reader.readexactly(5)
        length = int.from_bytes(header[1:], "big")
        if header[:1] != b"w" or length > MAX_PAYLOAD:
            raise HolderError(f"the holder answered with {header!r}, not a welcome")
        welcome = _json(await reader.readexactly(length))
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        if not (places.socket_dir / "sock").exists():
            raise HolderGone("the holder went away while we attached") from exc
        raise HolderError(f"the holder closed the connection (refused us?): {exc}") from exc
    if not isinstance(welcome, dict) or welcome.get("version") != VERSION:
        raise HolderError(f"the holder's welcome is not version {VERSION}: {welcome!r:.200}")
    return welcome


def read_exit(places: HolderPlaces) -> HolderExit | None:
    """exit.json of a holder that has ended, if any."""
    try:
        data = (places.spool_dir / "exit.json").read_bytes()
    except FileNotFoundError:
        return None
    return HolderExit.parse(_json(data))


def spool_bytes(places: HolderPlaces, stream: Stream, start: int, end: int) -> bytes:
    """Bytes [start, end) of a spool file (for a session whose holder ended unattended)."""
    try:
        with open(places.spool_dir / stream, "rb") as handle:
            return os.pread(handle.fileno(), max(0, end - start), start)
    except FileNotFoundError:
        return b""


def remove_places(places: HolderPlaces) -> None:
    """Remove socket_dir and spool_dir (after the session's end is recorded)."""
    shutil.rmtree(places.socket_dir, ignore_errors=True)
    shutil.rmtree(places.spool_dir, ignore_errors=True)
