"""What notification tests stand in for: a webhook receiver on loopback (stdlib http.server in a
thread) that records each POST and replies as the test says, and a `notify-send` on orcad's
PATH that appends its argv as a JSON line to a file."""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from conftest import DaemonProcess, all_events, wait_until


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A loopback HTTP server: every POST is recorded; `status(post)` says what to reply
    (default 200); `hold` (if set) is waited on before replying."""

    status: Callable[[Post], int] = lambda post: 200
    hold: threading.Event | None = None
    posts: list[Post] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                post = Post(self.path, dict(self.headers.items()), self.rfile.read(length))
                receiver.posts.append(post)
                if receiver.hold is not None:
                    receiver.hold.wait(30)
                self.send_response(receiver.status(post))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket: connections are refused until `start` again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def to(self, path: str) -> list[Post]:
        return [post for post in self.posts if post.path == path]


@contextmanager
def receiving(**kwargs: Any) -> Iterator[Receiver]:
    receiver = Receiver(**kwargs).start()
    try:
        yield receiver
    finally:
        if receiver.hold is not None:
            receiver.hold.set()
        receiver.stop()


NOTIFY_SEND = """#!{python}
import json, sys
with open({log!r}, "a") as handle:
    handle.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def fake_notify_send(directory: Path) -> tuple[dict[str, str], Path]:
    """A `notify-send` in `directory/bin` that records each call in `directory/desktop.jsonl`;
    returns the environment that puts it on orcad's PATH, and the record file."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = directory / "desktop.jsonl"
    program = bin_dir / "notify-send"
    program.write_text(NOTIFY_SEND.format(python=sys.executable, log=str(record)))
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}, record


def desktop_calls(record: Path) -> list[list[str]]:
    """Each notify-send call's arguments, in order."""
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


def notify_config(
    webhooks: Sequence[tuple[str, str]] = (),
    desktop: bool = False,
    extra: str = "",
    headers: dict[str, str] | None = None,
) -> str:
    """`[notify]` with the desktop on or off and one `[[notify.webhook]]` per (url, format)."""
    lines = ["[notify]", f"desktop = {'true' if desktop else 'false'}", "timeout_seconds = 5"]
    lines += [extra] if extra else []
    for url, form in webhooks:
        lines += ["[[notify.webhook]]", f"url = {json.dumps(url)}", f"format = {json.dumps(form)}"]
        if headers:
            pairs = ", ".join(f"{name} = {json.dumps(value)}" for name, value in headers.items())
            lines.append(f"headers = {{{pairs}}}")
    return "\n".join(lines) + "\n"


def notification_events(daemon: DaemonProcess, kind: str) -> list[dict[str, Any]]:
    return [e for _, e in all_events(daemon) if e["type"] == kind]


def wait_delivered(daemon: DaemonProcess, count: int) -> list[dict[str, Any]]:
    """Wait until `count` deliveries are recorded (sent or failed) and none is outstanding;
    returns the notification_sent events."""

    def settled() -> bool:
        events = [e for _, e in all_events(daemon)]
        due = sum(len(e["channels"]) for e in events if e["type"] == "notification_triggered")
        done = sum(1 for e in events if e["type"] in ("notification_sent", "notification_failed"))
        return done >= count and done == due

    wait_until(settled, what=f"{count} notifications delivered")
    return notification_events(daemon, "notification_sent")
