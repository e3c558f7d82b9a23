"""The wire protocol (orca_client/wire.py): framing, signing, decoding, and the replay guard.

Everything here is pure: frames are built by hand where a test needs a broken one, and the
replay guard is given explicit clocks.
"""

from __future__ import annotations

import msgspec
import pytest
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from orca_client.replay import ReplayGuard
from orca_client.wire import (
    MAX_MESSAGE_BYTES,
    PROTOCOL,
    Cancel,
    CancelResult,
    Done,
    EventRecord,
    EventsPushed,
    Hello,
    HelloResult,
    ReadEvents,
    Reply,
    StartRun,
    Status,
    Subscribe,
    SubscriptionOverflowed,
    WireError,
    check_request_size,
    decode_daemon_message,
    decode_request,
    decode_result,
    encode_daemon_message,
    encode_request,
    error_reply,
    ok_reply,
    request_id_of,
    sign,
)

KEY = b"0123456789abcdef" * 4
OTHER_KEY = b"fedcba9876543210" * 4
NONCE = "n" * 32


def signed(body: bytes, key: bytes = KEY) -> list[bytes]:
    return [PROTOCOL, sign(key, body), body]


def envelope(request: dict[str, object], **fields: object) -> bytes:
    body: dict[str, object] = {"id": "req-1", "nonce": NONCE, "ts": 1700000000.0}
    body.update(fields)
    body["request"] = request
    return msgspec.json.encode(body)


def refusal(frames: list[bytes], key: bytes = KEY) -> WireError:
    with pytest.raises(WireError) as raised:
        decode_request(key, frames)
    return raised.value


# --------------------------------------------------------------------------- requests


@pytest.mark.parametrize(
    "request_",
    [
        Hello(),
        Status(),
        Status(run_id="abc"),
        StartRun(command=["/bin/echo", "hi"], cwd="/tmp", title="t", prompt="ünïcode ✓"),
        Cancel(run_id="abc", reason="enough"),
        ReadEvents(after=10, limit=5, run_id="abc"),
        Subscribe(after=3),
    ],
)
def test_a_request_round_trips_through_its_frames(request_: object) -> None:
    request_id, frames = encode_request(KEY, request_, request_id="my-id")  # type: ignore[arg-type]
    assert request_id == "my-id"
    assert frames[0] == PROTOCOL
    assert len(frames) == 3

    decoded = decode_request(KEY, frames)
    assert decoded.id == "my-id"
    assert decoded.request == request_
    assert 16 <= len(decoded.nonce) <= 128


def test_each_encoded_request_gets_a_fresh_id_nonce_and_timestamp() -> None:
    first_id, first = encode_request(KEY, Hello())
    second_id, second = encode_request(KEY, Hello())
    a, b = decode_request(KEY, first), decode_request(KEY, second)
    assert first_id and second_id and first_id != second_id
    assert a.nonce != b.nonce
    assert a.ts > 1_600_000_000


def test_a_tampered_body_is_unauthenticated() -> None:
    _, frames = encode_request(KEY, Cancel(run_id="mine"))
    tampered = frames[2].replace(b"mine", b"your")
    error = refusal([frames[0], frames[1], tampered])
    assert error.code == "unauthenticated"
    assert "signature" in error.message


def test_a_tampered_signature_is_unauthenticated() -> None:
    _, frames = encode_request(KEY, Hello())
    signature = frames[1]
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert refusal([frames[0], flipped, frames[2]]).code == "unauthenticated"
    assert refusal([frames[0], b"", frames[2]]).code == "unauthenticated"
    assert refusal([frames[0], signature.upper(), frames[2]]).code == "unauthenticated"


def test_a_request_signed_with_another_key_is_unauthenticated() -> None:
    _, frames = encode_request(OTHER_KEY, Hello())
    assert refusal(frames).code == "unauthenticated"


@pytest.mark.parametrize("count", [0, 1, 2, 4])
def test_the_wrong_number_of_frames_is_a_bad_request(count: int) -> None:
    _, frames = encode_request(KEY, Hello())
    frames = [*frames, b"extra"][:count]
    error = refusal(frames)
    assert error.code == "bad_request"
    assert "3 frames" in error.message
    assert f"got {count}" in error.message


def test_another_protocol_is_a_bad_request_naming_both_protocols() -> None:
    _, frames = encode_request(KEY, Hello())
    error = refusal([b"orca/2", frames[1], frames[2]])
    assert error.code == "bad_request"
    assert "orca/2" in error.message and "orca/1" in error.message


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "malformed"),
        (b"", "truncated"),
        (b"[1, 2]", "Expected `object`, got `array`"),
        (b'{"id": "x", "ts": 1.0, "request": {"type": "hello"}}', "missing required field `nonce`"),
        (envelope({"type": "launch_missiles"}), "$.request.type"),
        (envelope({"type": "cancel", "run_id": 7}), "$.request.run_id"),
        (envelope({"type": "read", "after": "ten"}), "$.request.after"),
        (envelope({"type": "hello"}, ts="yesterday"), "$.ts"),
        (envelope({"type": "hello"}, admin=True), "unknown field `admin`"),
        (envelope({"type": "status", "verbose": True}), "unknown field `verbose`"),
        (envelope({"type": "run", "command": "ls", "cwd": "/"}), "$.request.command"),
    ],
)
def test_a_signed_but_undecodable_request_is_a_bad_request_naming_the_problem(
    body: bytes, problem: str
) -> None:
    error = refusal(signed(body))
    assert error.code == "bad_request"
    assert error.message.startswith("invalid request")
    assert problem in error.message


def test_a_body_over_the_limit_is_too_large_even_before_its_signature_is_checked() -> None:
    body = b" " * (MAX_MESSAGE_BYTES + 1)
    assert refusal(signed(body)).code == "too_large"
    error = refusal([PROTOCOL, b"not a signature", body])
    assert error.code == "too_large"
    assert str(MAX_MESSAGE_BYTES) in error.message


def test_a_body_exactly_at_the_limit_is_not_too_large() -> None:
    _, frames = encode_request(KEY, StartRun(command=["x"], cwd="/"))
    body = frames[2] + b" " * (MAX_MESSAGE_BYTES - len(frames[2]))
    assert len(body) == MAX_MESSAGE_BYTES
    assert decode_request(KEY, signed(body)).request == StartRun(command=["x"], cwd="/")


def test_the_id_of_an_undecodable_request_is_recovered_when_readable() -> None:
    assert request_id_of(envelope({"type": "nope"})) == "req-1"
    assert request_id_of(b'{"id": 5}') == ""
    assert request_id_of(b"[]") == ""
    assert request_id_of(b"{broken") == ""
    assert request_id_of(msgspec.json.encode({"id": "x" * 1000})) == "x" * 128


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000 + b"]" * 1000,
        b"[" * 100_000,
        b'{"nonce": "n", "request": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"x": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
        b'{"id": 1e999999}',
        b"\xff\xfe" * 1000,
    ],
)
def test_request_id_of_never_raises_whatever_the_body(body: bytes) -> None:
    assert request_id_of(body) == ""


def test_request_id_of_reads_a_leading_id_even_from_a_body_over_the_limit() -> None:
    big = b'{"id": "big-1", "nonce": "n", "request": {"type": "plan", "x": "'
    big += b"y" * (2 * MAX_MESSAGE_BYTES) + b'"}}'
    assert request_id_of(big) == "big-1"
    # An id that is not first is found by decoding, but only within the size limit.
    later = b'{"nonce": "n", "id": "later-1", "pad": "' + b"y" * 100 + b'"}'
    assert request_id_of(later) == "later-1"
    huge_later = b'{"pad": "' + b"y" * (2 * MAX_MESSAGE_BYTES) + b'", "id": "x"}'
    assert request_id_of(huge_later) == ""


def test_a_request_too_large_for_the_daemon_is_refused_before_it_is_sent() -> None:
    _, frames = encode_request(KEY, Hello())
    check_request_size(frames)
    _, frames = encode_request(
        KEY, StartRun(cwd="/", command=["x"], prompt="p" * (MAX_MESSAGE_BYTES + 1))
    )
    with pytest.raises(WireError) as raised:
        check_request_size(frames)
    assert raised.value.code == "too_large"
    assert "at most 1 MiB" in raised.value.message


# --------------------------------------------------------------------------- daemon messages


RECORD = EventRecord(
    position=7,
    stream="run-abc",
    version=2,
    recorded_at=1700000000.5,
    schema_version=1,
    event=msgspec.Raw(b'{"type":"run_created","run_id":"abc","title":"t","cwd":"/"}'),
)


@pytest.mark.parametrize(
    "message",
    [
        ok_reply("r1", Done()),
        ok_reply("r2", CancelResult(run_id="abc", status="cancelled", already_terminal=False)),
        error_reply("r3", "not_found", "no run with id 'x'"),
        EventsPushed(subscription="sub-1", events=[RECORD, RECORD]),
        EventsPushed(subscription="sub-1", events=[]),
        SubscriptionOverflowed(subscription="sub-1", resume_from=42),
    ],
)
def test_a_daemon_message_round_trips_through_its_frames(message: object) -> None:
    frames = encode_daemon_message(KEY, message)  # type: ignore[arg-type]
    assert frames[0] == PROTOCOL
    assert frames[1] == sign(KEY, frames[2])
    assert decode_daemon_message(KEY, frames) == message


def test_a_reply_result_decodes_as_its_result_type() -> None:
    result = HelloResult(
        protocol=1,
        daemon_version="0.1.0",
        instance="i",
        pid=1,
        started_at=1.0,
        head_position=9,
        log_file="/x",
    )
    reply = decode_daemon_message(KEY, encode_daemon_message(KEY, ok_reply("r", result)))
    assert isinstance(reply, Reply) and reply.ok and reply.error is None
    assert decode_result(reply, HelloResult) == result

    with pytest.raises(WireError) as raised:
        decode_result(reply, CancelResult)
    assert raised.value.code == "bad_request"
    assert "CancelResult" in raised.value.message


def test_an_error_reply_carries_its_code_and_message() -> None:
    frames = encode_daemon_message(KEY, error_reply("r9", "conflict", "run is busy"))
    reply = decode_daemon_message(KEY, frames)
    assert isinstance(reply, Reply)
    assert (reply.id, reply.ok) == ("r9", False)
    assert reply.error is not None
    assert (reply.error.code, reply.error.message) == ("conflict", "run is busy")


def test_an_events_push_keeps_each_event_body_byte_for_byte() -> None:
    pushed = decode_daemon_message(
        KEY, encode_daemon_message(KEY, EventsPushed(subscription="s", events=[RECORD]))
    )
    assert isinstance(pushed, EventsPushed)
    assert bytes(pushed.events[0].event) == bytes(RECORD.event)


def test_a_daemon_message_not_signed_with_the_token_is_refused() -> None:
    frames = encode_daemon_message(
        OTHER_KEY, SubscriptionOverflowed(subscription="s", resume_from=1)
    )
    with pytest.raises(WireError) as raised:
        decode_daemon_message(KEY, frames)
    assert raised.value.code == "unauthenticated"


def test_a_request_is_not_a_daemon_message() -> None:
    _, frames = encode_request(KEY, Hello())
    with pytest.raises(WireError) as raised:
        decode_daemon_message(KEY, frames)
    assert raised.value.code == "bad_request"
    assert "invalid message from daemon" in raised.value.message


# --------------------------------------------------------------------------- replay guard

START = 1_700_000_000.0
WINDOW = 60.0


def replay_refusal(guard: ReplayGuard, nonce: str, ts: float, now: float) -> WireError:
    with pytest.raises(WireError) as raised:
        guard.check(nonce, ts, now)
    return raised.value


def test_a_fresh_request_is_accepted_once_and_its_replay_is_refused() -> None:
    guard = ReplayGuard(not_before=START, window=WINDOW)
    guard.check(NONCE, START + 10, now=START + 10)
    error = replay_refusal(guard, NONCE, START + 10, now=START + 11)
    assert error.code == "replayed"
    assert "nonce already used" in error.message
    guard.check("m" * 32, START + 10, now=START + 11)  # another nonce is fine


@pytest.mark.parametrize("skew", [-WINDOW - 0.001, WINDOW + 0.001, -3600.0, 3600.0])
def test_a_timestamp_outside_the_window_is_refused_as_replayed(skew: float) -> None:
    guard = ReplayGuard(not_before=START, window=WINDOW)
    now = START + 100_000
    error = replay_refusal(guard, NONCE, now + skew, now)
    assert error.code == "replayed"
    assert "60s" in error.message


@pytest.mark.parametrize("skew", [-WINDOW, WINDOW, 0.0])
def test_a_timestamp_at_the_edge_of_the_window_is_accepted(skew: float) -> None:
    guard = ReplayGuard(not_before=START, window=WINDOW)
    now = START + 1000
    guard.check(NONCE, now + skew, now)


@pytest.mark.parametrize("before", [5.0, 0.5, 0.001])
def test_a_request_signed_before_the_daemon_started_is_refused_as_stale(before: float) -> None:
    """No slack: a request captured on its way to the previous daemon, however recent, is
    useless to this one (a client whose request crossed the restart signs it again)."""
    guard = ReplayGuard(not_before=START, window=WINDOW)
    error = replay_refusal(guard, NONCE, START - before, now=START + 1)
    assert error.code == "stale"
    assert "before this daemon started" in error.message
    guard.check(NONCE, START, now=START + 1)


@pytest.mark.parametrize("nonce", ["", "short", "x" * 15, "x" * 129])
def test_a_nonce_of_the_wrong_length_is_a_bad_request(nonce: str) -> None:
    guard = ReplayGuard(not_before=START, window=WINDOW)
    error = replay_refusal(guard, nonce, START, START)
    assert error.code == "bad_request"
    assert "16 to 128" in error.message


def test_nonces_are_remembered_for_twice_the_window_then_forgotten() -> None:
    guard = ReplayGuard(not_before=START, window=WINDOW)
    t0 = START + 10
    guard.check(NONCE, t0, now=t0)
    # Still remembered just before 2x window, even with a fresh timestamp.
    later = t0 + 2 * WINDOW - 0.001
    assert replay_refusal(guard, NONCE, later, now=later).code == "replayed"
    # Forgotten after 2x window: by then the original request's timestamp is long refused.
    much_later = t0 + 2 * WINDOW + 0.001
    assert replay_refusal(guard, NONCE, t0, now=much_later).code == "replayed"
    guard.check(NONCE, much_later, now=much_later)


def test_memory_stays_bounded_under_a_steady_stream_of_requests() -> None:
    guard = ReplayGuard(not_before=START, window=WINDOW)
    for second in range(10_000):
        now = START + second
        guard.check(f"{second:032d}", now, now)
    # Only the nonces of the last 2x window (plus the current one) are held.
    assert len(guard._seen) <= 2 * WINDOW + 2
    assert len(guard._order) == len(guard._seen)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a" * 16, "b" * 16, "c" * 16]),
            st.floats(-200, 200),
            st.floats(0, 90),
        ),
        max_size=40,
    )
)
def test_the_same_signed_request_is_never_accepted_twice(
    attempts: list[tuple[str, float, float]],
) -> None:
    """Whatever the timing, one (nonce, timestamp) pair — one captured request — runs once."""
    guard = ReplayGuard(not_before=START, window=WINDOW)
    now = START + 500
    accepted: set[tuple[str, float]] = set()
    for nonce, ts_offset, advance in attempts:
        now += advance
        ts = START + 500 + ts_offset
        try:
            guard.check(nonce, ts, now)
        except WireError as error:
            assert error.code == "replayed"
            continue
        assert (nonce, ts) not in accepted
        accepted.add((nonce, ts))


def test_the_documented_signing_test_vector_holds() -> None:
    """docs/protocol.md gives client authors a test vector: it must be what orcad computes."""
    doc = (REPO / "docs" / "protocol.md").read_text()
    token = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
    body = (
        b'{"id":"1","nonce":"0123456789abcdef0123456789abcdef","ts":1795511260.0,'
        b'"request":{"type":"hello"}}'
    )
    signature = sign(token.encode(), body).decode()
    assert f"token text `{token}`" in doc
    assert body.decode() in doc
    assert f"`{signature}`" in doc
    assert decode_request(token.encode(), [PROTOCOL, signature.encode(), body]).id == "1"
