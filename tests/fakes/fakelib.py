"""Shared plumbing of the fake `codex` and `claude` executables (stdlib only).

The fakes speak the wire protocols of docs/real-agent-protocols.md. What they need in common:

- `Inbox`: a thread reads stdin (raw fd, newline-delimited), logs each line to the run's log
  file the moment it arrives (so a test sees what the daemon sent even if the fake is then
  killed), and queues it for the main thread; end of input is `EOF`.
- a per-run log, `$HOME_DIR/<ORCA_RUN_ID>.log.jsonl`, one JSON object per line:
  `{"event": "argv"|"in"|"out"|"note"|"sigterm"|"exit", ...}`;
- a small state store (`threads/<id>.json`, `sessions/<id>.json`) that lets a resumed
  conversation prove it kept its context;
- a SIGTERM handler that lets the reader drain what was already written to stdin, then exits;
- the scenario named in a prompt: `SCENARIO=<name>` (default `done`).
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EOF = object()
"""Queued when stdin ends."""

_SCENARIO = re.compile(r"SCENARIO=([A-Za-z0-9_-]+)")


def scenario_of(prompt: str) -> str:
    match = _SCENARIO.search(prompt)
    return match[1] if match else "done"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def home_dir(variable: str) -> Path:
    """Where a fake keeps its state and logs: `$variable`, else a directory under /tmp."""
    path = Path(os.environ.get(variable) or Path(tempfile.gettempdir()) / variable.lower())
    path.mkdir(parents=True, exist_ok=True)
    return path


class RunLog:
    """Append-only JSON lines for one run (named by ORCA_RUN_ID, else the pid)."""

    def __init__(self, home: Path) -> None:
        name = os.environ.get("ORCA_RUN_ID") or f"pid-{os.getpid()}"
        self.path = home / f"{name}.log.jsonl"
        self._lock = threading.Lock()

    def write(self, event: str, **fields: Any) -> None:
        record = {"event": event, "pid": os.getpid(), "t": time.time(), **fields}
        line = json.dumps(record, sort_keys=True) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()


class State:
    """Conversations that outlive one process: `<kind>/<id>.json` under the fake's home."""

    def __init__(self, home: Path, kind: str) -> None:
        self._dir = home / kind
        self._dir.mkdir(parents=True, exist_ok=True)

    def _path(self, conversation_id: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", conversation_id)
        return self._dir / f"{safe}.json"

    def exists(self, conversation_id: str) -> bool:
        return self._path(conversation_id).is_file()

    def prompts(self, conversation_id: str) -> list[str]:
        try:
            data = json.loads(self._path(conversation_id).read_text())
        except FileNotFoundError:
            return []
        return list(data.get("prompts", []))

    def add_prompt(self, conversation_id: str, prompt: str) -> None:
        prompts = [*self.prompts(conversation_id), prompt]
        path = self._path(conversation_id)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"prompts": prompts}))
        temporary.replace(path)


class Inbox:
    """Stdin lines, decoded as JSON where they are JSON, read by a background thread."""

    def __init__(self, log: RunLog, redact: Callable[[Any], Any] | None = None) -> None:
        self._log = log
        self._redact = redact or (lambda message: message)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                data = os.read(0, 65536)
            except OSError:
                data = b""
            if not data:
                if buffer.strip():
                    self._take(buffer)
                self._log.write("in_eof")
                self._queue.put(EOF)
                return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    self._take(line)

    def _take(self, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace")
        try:
            message: Any = json.loads(text)
        except ValueError:
            self._log.write("in_raw", text=text[:2000])
            self._queue.put(("raw", text))
            return
        self._log.write("in", message=self._redact(message))
        self._queue.put(message)

    def get(self, timeout: float | None = None) -> Any:
        """The next message; `EOF` at end of input; raises queue.Empty after `timeout`."""
        return self._queue.get(timeout=timeout)


class Out:
    """Writes protocol lines to stdout (and logs them)."""

    def __init__(self, log: RunLog) -> None:
        self._log = log

    def send(self, message: Any) -> None:
        self._log.write("out", message=message)
        self.raw(json.dumps(message, separators=(",", ":")))

    def raw(self, text: str | bytes) -> None:
        data = text if isinstance(text, bytes) else text.encode()
        sys.stdout.buffer.write(data + b"\n")
        sys.stdout.buffer.flush()


def on_sigterm(log: RunLog) -> None:
    """On SIGTERM: record it, give the stdin reader a moment to log what already arrived, exit."""

    def handler(signum: int, frame: Any) -> None:
        log.write("sigterm")
        time.sleep(0.3)
        log.write("exit", code=143)
        os._exit(143)

    signal.signal(signal.SIGTERM, handler)


def release_file(home: Path) -> Path:
    """The file a test creates to let a waiting scenario go on."""
    return home / f"release-{os.environ.get('ORCA_RUN_ID', 'none')}"


def script_dir() -> Path:
    return Path(os.path.abspath(sys.argv[0])).parent
