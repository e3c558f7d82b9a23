"""A fuzz test of the socket: batches of random frames and bodies, signed and not, sent to a real
orcad. Bodies are random bytes, random JSON (deep nesting, huge numbers, wrong types) and valid
envelopes whose requests are built field by field from the Request structs, with values of the
right type or any other.

After every batch orcad has answered each message (never with `internal`) and still answers
`hello`; at the end it stops cleanly and, restarted, shows the same log and the same status.
"""

from __future__ import annotations

import json
import os
import time
import typing
from typing import Any

import msgspec
from conftest import DaemonProcess, all_records, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.sockets import RawPeer

from orca_client.views import TERMINAL_STATUSES, StatusResult
from orca_client.wire import (
    PROTOCOL,
    REQUEST_TYPES,
    Hello,
    Reply,
    Shutdown,
    StartDebug,
    StartPlan,
    StartRun,
    encode_request,
)

EXAMPLES = 800
"""Batches per run: about 10 s on a loaded machine (hypothesis picks new ones each run)."""

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: far past 64 bits too
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=40,
)
deep_nesting = st.tuples(
    st.integers(1, 20_000), st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'{"id":', b"")])
).map(lambda t: t[1][0] * t[0] + b"1" + t[1][1] * t[0])
huge_numbers = st.sampled_from(
    [b"1e400", b"-1e400", b"123456789012345678901234567890", b"1" * 5000, b"-0", b"1e-400"]
)
timestamps = st.one_of(
    st.just("now"), st.floats(allow_nan=False), st.integers(), huge_numbers.map(bytes.decode)
)
_SPAWNING = (StartRun, StartDebug, StartPlan, Shutdown)


def _payload(request_type: type[msgspec.Struct], loose: bool) -> st.SearchStrategy[dict[str, Any]]:
    """A request of this type: each field absent, of its own type, or (`loose`) of any type."""
    info = msgspec.inspect.type_info(request_type)
    assert isinstance(info, msgspec.inspect.StructType)
    hints = typing.get_type_hints(request_type)
    optional = {
        field.encode_name: st.from_type(hints[field.name]) | json_values
        if loose
        else st.from_type(hints[field.name])
        for field in info.fields
        if request_type is not StartRun or field.name not in ("command", "cwd", "agent")
    }  # a `run` runs only `true`, in a directory of the test's own (see `frames_of`)
    return st.fixed_dictionaries({"type": st.just(info.tag)}, optional=optional)


def request_payloads(loose: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Request bodies of every kind but those that stop orcad or start agents."""
    kinds = [t for t in REQUEST_TYPES if t not in _SPAWNING] + [StartRun]
    payloads = st.one_of([_payload(t, loose) for t in kinds])
    if not loose:
        return payloads
    return payloads | st.builds(
        lambda tag, extra: {"type": tag, **extra},
        st.text(max_size=20),
        st.dictionaries(st.text(max_size=12), json_values, max_size=4),
    )


# A message is described by a tuple, turned into frames when sent (so `ts` is fresh):
#   ("frames", [bytes, ...])              frames as they are
#   ("body", signed, bytes)               one body, with a valid signature or a wrong one
#   ("envelope", signed, id, nonce, ts, payload)
messages = st.one_of(
    st.tuples(st.just("frames"), st.lists(st.binary(max_size=300), min_size=1, max_size=5)),
    st.tuples(
        st.just("body"),
        st.booleans(),
        st.one_of(
            st.binary(max_size=2000),
            json_values.map(lambda v: json.dumps(v).encode()),
            deep_nesting,
            huge_numbers,
        ),
    ),
    st.tuples(
        st.just("envelope"),
        st.booleans(),
        st.one_of(st.text(max_size=200), json_values),
        st.one_of(st.just("fresh"), st.text(max_size=200), json_values),
        timestamps,
        request_payloads(loose=True),
    ),
    st.tuples(
        st.just("envelope"),
        st.just(True),
        st.text(max_size=200),
        st.just("fresh"),
        st.just("now"),
        request_payloads(loose=False),
    ),
)


def frames_of(peer: RawPeer, message: tuple[Any, ...], cwd: str) -> list[bytes]:
    if message[0] == "frames":
        return list(message[1])
    if message[0] == "body":
        _, signed, body = message
    else:
        _, signed, request_id, nonce, ts, payload = message
        if payload.get("type") == "run":
            payload = {**payload, "command": ["true"], "cwd": cwd}
        body = json.dumps(
            {
                "id": request_id,
                "nonce": os.urandom(16).hex() if nonce == "fresh" else nonce,
                "ts": time.time() if ts == "now" else ts,
                "request": payload,
            }
        ).encode()
        if isinstance(ts, str) and ts != "now":  # a number too big for JSON's usual floats
            body = body.replace(json.dumps(ts).encode(), ts.encode())
    signature = peer.signed(body)[1] if signed else b"0" * 64
    return [PROTOCOL, signature, body]


def replies_to(peer: RawPeer, count: int) -> list[Reply]:
    """The next `count` replies (pushes for subscriptions the batch opened are skipped)."""
    replies: list[Reply] = []
    while len(replies) < count:
        message = peer.receive(timeout=10.0)
        if isinstance(message, Reply):
            replies.append(message)
    return replies


def test_random_messages_never_break_orcad(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        client.request(StartRun(command=["true"], cwd=str(daemon.home), title="before"))
    before = all_records(daemon)
    peer = RawPeer(daemon)
    cwd = str(daemon.home)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(batch=st.lists(messages, min_size=1, max_size=6))
    def check(batch: list[tuple[Any, ...]]) -> None:
        assert daemon.process is not None and daemon.process.poll() is None, daemon.output()
        for message in batch:
            peer.send(frames_of(peer, message, cwd))
        for reply in replies_to(peer, len(batch)):
            assert reply.error is None or reply.error.code != "internal", reply
        peer.send(encode_request(peer.key, Hello())[1])
        assert replies_to(peer, 1)[0].ok

    check()
    peer.close()
    status = wait_until(lambda: settled(daemon), "every run started to end", timeout=60)
    assert daemon.stop() == 0
    output = daemon.output()
    assert "Traceback" not in output and " ERROR " not in output, output[-3000:]
    daemon.start()
    after = all_records(daemon)
    assert after[: len(before)] == before
    assert [r.position for r in after] == list(range(1, len(after) + 1))
    assert daemon.status() == status


def settled(daemon: DaemonProcess) -> StatusResult | None:
    """The status once every run has ended (the last batches may have started some) and the log
    has stopped growing for a moment: what a restart must show again."""
    first = daemon.status()
    if any(run.status not in TERMINAL_STATUSES for run in first.runs):
        return None
    time.sleep(0.2)
    again = daemon.status()
    return again if again.head_position == first.head_position else None
