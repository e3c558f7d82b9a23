"""Holders started as forks of one warmed-up process (`holder.py --zygote`), not each as a new
interpreter: a holder's start costs about a millisecond of CPU instead of 30-40 (the interpreter
and its imports), which on a busy machine is most of what starting a session costs.

The zygote is orcad's child; the holders it forks are not (each fork leads a session of its own
and forks the holder proper, as a holder started on its own does). It ends when orcad closes
its end of the socket, or dies; a zygote that ended is started again at the next launch.
"""

from __future__ import annotations

import contextlib
import os
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


class HolderZygote:
    """orcad's end of the zygote: `fork` may be called from any thread."""

    def __init__(self) -> None:
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
        with self._lock:
            for _ in range(2):  # a zygote that ended is replaced once
                connection = self._socket if self._socket is not None else self._start()
                try:
                    socket.send_fds(connection, [bytes(spool_dir)], [stdin, stdout, stderr])
                    reply = connection.recv(4)
                except OSError:
                    reply = b""
                if len(reply) == 4:
                    pid = int.from_bytes(reply, "big")
                    if pid == 0:
                        raise ZygoteError("could not fork a holder (see orcad's log)")
                    return pid
                self._end()
            raise ZygoteError("the holders' zygote ended as it was asked for a holder")

    def close(self) -> None:
        """End the zygote (holders it forked keep running)."""
        with self._lock:
            self._end()

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(HOLDER_PROGRAM), "--zygote"],
                stdin=theirs.fileno(),
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            raise ZygoteError(f"could not start the holders' zygote: {exc}") from exc
        finally:
            theirs.close()
        ours.settimeout(REPLY_TIMEOUT)
        self._socket = ours
        return ours

    def _end(self) -> None:
        """Close our end (the zygote exits on it) and reap it."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._process is not None:
            try:
                self._process.wait(timeout=REPLY_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._process.pid, 9)
                self._process.wait()
            self._process = None


ZYGOTE = HolderZygote()
"""This process's zygote, started at its first holder launch."""
