"""JSON-RPC "lite" as Codex's app-server speaks it: no `jsonrpc` member, ids strings or integers.

Pure helpers: classify an incoming line, and build requests, notifications and responses.
"""

from __future__ import annotations

from typing import Any

import msgspec

Id = int | str

_encoder = msgspec.json.Encoder()


class Message(msgspec.Struct, frozen=True):
    """Any JSON-RPC message; which members are present says what it is."""

    id: Id | None = None
    method: str | None = None
    params: Any = None
    result: Any = None
    error: Any = None

    @property
    def is_request(self) -> bool:
        return self.method is not None and self.id is not None

    @property
    def is_response(self) -> bool:
        return self.method is None and self.id is not None


_decoder = msgspec.json.Decoder(Message)


def parse(line: str) -> Message | None:
    """The message on a line, or None when the line is not a JSON-RPC object."""
    try:
        message = _decoder.decode(line)
    except msgspec.DecodeError:
        return None
    if message.method is None and message.id is None:
        return None
    return message


def request(request_id: Id, method: str, params: Any) -> bytes:
    return _encoder.encode({"id": request_id, "method": method, "params": params}) + b"\n"


def notification(method: str, params: Any = None) -> bytes:
    body: dict[str, Any] = {"method": method}
    if params is not None:
        body["params"] = params
    return _encoder.encode(body) + b"\n"


def response(request_id: Id, result: Any) -> bytes:
    return _encoder.encode({"id": request_id, "result": result}) + b"\n"


def error_response(request_id: Id, code: int, message: str) -> bytes:
    return _encoder.encode({"id": request_id, "error": {"code": code, "message": message}}) + b"\n"


def error_text(error: Any) -> str:
    """A JSON-RPC error object as one line of text."""
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message", "")
        return f"{message} (code {code})" if code is not None else str(message)
    return str(error)
