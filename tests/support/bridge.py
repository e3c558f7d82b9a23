"""`orca bridge --stdio` driven as an editor drives it: JSON-RPC requests written to its stdin,
responses and notifications read from its stdout on a thread (which a test may pause, as an
editor that stops reading would)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from conftest import REPO


class RpcFailed(AssertionError):
    """The bridge answered with an error."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(json.dumps(error))
        self.error = error
        self.code: int = error["code"]
        self.orca_code: str | None = (error.get("data") or {}).get("orca_code")


class BridgeProcess:
    """A real `orca bridge --stdio` subprocess; what it writes to stdout is kept, in order."""

    def __init__(self, env: dict[str, str], stderr: Path, *args: str) -> None:
        self.stderr_path = stderr
        with stderr.open("ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "orca_client.cli", "bridge", "--stdio", *args],
                env=env,
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self.lines: list[dict[str, Any]] = []
        """Everything read from stdout, decoded, in order."""
        self._changed = threading.Condition()
        self._reading = threading.Event()
        self._reading.set()
        self._ids = itertools.count(1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    # ------------------------------------------------------------------ writing

    def write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        self.write(json.dumps(message).encode() + b"\n")

    def request(self, method: str, params: dict[str, Any] | None = None) -> int:
        """Send a request; returns its id."""
        call_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": call_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return call_id

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30) -> Any:
        """A request's result; RpcFailed if it got an error."""
        response = self.response(self.request(method, params), timeout)
        if "error" in response:
            raise RpcFailed(response["error"])
        return response["result"]

    def close_stdin(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()

    # ------------------------------------------------------------------ reading

    def _read(self) -> None:
        assert self.process.stdout is not None
        while True:
            self._reading.wait()
            line = self.process.stdout.readline()
            if not line:
                return
            with self._changed:
                self.lines.append(json.loads(line))
                self._changed.notify_all()

    def pause_reading(self) -> None:
        """Stop reading stdout (after the line being read), as a busy editor would."""
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def wait_for(self, what: str, condition: Any, timeout: float = 30) -> Any:
        """Wait until `condition(lines)` is truthy; returns it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = condition(self.lines)
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = self.lines[-5:]
                    raise AssertionError(f"timed out waiting for {what}; last lines: {tail}")
                self._changed.wait(min(left, 0.5))

    def response(self, call_id: Any, timeout: float = 30) -> dict[str, Any]:
        def found(lines: list[dict[str, Any]]) -> dict[str, Any] | None:
            return next((m for m in lines if "method" not in m and m.get("id") == call_id), None)

        response: dict[str, Any] = self.wait_for(f"the response to {call_id}", found, timeout)
        return response

    def responses(self) -> list[dict[str, Any]]:
        with self._changed:
            return [m for m in self.lines if "method" not in m]

    def events(self, subscription: str | None = None) -> list[dict[str, Any]]:
        """The params of every `event` notification (of one subscription), in order."""
        with self._changed:
            return [
                m["params"]
                for m in self.lines
                if m.get("method") == "event"
                and (subscription is None or m["params"]["subscription"] == subscription)
            ]

    def wait_for_position(self, position: int, timeout: float = 30) -> list[dict[str, Any]]:
        """Every event, once one at `position` (or later) has arrived."""

        def reached(lines: list[dict[str, Any]]) -> bool:
            return any(
                m.get("method") == "event" and m["params"]["position"] >= position for m in lines
            )

        self.wait_for(f"the event at position {position}", reached, timeout)
        return self.events()

    def daemon_notices(self) -> list[dict[str, Any]]:
        with self._changed:
            return [m["params"] for m in self.lines if m.get("method") == "daemon"]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def finish(self, timeout: float = 20) -> int:
        """Close stdin and wait for the bridge to exit; its exit status."""
        self.resume_reading()
        self.close_stdin()
        status = self.process.wait(timeout)
        self._reader.join(timeout)
        return status

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
