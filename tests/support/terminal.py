"""Drive the real `orca` CLI on a pseudo-terminal of a given size, as a person would, and read
what the screen shows (the terminal's CR LF line ends read as LF)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Mapping

CTRL_C = "\x03"
CTRL_D = "\x04"


class Terminal:
    """`orca ARGS...` with stdin, stdout and stderr on one pty of `columns` x `rows`."""

    def __init__(
        self,
        env: Mapping[str, str],
        *args: str,
        columns: int = 80,
        rows: int = 24,
        keyboard: bool = True,
        command: list[str] | None = None,
    ) -> None:
        """`keyboard=False`: stdin is /dev/null, as under a script or a pipe. `command`: run
        this instead of orca (a shell, say)."""
        primary, secondary = pty.openpty()
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        clean = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
        self.process = subprocess.Popen(
            command or [sys.executable, "-m", "orca_client.cli", *args],
            env=clean,
            stdin=secondary if keyboard else subprocess.DEVNULL,
            stdout=secondary,
            stderr=secondary,
            start_new_session=True,
            preexec_fn=_take_terminal,  # a test's child: no threads to mind
        )
        os.close(secondary)
        self.fd = primary
        self._seen = b""
        self._matched = 0

    @property
    def screen(self) -> str:
        """Everything shown so far."""
        return self._seen.decode(errors="replace").replace("\r\n", "\n")

    def read_until(self, needle: str, timeout: float = 30.0) -> str:
        """Read until the screen shows `needle` after what earlier calls matched (so a prompt
        shown again is waited for again); returns the whole screen."""
        deadline = time.monotonic() + timeout
        while (found := self.screen.find(needle, self._matched)) < 0:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{needle!r} not shown; the screen:\n{self.screen}"
            if not self._read(remaining):
                assert needle in self.screen[self._matched :], (
                    f"{needle!r} not shown before the end; the screen:\n{self.screen}"
                )
        self._matched = found + len(needle)
        return self.screen

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def wait(self, timeout: float = 30.0) -> int:
        """Read to the end of the output; the exit status."""
        deadline = time.monotonic() + timeout
        while self._read(max(0.0, deadline - time.monotonic())):
            assert time.monotonic() < deadline, f"orca did not end; the screen:\n{self.screen}"
        return self.process.wait(max(0.1, deadline - time.monotonic()))

    def _read(self, timeout: float) -> bool:
        """Read what is there (waiting up to `timeout`); False once the program closed it."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: every process holding the pty has closed it
            return False
        self._seen += chunk
        return bool(chunk)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        os.close(self.fd)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _take_terminal() -> None:
    """In the child, a session leader: make the pty its controlling terminal, so that /dev/tty
    (where getpass reads) is the pty and Ctrl-C reaches it as SIGINT, handled as a person's
    terminal handles it (a test suite started in the background, as `cmd &` in a shell
    without job control, would otherwise hand SIGINT down ignored)."""
    fcntl.ioctl(1, termios.TIOCSCTTY, 0)  # stdout: stdin may be /dev/null
    signal.signal(signal.SIGINT, signal.SIG_DFL)
