"""Holders started as forks of one warmed-up process (`holder.py --zygote`), not each as a new
interpreter: a holder's start costs about a millisecond of CPU instead of 30-40 (the interpreter
and its imports), which on a busy machine is most of what starting a session costs.

The zygote is orcad's child; the holders it forks are not (each fork leads a session of its own
and forks the holder proper, as a holder started on its own does). It ends when orcad closes
its end of the socket, or dies; a zygote that ended is started again at the next launch. A
request it took without answering is never sent again: whether it forked is not known, and two
holders must not share one session's pipes (the launch is tried again with new ones).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

HOLDER_PROGRAM = Path(__file__).with_name("holder.py")
REPLY_TIMEOUT = 10.0
"""Seconds to wait for the zygote to say it forked (it does nothing else)."""


class ZygoteError(OSError):
    """No holder could be forked."""


class ZygoteSilent(ZygoteError):
    """The zygote took the request and ended (or hung) without answering: a holder may have
    been forked with those descriptors, so they must not be handed out again."""


class HolderZygote:
    """orcad's end of the zygote: `fork` may be called from any thread."""

    def __init__(
        self, program: list[str] | None = None, reply_timeout: float = REPLY_TIMEOUT
    ) -> None:
        self._program = program or [sys.executable, "-I", "-S", str(HOLDER_PROGRAM), "--zygote"]
        self._reply_timeout = reply_timeout
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None

    @property
    def pid(self) -> int | None:
        """The zygote's, while one was started and not ended."""
        return None if self._process is None else self._process.pid

    def fork(self, spool_dir: Path, stdin: int, stdout: int, stderr: int) -> int:
        """Blocking: fork a holder in `spool_dir` with these descriptors as its stdio (the
        caller keeps and closes its own); its pid, which leads its process group."""
        request = [bytes(spool_dir)]
        with self._lock:
            try:
                connection = self._connection()
                socket.send_fds(connection, request, [stdin, stdout, stderr])
            except OSError:  # not sent (the zygote ended): a new one is asked, once
                self._end(kill=True)
                connection = self._connection()
                try:
                    socket.send_fds(connection, request, [stdin, stdout, stderr])
                except OSError as exc:
                    self._end(kill=True)
                    raise ZygoteError(f"could not reach the holders' zygote: {exc}") from exc
            try:
                reply = connection.recv(4)
            except OSError:
                reply = b""
            if len(reply) != 4:
                self._end(kill=True)
                raise ZygoteSilent("the holders' zygote took a request and did not answer")
            pid = int.from_bytes(reply, "big")
            if pid == 0:
                raise ZygoteError("could not fork a holder (orcad's log says why)")
            return pid

    def close(self) -> None:
        """End the zygote (holders it forked keep running)."""
        with self._lock:
            self._end(kill=False)

    def _connection(self) -> socket.socket:
        """The socket to a running zygote (started now if there is none, or it ended)."""
        if self._process is not None and self._process.poll() is not None:
            self._end(kill=False)
        if self._socket is not None:
            return self._socket
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen(
                self._program,
                stdin=theirs.fileno(),
                stdout=subprocess.DEVNULL,
                cwd="/",
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            raise ZygoteError(f"could not start the holders' zygote: {exc}") from exc
        finally:
            theirs.close()
        ours.settimeout(self._reply_timeout)
        self._socket = ours
        return ours

    def _end(self, kill: bool) -> None:
        """Close our end (a zygote exits on it; with `kill`, it is killed as well: it may hang)
        and reap it."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        process, self._process = self._process, None
        if process is None:
            return
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        try:
            process.wait(timeout=self._reply_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


ZYGOTE = HolderZygote()
"""This process's zygote, started at its first holder launch."""
