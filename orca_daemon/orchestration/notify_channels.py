"""One attempt to deliver a notification on one channel: `notify-send` on the desktop, or a POST
to a webhook in one of its formats (Orca's JSON, ntfy, Slack). Each attempt is bounded by a
timeout; its error says why, and never carries the URL or a header's value.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import shutil
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from email.header import Header
from typing import Any, TypeVar

import msgspec

from orca_client.events import NotificationTriggered, notification_key
from orca_daemon import __version__
from orca_daemon.config import WebhookSettings
from orca_daemon.limits import restore_inherited_limit
from orca_daemon.sessions.procs import child_env

T = TypeVar("T")

NTFY_PRIORITY = {"waiting": "high", "failed": "high", "completed": "default"}
NTFY_TAGS = {"waiting": "question", "failed": "x", "completed": "white_check_mark"}
"""ntfy shows these tags as emoji (❓, ❌, ✅)."""
URGENCY = {"waiting": "critical", "failed": "critical", "completed": "normal"}


class DeliveryError(Exception):
    """This attempt failed; a later one may succeed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ChannelUnavailable(DeliveryError):
    """The channel cannot work here (no `notify-send`): not retried."""


# --------------------------------------------------------------------------- the desktop


def desktop_argv(notice: NotificationTriggered, program: str) -> list[str]:
    """notify-send's arguments: the summary, and the body (markup-escaped: notification
    servers may read `<b>` and `&amp;` in it)."""
    return [
        program,
        "--app-name=Orca",
        f"--urgency={URGENCY[notice.kind]}",
        "--",
        notice.summary,
        html.escape(notice.text, quote=False),
    ]


async def notify_desktop(notice: NotificationTriggered, limit: float) -> None:
    """Run `notify-send` found on orcad's PATH; raises ChannelUnavailable if there is none."""
    program = shutil.which("notify-send")
    if program is None:
        raise ChannelUnavailable("notify-send not found on orcad's PATH")
    try:
        process = await asyncio.create_subprocess_exec(
            *desktop_argv(notice, program),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=child_env(),
            start_new_session=True,
            preexec_fn=restore_inherited_limit,
        )
    except OSError as exc:
        raise DeliveryError(f"could not start notify-send: {exc.strerror or exc}") from None
    try:
        status = await asyncio.wait_for(process.wait(), limit)
    except (TimeoutError, asyncio.CancelledError) as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await asyncio.shield(process.wait())
        if isinstance(exc, asyncio.CancelledError):
            raise
        raise DeliveryError(f"notify-send timed out after {limit:g}s") from None
    if status != 0:
        raise DeliveryError(f"notify-send exited with status {status}")


# --------------------------------------------------------------------------- webhooks


def webhook_request(
    webhook: WebhookSettings, notice: NotificationTriggered
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a POST of `notice` to `webhook`, in its format."""
    key = notification_key(notice.trigger_position, webhook.channel)
    headers = {"User-Agent": f"orca/{__version__}", "Idempotency-Key": key}
    if webhook.format == "ntfy":  # text to the topic URL; the rest in ntfy's headers
        body = notice.text.encode()
        headers |= {
            "Content-Type": "text/plain; charset=utf-8",
            "Title": header_text(notice.summary),
            "Priority": NTFY_PRIORITY[notice.kind],
            "Tags": NTFY_TAGS[notice.kind],
        }
    elif webhook.format == "slack":
        text = f"*{slack_escape(notice.summary)}*\n{slack_escape(notice.text)}"
        body = msgspec.json.encode({"text": text})
        headers["Content-Type"] = "application/json"
    else:
        body = msgspec.json.encode(json_body(notice, key))
        headers["Content-Type"] = "application/json"
    return body, headers | webhook.headers


def json_body(notice: NotificationTriggered, key: str) -> dict[str, Any]:
    """Orca's own webhook body (the `json` format)."""
    return {
        "run_id": notice.run_id,
        "title": notice.title,
        "kind": notice.kind,
        "summary": notice.summary,
        "text": notice.text,
        "answer_command": notice.answer_command,
        "request_id": notice.request_id,
        "position": notice.trigger_position,
        "idempotency_key": key,
    }


def header_text(text: str) -> str:
    """`text` as a header value: as is if ASCII, else RFC 2047 encoded (ntfy decodes it)."""
    return text if text.isascii() else Header(text, "utf-8").encode(maxlinelen=10_000)


def slack_escape(text: str) -> str:
    """Slack's mrkdwn needs `&`, `<` and `>` escaped; nothing else."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is a failed delivery (urllib would turn the POST into a GET)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DeliveryError(f"HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
        raise DeliveryError(f"could not connect: {text}") from None
    except TimeoutError:
        raise DeliveryError(f"no reply within {timeout:g}s") from None
    except (OSError, ValueError) as exc:  # a reset connection, a malformed reply
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status}")


async def post_webhook(
    webhook: WebhookSettings, notice: NotificationTriggered, limit: float
) -> None:
    """POST `notice` to `webhook`; a reply other than 2xx, or none within `limit`, fails."""
    body, headers = webhook_request(webhook, notice)
    try:
        await asyncio.wait_for(
            in_daemon_thread(lambda: _post(webhook.url, body, headers, limit)), limit + 1
        )
    except TimeoutError:
        raise DeliveryError(f"no reply within {limit:g}s") from None


async def in_daemon_thread(work: Callable[[], T]) -> T:
    """`work()` in a daemon thread of its own. Cancelling abandons it; it ends by its own
    timeout, and never holds up orcad's exit (anyio's worker threads would)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def target() -> None:
        try:
            result = work()
        except BaseException as exc:  # handed to the awaiting task
            error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(settle, lambda: future.set_exception(error))
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, lambda: future.set_result(result))

    threading.Thread(target=target, name="orca-notify", daemon=True).start()
    return await future
