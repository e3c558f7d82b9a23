"""The real `orca` CLI on a pseudo-terminal that is its controlling terminal, as in a shell:
what it shows is read from the terminal, keys (Ctrl-C, Ctrl-D) are typed into it."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import subprocess
import sys
import termios
import time

CTRL_C = b"\x03"
CTRL_D = b"\x04"


def _take_terminal() -> None:
    """In the child: the pty on stdin becomes the controlling terminal of its new session, so
    Ctrl-C typed into it is SIGINT for the process."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """One `orca` process on its own pty."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.primary, secondary = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orca_client.cli", *args],
            env=env,
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            start_new_session=True,
            preexec_fn=_take_terminal,
        )
        os.close(secondary)
        self.shown = b""
        """Everything the terminal has shown so far."""

    def read_until(self, needle: bytes, timeout: float = 20.0) -> bytes:
        """What the terminal shows from here up to and including `needle`."""
        start = len(self.shown)
        deadline = time.monotonic() + timeout
        while needle not in self.shown[start:]:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{needle!r} not shown; the terminal showed {self.shown!r}"
            if not select.select([self.primary], [], [], remaining)[0]:
                continue
            try:
                chunk = os.read(self.primary, 4096)
            except OSError:  # EIO: the process closed the terminal
                chunk = b""
            assert chunk, f"{needle!r} not shown before the end: {self.shown!r}"
            self.shown += chunk
        return self.shown[start:]

    def type(self, keys: bytes) -> None:
        os.write(self.primary, keys)

    def finish(self, timeout: float = 20.0) -> tuple[int, str]:
        """Wait for the process to exit; its status and everything the terminal showed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([self.primary], [], [], 0.05)[0]:
                try:
                    chunk = os.read(self.primary, 4096)
                except OSError:
                    chunk = b""
                self.shown += chunk
                if not chunk and self.process.poll() is not None:
                    break
            elif self.process.poll() is not None:
                break
        code = self.process.wait(max(0.0, deadline - time.monotonic()))
        return code, self.shown.decode(errors="replace").replace("\r\n", "\n")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        os.close(self.primary)
