"""JSON-RPC 2.0 for `orca bridge`, without I/O: a line from the editor becomes a call with an
Orca request, and results, errors, events and daemon notices become lines for the editor.

The methods are the socket's request types and their params the requests' fields (see
docs/protocol.md, "The stdio bridge"). Nothing here ever logs a param: answers may be secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from orca_client.views import Struct
from orca_client.wire import REQUEST_TYPES, Answer, EventRecord, Orchestrate, Request

MAX_LINE_BYTES = 1 << 20
"""The longest line the bridge reads (without its newline); a longer one is dropped."""

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
ORCA_ERROR = -32000
"""orcad (or the bridge, for its own limits) refused the request; `data.orca_code` says why."""
DAEMON_UNAVAILABLE = -32001
"""orcad is not running or not answering."""

METHODS: dict[str, type[Struct]] = {
    request_type.__struct_config__.tag: request_type  # type: ignore[misc]
    for request_type in REQUEST_TYPES
}
"""Each method and the request it sends: the socket's request types, by their tag."""

DEFAULT_AUTHOR_FIELDS: dict[type[Struct], str] = {
    Answer: "answered_by",
    Orchestrate: "requested_by",
}
"""The field that names who asked, filled in with the bridge's name when the editor omits it."""


class RpcError(Exception):
    """A call that gets a JSON-RPC error: `code`, the message, and Orca's error code if any."""

    def __init__(
        self, code: int, message: str, orca_code: str | None = None, call_id: Any = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.orca_code = orca_code
        self.call_id = call_id
        """The id of the call it answers (None when the line had none that could be read)."""


@dataclass(frozen=True)
class Call:
    """One request or notification from the editor."""

    method: str
    params: dict[str, Any]
    call_id: Any = None
    answered: bool = True
    """False for a notification (no `id`): it is carried out, and gets no response."""


def parse_line(line: bytes) -> Call:
    """The call on one line; RpcError for anything that is not a JSON-RPC 2.0 request (with
    the call's id when it could be read)."""
    try:
        message = msgspec.json.decode(line)
    except msgspec.DecodeError as exc:
        raise RpcError(PARSE_ERROR, f"not JSON: {exc}") from None
    except RecursionError:
        raise RpcError(PARSE_ERROR, "not JSON the bridge reads: nested too deeply") from None
    if isinstance(message, list):
        raise RpcError(INVALID_REQUEST, "batches (JSON arrays) are not supported")
    if not isinstance(message, dict):
        raise RpcError(INVALID_REQUEST, "a request is a JSON object")
    call_id = message.get("id")
    if isinstance(call_id, bool) or not isinstance(call_id, int | float | str | None):
        raise RpcError(INVALID_REQUEST, "`id` must be a string or a number")
    if message.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, 'a request has "jsonrpc": "2.0"', call_id=call_id)
    method = message.get("method")
    if not isinstance(method, str):
        raise RpcError(INVALID_REQUEST, "a request has a `method` string", call_id=call_id)
    params = message.get("params", {})
    if isinstance(params, list):
        raise RpcError(INVALID_PARAMS, "params must be an object (by name)", "bad_request", call_id)
    if not isinstance(params, dict):
        raise RpcError(INVALID_REQUEST, "`params` must be an object", call_id=call_id)
    return Call(method, params, call_id, answered="id" in message)


def request_of(call: Call, author: str, lookup: Mapping[str, str | None]) -> Request:
    """The Orca request a call asks for; RpcError for an unknown method or params of the wrong
    shape (naming the field). An answer or orchestration that names nobody is by `author`; a
    request that finds agent binaries (`search_path`, `codex_path`, `claude_path`) and leaves
    them out gets the bridge's own (`lookup`), as the CLI sends its shell's."""
    request_type = METHODS.get(call.method)
    if request_type is None:
        shown = call.method if len(call.method) <= 64 else call.method[:64] + "…"
        raise RpcError(
            METHOD_NOT_FOUND,
            f"unknown method {shown!r}; the methods are {', '.join(sorted(METHODS))}",
            call_id=call.call_id,
        )
    params = call.params
    author_field = DEFAULT_AUTHOR_FIELDS.get(request_type)
    if author_field is not None and author_field not in params:
        params = {**params, author_field: author}
    fields = request_type.__struct_fields__
    missing = {k: v for k, v in lookup.items() if k in fields and k not in params and v}
    if missing:
        params = {**params, **missing}
    try:
        request: Request = msgspec.convert(params, request_type)  # type: ignore[assignment]
    except msgspec.ValidationError as exc:
        where = str(exc).replace("`$.", "`params.").replace("`$`", "`params`")
        raise RpcError(
            INVALID_PARAMS,
            f"invalid params for {call.method}: {where}",
            "bad_request",
            call.call_id,
        ) from None
    return request


# --------------------------------------------------------------------------- lines out


class _Result(msgspec.Struct, kw_only=True):
    jsonrpc: str = "2.0"
    id: Any
    result: msgspec.Raw


class _ErrorData(msgspec.Struct, omit_defaults=True):
    orca_code: str | None = None


class _ErrorBody(msgspec.Struct, omit_defaults=True):
    code: int
    message: str
    data: _ErrorData | None = None


class _Error(msgspec.Struct, kw_only=True):
    jsonrpc: str = "2.0"
    id: Any
    error: _ErrorBody


class _Notification(msgspec.Struct, kw_only=True):
    jsonrpc: str = "2.0"
    method: str
    params: Any


class EventParams(msgspec.Struct):
    """An `event` notification's params: an EventRecord and the bridge subscription it is of."""

    subscription: str
    position: int
    stream: str
    version: int
    recorded_at: float
    schema_version: int
    event: msgspec.Raw


class DaemonAvailable(msgspec.Struct):
    state: str
    instance: str
    restarted: bool


class DaemonUnavailable(msgspec.Struct):
    state: str
    message: str


_encoder = msgspec.json.Encoder()


def _line(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message) + b"\n"


def result_line(call_id: Any, result: bytes) -> bytes:
    """A response carrying `result`, JSON as orcad sent it (passed on unchanged)."""
    return _line(_Result(id=call_id, result=msgspec.Raw(result)))


def error_line(error: RpcError) -> bytes:
    data = None if error.orca_code is None else _ErrorData(error.orca_code)
    return _line(_Error(id=error.call_id, error=_ErrorBody(error.code, error.message, data)))


def event_line(subscription: str, record: EventRecord) -> bytes:
    params = EventParams(
        subscription,
        record.position,
        record.stream,
        record.version,
        record.recorded_at,
        record.schema_version,
        record.event,
    )
    return _line(_Notification(method="event", params=params))


def available_line(instance: str, restarted: bool) -> bytes:
    """orcad answers again (`restarted`: it is another orcad than the one the bridge knew)."""
    return _line(
        _Notification(method="daemon", params=DaemonAvailable("available", instance, restarted))
    )


def unavailable_line(message: str) -> bytes:
    """orcad is not answering; `message` says how to start it."""
    return _line(_Notification(method="daemon", params=DaemonUnavailable("unavailable", message)))
