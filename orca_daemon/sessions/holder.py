"""The session holder: a small process that starts one agent, owns its stdio, spools its output
to files and survives orcad, which attaches to it over a unix socket (the conmon pattern).

Run by path (`python -I holder.py`) with one JSON spec on stdin: stdlib only, no asyncio, and
nothing from orca_daemon. The wire and the files are described in held.py, orcad's side.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time

# The constant-time comparison and SHA-256 that hmac uses, without hmac itself: it loads OpenSSL,
# 1.4 MB more in every holder (a third of what the holder adds to the interpreter).
from _operator import _compare_digest as compare_digest
from typing import Any

try:
    from _sha2 import sha256  # type: ignore[import-not-found, unused-ignore]  # Python 3.12+
except ImportError:
    from _sha256 import sha256  # type: ignore[import-not-found, no-redef, unused-ignore]

VERSION = 1
MAX_PAYLOAD = 1 << 20
MAX_HELLO = 4096
"""The longest frame a connection may send before its hello is accepted."""
READ_SIZE = 65_536
SPLICE_SIZE = 1 << 20
"""The most moved from an agent's pipe to its spool at once (in the kernel: `os.splice`)."""
FRAME_SIZE = 256 << 10
"""The most output in one frame (sent from the spool by `os.sendfile`)."""
PIPE_SIZE = 1 << 20
"""The capacity asked for the agent's output pipes (fewer wake-ups when it prints fast)."""
SPOOL_AHEAD = 8 << 20
"""Bytes of a stream spooled beyond what the client was sent before the agent's pipe is left
unread (so an agent printing with nobody attached blocks, as on a full pipe)."""
ATTACHED_AHEAD = 256 << 10
"""The same while a client is attached: then the agent is held back as by a pipe when orcad reads
slower than it prints, and what is left to record when it ends stays small (a stop that ends
many busy sessions waits for that)."""
CLIENT_BUFFER = 64 << 10
STDIN_AHEAD = 1 << 20
"""Bytes waiting for the agent's stdin beyond which the client's socket is left unread."""
UNAUTHENTICATED_AT_ONCE = 4
KILL_GRACE = 5.0
RETRY_WRITE = 0.5
"""Seconds between attempts to write what the disk refused (a spool, exit.json)."""
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
TEST_READY_DELAY_VARIABLE = "ORCA_TEST_HOLDER_READY_DELAY"
"""Tests only: seconds a holder waits between starting its agent and its ready line, so that a
test can freeze it in that window without racing it (tests/test_durability.py)."""
STREAMS = ((b"o", "stdout"), (b"e", "stderr"))

_libc = ctypes.CDLL(None, use_errno=True)


def log(message: str) -> None:
    """One line in holder.log (our stderr, unbuffered: on a full disk the line is lost and
    nothing piles up); never the secret or the environment."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with contextlib.suppress(OSError):
        os.write(2, f"{stamp} holder[{os.getpid()}] {message}\n".encode(errors="replace"))


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: when the process started, to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        return int(stat[stat.rfind(b")") + 2 :].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def hmac_sha256(key: bytes, message: bytes) -> str:
    """HMAC-SHA256 (RFC 2104) of `message` under `key`, in hex: what hmac.new(...).hexdigest()
    gives (checked by the tests against hmac)."""
    block = 64
    key = (sha256(key).digest() if len(key) > block else key).ljust(block, b"\0")
    inner = sha256(bytes(k ^ 0x36 for k in key) + message).digest()
    return str(sha256(bytes(k ^ 0x5C for k in key) + inner).hexdigest())


def frame(kind: bytes, payload: bytes) -> bytes:
    return kind + len(payload).to_bytes(4, "big") + payload


def write_all(fd: int, data: bytes) -> tuple[int, OSError | None]:
    """Write `data` to a file: how much went in, and the error that stopped the rest."""
    written = 0
    try:
        while written < len(data):
            count = os.write(fd, data[written:])
            if count <= 0:
                return written, OSError(f"a write of {len(data) - written} bytes wrote none")
            written += count
    except OSError as exc:
        return written, exc
    return written, None


def write_file(path: str, data: bytes) -> None:
    """Replace `path` (0600) with `data` at once; raises OSError, leaving no temporary file."""
    temporary = path + ".tmp"
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _, error = write_all(descriptor, data)
        finally:
            os.close(descriptor)
        if error is not None:
            raise error
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class Connection:
    """A client's socket with what is waiting to go out and what came in but was not used."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.inbox = bytearray()
        self.outbox = bytearray()
        self.payload: tuple[int, int, int] | None = None
        """The output frame being sent after the outbox: spool descriptor, offset, bytes left.
        Nothing is added to the outbox while it is set (it would go out before it)."""
        self.turn = 0
        """The stream framed first next time (they take turns)."""
        self.sent = [0, 0]
        self.exit_sent = False
        self.stdin_told: tuple[int, int, bool] | None = None
        """The stdin progress this client knows: bytes received, written, pipe closed."""

    def frames(self, limit: int, most: int) -> list[tuple[bytes, bytes]] | None:
        """Up to `most` complete frames received; None when one is longer than `limit`."""
        found: list[tuple[bytes, bytes]] = []
        while len(self.inbox) >= 5 and len(found) < most:
            length = int.from_bytes(self.inbox[1:5], "big")
            if length > limit:
                return None
            if len(self.inbox) < 5 + length:
                break
            found.append((bytes(self.inbox[:1]), bytes(self.inbox[5 : 5 + length])))
            del self.inbox[: 5 + length]
        return found


class Holder:
    def __init__(self, spec: dict[str, Any], wakeup: int) -> None:
        self.spec = spec
        self.wakeup = wakeup
        self.secret = str(spec["secret"]).encode()
        self.orphan_timeout = float(spec.get("orphan_timeout", 86_400.0))
        self.hello_timeout = float(spec.get("hello_timeout", 5.0))
        self.exit_drain = float(spec.get("exit_drain", 2.0))
        self.kill_grace = float(spec.get("kill_grace", KILL_GRACE))
        self.spool_dir = str(spec["spool_dir"])
        self.selector = selectors.DefaultSelector()
        self.registered: dict[int, tuple[Any, int]] = {}
        self.spools = [self.open_spool(name) for _, name in STREAMS]
        self.sizes = [os.fstat(fd).st_size for fd in self.spools]
        self.refused = [False, False]
        """Per stream: the disk refused to spool more; what the agent printed waits in its pipe,
        which is left unread until `retry_spool_at`."""
        self.spooling_failed = False
        self.retry_spool_at = 0.0
        self.asked = [0, 0]
        self.pending: list[Connection] = []
        self.client: Connection | None = None
        self.orphan_since = time.monotonic()
        self.stdin_pending = bytearray(base64.b64decode(spec.get("initial_input", "")))
        self.stdin_close = bool(spec.get("close_input", False))
        self.stdin_received = len(self.stdin_pending)
        """Bytes for the agent's stdin: its initial input and all that clients sent."""
        self.stdin_written = 0
        """Of those, the bytes written into the agent's pipe."""
        self.stdin_dropped = 0
        self.exit_code: int | None = None
        self.drain_until = 0.0
        self.exit: dict[str, int] | None = None
        """The agent's end, final: it has exited and everything it printed is spooled."""
        self.exit_written = False
        self.retry_exit_at = 0.0
        self.ending_since: float | None = None
        self.killed = False
        self.acknowledged = False
        """A client said it has the exit (possibly before it happened): once it is final, and
        sent to the client still attached if any, the holder exits."""
        self.agent_ticks: int | None = None

    def open_spool(self, name: str) -> int:
        flags = os.O_RDWR | os.O_CREAT  # (not O_APPEND: os.splice refuses that; offsets given)
        return os.open(os.path.join(self.spool_dir, name), flags, 0o600)

    def listen(self) -> None:
        directory = os.open(str(self.spec["socket_dir"]), os.O_PATH | os.O_DIRECTORY)
        self.sock_path = f"/proc/self/fd/{directory}/sock"
        self.sock_dir = directory
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.sock_path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        mask = os.umask(0o177)
        try:
            self.listener.bind(self.sock_path)
        finally:
            os.umask(mask)
        self.listener.listen(16)
        self.listener.setblocking(False)

    def start_agent(self) -> None:
        command = [str(part) for part in self.spec["command"]]
        holder, nofile = os.getpid(), int(self.spec.get("nofile", 1024))

        def prepare() -> None:  # in the agent's process, before exec
            _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != holder:  # the holder died before PDEATHSIG was set
                os._exit(1)
            for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            soft = nofile if hard == resource.RLIM_INFINITY else min(nofile, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

        self.agent = subprocess.Popen(
            command,
            cwd=str(self.spec["cwd"]),
            env={str(k): str(v) for k, v in self.spec["env"].items()},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            start_new_session=True,
            preexec_fn=prepare,
        )
        self.stdin: int | None = self.agent.stdin.fileno()  # type: ignore[union-attr]
        self.pipes: list[int | None] = [
            self.agent.stdout.fileno(),  # type: ignore[union-attr]
            self.agent.stderr.fileno(),  # type: ignore[union-attr]
        ]
        for fd in (self.stdin, *self.pipes):
            os.set_blocking(fd, False)  # type: ignore[arg-type]
        for fd in self.pipes:
            with contextlib.suppress(OSError):  # (above the system's pipe-max-size: as it is)
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)  # type: ignore[arg-type]

    # -- the loop

    def run(self) -> None:
        while True:
            self.reap()
            now = time.monotonic()
            self.timers(now)
            if self.done(now):
                return
            self.fill()
            self.update_interest()
            for key, events in self.selector.select(self.timeout(now)):
                key.data(events)

    def timeout(self, now: float) -> float:
        """Until the next deadline still ahead (those passed were acted on), a second at most."""
        deadlines = [c.deadline for c in self.pending]
        if self.client is None:
            deadlines.append(self.orphan_since + self.orphan_timeout)
        if self.exit_code is not None and self.exit is None:
            deadlines.append(self.drain_until)
        if self.ending_since is not None:
            deadlines.append(self.ending_since + self.kill_grace)
        if any(self.refused):
            deadlines.append(self.retry_spool_at)
        if self.exit is not None and not self.exit_written:
            deadlines.append(self.retry_exit_at)
        return min([1.0, *(d - now for d in deadlines if d > now)])

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.agent.pid and self.exit_code is None:
                self.exit_code = self.agent.returncode = os.waitstatus_to_exitcode(status)
                self.drain_until = time.monotonic() + self.exit_drain
                log(f"agent {pid} exited with {self.exit_code}")
                self.drop_stdin()

    def timers(self, now: float) -> None:
        for conn in [c for c in self.pending if c.deadline <= now]:
            self.refuse(conn, "no hello in time")
        self.end_if_orphaned(now)
        if any(self.refused) and now >= self.retry_spool_at:
            self.retry_spooling(now)
        if self.exit_code is not None and self.exit is None and self.drained(now):
            self.finish_exit(now)
        if self.exit is not None and not self.exit_written and now >= self.retry_exit_at:
            self.write_exit(now)

    def end_if_orphaned(self, now: float) -> None:
        """No client for orphan_timeout: SIGTERM the agent's group, SIGKILL after the grace."""
        orphaned = self.client is None and now - self.orphan_since >= self.orphan_timeout
        if orphaned and self.exit_code is None and self.ending_since is None:
            log(f"no client for {self.orphan_timeout:g} s: ending the agent")
            self.ending_since = now
            self.signal_agent(signal.SIGTERM)
        ending = self.ending_since is not None and self.exit_code is None and not self.killed
        if ending and now - self.ending_since >= self.kill_grace:  # type: ignore[operator]
            log(f"the agent outlived SIGTERM by {self.kill_grace:g} s: killing it")
            self.killed = True
            self.signal_agent(signal.SIGKILL)

    def drained(self, now: float) -> bool:
        """The agent has exited: its pipes are at their end (or were given exit_drain seconds
        for the processes it left), and all read from them is spooled."""
        if any(self.refused):
            return False
        return now >= self.drain_until or self.pipes == [None, None]

    def signal_agent(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.agent.pid, signum)

    def finish_exit(self, now: float) -> None:
        """The exit is final: record it (exit.json) and send it to clients."""
        for index, fd in enumerate(self.pipes):
            if fd is not None:
                self.close_pipe(index)
        assert self.exit_code is not None
        self.exit = {
            "exit_code": self.exit_code,
            "stdout": self.sizes[0],
            "stderr": self.sizes[1],
            "stdin_dropped": self.stdin_dropped,
        }
        if self.client is None:  # news nobody has: wait orphan_timeout from now for a client
            self.orphan_since = now
        self.write_exit(now)

    def write_exit(self, now: float) -> None:
        """Write exit.json; when the disk refuses, say so once and try again later."""
        try:
            write_file(os.path.join(self.spool_dir, "exit.json"), json.dumps(self.exit).encode())
        except OSError as exc:
            if self.retry_exit_at == 0.0:
                log(f"could not write exit.json ({exc}): trying again")
            self.retry_exit_at = now + RETRY_WRITE
            return
        self.exit_written = True
        log(f"wrote exit.json: {self.exit}")

    def done(self, now: float) -> bool:
        if self.exit is None:
            return False
        conn = self.client
        sent_all = conn is None or (conn.exit_sent and not conn.outbox and conn.payload is None)
        if self.acknowledged and sent_all:
            log("exit acknowledged")
            return True
        orphaned = conn is None and now - self.orphan_since >= self.orphan_timeout
        if orphaned and self.exit_written:
            log("exit not acknowledged in time: leaving exit.json")
            return True
        return False

    def update_interest(self) -> None:
        want: dict[int, tuple[Any, int, Any]] = {}
        for index, fd in enumerate(self.pipes):
            if fd is not None and self.reads_pipe(index):
                want[fd] = (fd, selectors.EVENT_READ, lambda _, i=index: self.read_pipe(i))
        if self.stdin is not None and self.stdin_pending:
            want[self.stdin] = (self.stdin, selectors.EVENT_WRITE, lambda _: self.write_stdin())
        accept = (self.listener, selectors.EVENT_READ, lambda _: self.accept())
        want[self.listener.fileno()] = accept
        want[self.wakeup] = (self.wakeup, selectors.EVENT_READ, lambda _: self.woken())
        for conn in [*self.pending, *([self.client] if self.client else [])]:
            events = selectors.EVENT_WRITE if conn.outbox or conn.payload else 0
            if conn is not self.client or len(self.stdin_pending) <= STDIN_AHEAD:
                events |= selectors.EVENT_READ
            if events:
                want[conn.sock.fileno()] = (conn.sock, events, lambda ev, c=conn: self.serve(c, ev))
        for fd in [fd for fd in self.registered if fd not in want]:
            self.selector.unregister(self.registered.pop(fd)[0])
        for fd, (obj, events, callback) in want.items():
            if fd not in self.registered:
                self.selector.register(obj, events, callback)
            elif self.registered[fd] != (obj, events):  # (else it stands: no system call)
                self.selector.modify(obj, events, callback)
            self.registered[fd] = (obj, events)

    def reads_pipe(self, index: int) -> bool:
        """Whether to read this output pipe now: not while the disk refuses what came from it,
        nor while the client is far behind the spool."""
        limit = SPOOL_AHEAD if self.client is None else ATTACHED_AHEAD
        limit *= 2 if self.exit_code is not None else 1
        return not self.refused[index] and self.sizes[index] - self.base(index) <= limit

    def forget(self, fd: int) -> None:
        """Unregister a descriptor about to be closed (so a reused number starts afresh)."""
        if fd in self.registered:
            self.selector.unregister(self.registered.pop(fd)[0])

    def base(self, index: int) -> int:
        return self.client.sent[index] if self.client else self.asked[index]

    def woken(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.wakeup, 4096)

    # -- the agent's pipes

    def read_pipe(self, index: int) -> None:
        """Move what the agent printed from its pipe to the end of its spool, in the kernel.
        What the disk refuses stays in the pipe (the agent blocks once it is full)."""
        fd = self.pipes[index]
        assert fd is not None
        try:
            moved = os.splice(fd, self.spools[index], SPLICE_SIZE, offset_dst=self.sizes[index])
        except BlockingIOError:
            return
        except OSError as exc:
            self.refused[index] = True
            self.retry_spool_at = time.monotonic() + RETRY_WRITE
            if not self.spooling_failed:
                name = STREAMS[index][1]
                log(f"could not spool {name} ({exc}): its pipe waits until the disk takes it")
            self.spooling_failed = True
            return
        if not moved:
            self.close_pipe(index)
            return
        self.sizes[index] += moved
        if self.spooling_failed:
            self.spooling_failed = False
            log("spooling again")

    def retry_spooling(self, now: float) -> None:
        """Read the pipes the disk refused again (they are left unread again, quietly, while it
        still refuses)."""
        self.refused = [False, False]
        if self.exit_code is not None:  # the pipes were left unread meanwhile: read them on
            self.drain_until = max(self.drain_until, now + self.exit_drain)

    def close_pipe(self, index: int) -> None:
        pipe = (self.agent.stdout, self.agent.stderr)[index]
        assert pipe is not None
        self.forget(pipe.fileno())
        pipe.close()
        self.pipes[index] = None

    def write_stdin(self) -> None:
        assert self.stdin is not None
        try:
            written = os.write(self.stdin, self.stdin_pending)
        except BlockingIOError:
            return
        except OSError:  # the agent closed its stdin
            self.drop_stdin()
            return
        del self.stdin_pending[:written]
        self.stdin_written += written
        if not self.stdin_pending and self.stdin_close:
            self.drop_stdin()

    def drop_stdin(self) -> None:
        self.stdin_dropped += len(self.stdin_pending)
        self.stdin_pending.clear()
        if self.stdin is not None:
            assert self.agent.stdin is not None
            self.forget(self.stdin)
            self.agent.stdin.close()
            self.stdin = None

    # -- clients

    def accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        except OSError as exc:  # out of descriptors, say: the connection waits in the backlog
            log(f"could not accept a connection: {exc}")
            return
        if len(self.pending) >= UNAUTHENTICATED_AT_ONCE:
            log("refused a connection: too many unauthenticated connections")
            sock.close()
            return
        sock.setblocking(False)
        self.pending.append(Connection(sock, time.monotonic() + self.hello_timeout))

    def refuse(self, conn: Connection, why: str) -> None:
        log(f"refused a connection: {why}")
        self.pending.remove(conn)
        self.forget(conn.sock.fileno())
        conn.sock.close()

    def drop_client(self, why: str) -> None:
        assert self.client is not None
        log(f"client left: {why}")
        self.asked = list(self.client.sent)
        self.forget(self.client.sock.fileno())
        self.client.sock.close()
        self.client = None
        self.orphan_since = time.monotonic()

    def serve(self, conn: Connection, events: int) -> None:
        try:
            if events & selectors.EVENT_WRITE:
                self.send(conn)
            data = conn.sock.recv(READ_SIZE) if events & selectors.EVENT_READ else None
        except BlockingIOError:
            return
        except OSError as exc:
            data, why = b"", str(exc)
        else:
            why = "connection closed"
        if data == b"":
            self.drop_client(why) if conn is self.client else self.refuse(conn, why)
            return
        if data is None:
            return
        conn.inbox += data
        self.received(conn)

    def send(self, conn: Connection) -> None:
        """Send what the outbox holds, then the output frame's payload from its spool (in the
        kernel: `os.sendfile`). Raises BlockingIOError or OSError."""
        if conn.outbox:
            del conn.outbox[: conn.sock.send(conn.outbox)]
        if conn.outbox or conn.payload is None:
            return
        spool, offset, left = conn.payload
        count = os.sendfile(conn.sock.fileno(), spool, offset, left)
        if count <= 0:
            raise OSError(f"the spool ends before byte {offset + left}")
        conn.payload = None if count >= left else (spool, offset + count, left - count)

    def received(self, conn: Connection) -> None:
        """Act on the complete frames a connection sent: a hello, then commands."""
        if conn is not self.client:
            hello = conn.frames(MAX_HELLO, most=1)
            if hello is None:
                self.refuse(conn, "a hello longer than 4 KiB")
                return
            if hello:
                self.hello(conn, *hello[0])
            if conn is not self.client:  # no hello yet, or refused
                return
        frames = conn.frames(MAX_PAYLOAD, most=len(conn.inbox))
        if frames is None:
            self.drop_client("a frame longer than 1 MiB")
            return
        for kind, payload in frames:
            if not self.command(kind, payload):
                self.drop_client(f"unknown frame {kind!r}")
                return

    def hello(self, conn: Connection, kind: bytes, payload: bytes) -> None:
        try:
            hello = json.loads(payload) if kind == b"h" else None
            secret = str(hello["secret"]).encode()  # type: ignore[index]
            nonce = str(hello["nonce"]).encode()  # type: ignore[index]
            offsets = [int(hello[name]) for _, name in STREAMS]  # type: ignore[index]
        except (ValueError, TypeError, KeyError):
            self.refuse(conn, "no hello")
            return
        if not compare_digest(secret, self.secret):
            self.refuse(conn, "wrong secret")
            return
        if self.client is not None:
            self.drop_client("replaced by a new client")
        self.pending.remove(conn)
        self.client = conn
        for index, offset in enumerate(offsets):
            conn.sent[index] = max(0, min(offset, self.sizes[index]))
            if conn.sent[index] != offset:
                log(f"asked {STREAMS[index][1]} from {offset}: from {conn.sent[index]}")
        conn.stdin_told = self.stdin_progress()
        welcome = {
            "version": VERSION,
            "proof": hmac_sha256(self.secret, nonce),
            "holder_pid": os.getpid(),
            "holder_start_ticks": start_ticks(os.getpid()),
            "pid": self.agent.pid,
            "start_ticks": self.agent_ticks,
            "stdin_received": self.stdin_received,
            "stdin_written": self.stdin_written,
            "stdin_closed": self.stdin_close or self.stdin is None,
            "exit": self.exit,
        }
        conn.outbox += frame(b"w", json.dumps(welcome).encode())
        log(f"client attached at stdout {conn.sent[0]}, stderr {conn.sent[1]}")

    def command(self, kind: bytes, payload: bytes) -> bool:
        if kind == b"i":
            self.stdin_received += len(payload)
            if self.stdin is None or self.stdin_close:
                self.stdin_dropped += len(payload)
            else:
                self.stdin_pending += payload
                self.write_stdin()  # at once: the client learns in this round if the pipe took it
        elif kind == b"c":
            self.stdin_close = True
            if not self.stdin_pending:
                self.drop_stdin()
        elif kind == b"a":
            self.acknowledged = True
        else:
            return False
        return True

    def stdin_progress(self) -> tuple[int, int, bool]:
        return self.stdin_received, self.stdin_written, self.stdin is None

    def fill(self) -> None:
        """Tell the client how far its stdin got, frame spooled output it was not sent yet, then
        the exit once all is sent. Only while no output frame is on its way (see `payload`)."""
        conn = self.client
        if conn is None or conn.payload is not None or len(conn.outbox) >= CLIENT_BUFFER:
            return
        progress = self.stdin_progress()
        if conn.stdin_told != progress:
            received, written, closed = progress
            report = received.to_bytes(8, "big") + written.to_bytes(8, "big") + bytes([closed])
            conn.outbox += frame(b"s", report)
            conn.stdin_told = progress
        for index in (conn.turn, 1 - conn.turn):
            length = min(FRAME_SIZE, self.sizes[index] - conn.sent[index])
            if length > 0:
                conn.outbox += STREAMS[index][0] + length.to_bytes(4, "big")
                conn.payload = (self.spools[index], conn.sent[index], length)
                conn.sent[index] += length
                conn.turn = 1 - index
                return
        if self.exit is not None and conn.sent == self.sizes and not conn.exit_sent:
            conn.outbox += frame(b"x", json.dumps(self.exit).encode())
            conn.exit_sent = True


def main() -> int:
    spec = json.loads(sys.stdin.buffer.read())
    if os.fork() > 0:
        os._exit(0)  # the zygote reaps this parent; the holder proper is never orcad's child
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    read_end, write_end = os.pipe()
    for fd in (read_end, write_end):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    holder = Holder(spec, read_end)
    holder.listen()
    try:
        holder.start_agent()
    except (OSError, subprocess.SubprocessError) as exc:
        error = f"could not start {str(spec['command'][0])!r}: {exc}"
        log(error)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(holder.sock_path)
        print(json.dumps({"error": error}), flush=True)
        return 1
    holder.agent_ticks = start_ticks(holder.agent.pid)
    if holder.stdin_close and not holder.stdin_pending:
        holder.drop_stdin()
    ready = {
        "holder_pid": os.getpid(),
        "holder_start_ticks": start_ticks(os.getpid()),
        "pid": holder.agent.pid,
        "start_ticks": holder.agent_ticks,
    }
    log(f"started agent {holder.agent.pid}: {str(spec['command'][0])!r}")
    delay = os.environ.get(TEST_READY_DELAY_VARIABLE)
    if delay:  # tests only: a window before the ready line wide enough to be hit for sure
        time.sleep(float(delay))
    try:
        print(json.dumps(ready), flush=True)
    except OSError:  # orcad died since it started us: the next one attaches over the socket
        log("nobody read the ready line (orcad is gone?)")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    holder.run()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(holder.sock_path)
    log("exiting")
    return 0


def zygote() -> int:
    """`holder.py --zygote`: start holders as forks of this process, whose interpreter and
    imports are ready (a new interpreter costs each holder some 30 ms of CPU more).

    Fd 0 is a unix seqpacket socket from orcad. Each message is a spool directory's path with
    three descriptors: the holder's stdin (its spec), stdout (its ready line) and stderr
    (holder.log). The fork leads a new session in that directory with those as its stdio and
    goes on as `main` does for a holder started on its own; the reply is its pid (4 bytes, 0
    when it could not fork). Exits once orcad closes its end (orcad stopped, or died)."""
    requests = socket.socket(fileno=0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the forks are reaped as they exit
    for signum in (signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    while True:
        try:
            message, fds, flags, _ = socket.recv_fds(requests, 4096, 3)
        except OSError as exc:
            log(f"zygote: {exc}")
            return 1
        if not message:
            return 0
        whole = not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC)
        pid = _fork_holder(requests, message, fds) if whole and len(fds) == 3 else 0
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):
            requests.send(pid.to_bytes(4, "big"))


def _fork_holder(requests: socket.socket, spool_dir: bytes, stdio: list[int]) -> int:
    """In the zygote: fork a holder; its pid, or 0 when it could not fork."""
    try:
        pid = os.fork()
    except OSError as exc:
        log(f"zygote: could not fork a holder: {exc}")
        return 0
    if pid == 0:
        requests.detach()  # fd 0 is the holder's stdin from here on
        os._exit(_forked_holder(spool_dir, stdio))
    return pid


def _forked_holder(spool_dir: bytes, stdio: list[int]) -> int:
    """In a fork of the zygote: become what `python holder.py` started by orcad would be (its
    stdio first, so that what goes wrong from there is in holder.log)."""
    try:
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        for fd in stdio:
            if fd > 2:
                os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for signum in (signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        os.setsid()
        os.chdir(spool_dir)
        return main()
    except BaseException as exc:  # never back into the zygote's loop
        with contextlib.suppress(BaseException):
            import traceback

            log(f"the holder failed: {exc!r}")
            traceback.print_exc()
        return 1
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(zygote() if sys.argv[1:] == ["--zygote"] else main())
