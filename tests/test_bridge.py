"""`orca bridge --stdio` as an editor uses it: a real bridge subprocess, JSON-RPC lines on its
stdin and stdout, against a real orcad (restarted, killed, overflowed under it)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import DaemonProcess, agent, all_events, process_exists, run_orca, wait_until
from support.bridge import BridgeProcess, RpcFailed
from support.homes import write_config
from support.questions import DONE, of_type, q, wait_pending

from orca_client.answering import who
from orca_client.bridge_stdio import Marker, split_lines
from orca_client.client import fetch_status
from orca_client.wire import StartRun, Status

MAX_IN_FLIGHT = 16


@pytest.fixture
def bridge_for(tmp_path: Path) -> Iterator[Callable[..., BridgeProcess]]:
    """Start bridges (on a daemon's environment); each is killed afterwards if still running."""
    made: list[BridgeProcess] = []

    def start(env: dict[str, str], *args: str) -> BridgeProcess:
        bridge = BridgeProcess(env, tmp_path / f"bridge{len(made)}.stderr", *args)
        made.append(bridge)
        return bridge

    yield start
    for bridge in made:
        bridge.kill()


def hello_of(daemon: DaemonProcess) -> Any:
    with daemon.client() as client:
        return client.hello()


# --------------------------------------------------------------------------- requests


def test_hello_status_and_run_through_json_rpc(
    daemon: DaemonProcess, bridge_for: Callable[..., BridgeProcess]
) -> None:
    bridge = bridge_for(daemon.env)
    hello = bridge.call("hello")
    assert hello["protocol"] == 1
    assert hello["instance"] == hello_of(daemon).instance

    started = bridge.call(
        "run", {"cwd": str(daemon.home), "command": agent("reviewer.py"), "title": "review"}
    )
    assert started["session_id"] == f"{started['run_id']}.1"
    run_ids = [started["run_id"]]
    for number in range(4):
        params = {"cwd": str(daemon.home), "command": ["true"], "title": f"t{number}"}
        run_ids.append(bridge.call("run", params)["run_id"])
    assert daemon.wait_for_run(started["run_id"]).status == "completed"
    for run_id in run_ids:
        daemon.wait_for_run(run_id)

    # orcad pages a status this small; the bridge hands over the whole of it, as the CLI has it.
    small = Status(ended=None, page_bytes=600)
    with daemon.client() as client:
        assert client.request(small).next_cursor is not None
        whole = msgspec.to_builtins(fetch_status(client, small))
    status = bridge.call("status", {"ended": None, "page_bytes": 600})
    assert status["next_cursor"] is None
    assert sorted(run["run_id"] for run in status["runs"]) == sorted(run_ids)
    assert status == whole

    one = bridge.call("status", {"run_id": started["run_id"][:6]})
    assert [run["title"] for run in one["runs"]] == ["review"]
    assert one["sessions"][0]["status"] == "completed"
    assert bridge.finish() == 0


def gated_codex(directory: Path, name: str) -> tuple[Path, Path]:
    """A codex whose `--version` answers once its gate file exists: (the binary, the gate)."""
    gate = directory / f"{name}.open"
    binary = directory / name
    binary.write_text(
        f"#!/bin/sh\nwhile [ ! -e {gate} ]; do sleep 0.02; done\necho 'codex-cli 0.169.0'\n"
    )
    binary.chmod(0o755)
    return binary, gate


def test_requests_are_answered_concurrently_and_more_than_the_limit_are_busy(
    daemon: DaemonProcess, bridge_for: Callable[..., BridgeProcess], tmp_path: Path
) -> None:
    """A request orcad takes long to answer does not hold up a quick one; past MAX_IN_FLIGHT
    requests at once, the bridge says `busy` at once."""
    bridge = bridge_for(daemon.env)
    bridge.call("hello")

    def check(binary: Path) -> dict[str, Any]:
        return {"codex_path": str(binary), "claude_path": str(binary), "search_path": "/none"}

    first, first_gate = gated_codex(tmp_path, "first")
    slow_id = bridge.request("check_agents", check(first))
    assert bridge.call("hello")["protocol"] == 1
    assert bridge.call("status")["next_cursor"] is None
    assert slow_id not in {m["id"] for m in bridge.responses()}
    first_gate.touch()
    assert "agents" in bridge.response(slow_id)["result"]

    second, second_gate = gated_codex(tmp_path, "second")
    slow_ids = [bridge.request("check_agents", check(second)) for _ in range(MAX_IN_FLIGHT)]
    refused = bridge.response(bridge.request("hello"))
    assert refused["error"]["code"] == -32000
    assert refused["error"]["data"]["orca_code"] == "busy"
    assert not {m["id"] for m in bridge.responses()} & set(slow_ids)
    second_gate.touch()
    for call_id in slow_ids:
        agents = bridge.response(call_id)["result"]["agents"]
        assert {a["name"]: a["version"] for a in agents}["codex"] == "0.169.0"
    assert "result" in bridge.response(bridge.request("hello"))
    assert bridge.finish() == 0


def test_requests_that_find_agents_get_the_bridges_path_unless_they_say_where(
    daemon: DaemonProcess, bridge_for: Callable[..., BridgeProcess], tmp_path: Path
) -> None:
    """As the CLI sends its shell's PATH, the bridge sends its own (the editor's environment):
    a codex only on the bridge's PATH is the one orcad finds; a request's own lookup wins."""
    mine = tmp_path / "bin"
    mine.mkdir()
    codex, gate = gated_codex(mine, "codex")
    gate.touch()
    env = {**daemon.env, "PATH": f"{mine}{os.pathsep}{daemon.env['PATH']}"}
    env.pop("ORCA_CODEX_PATH", None)
    bridge = bridge_for(env)

    def codex_binary(params: dict[str, Any]) -> str:
        agents = bridge.call("check_agents", params)["agents"]
        return str({a["name"]: a["binary"] for a in agents}["codex"])

    assert codex_binary({}) == str(codex)
    assert codex_binary({"search_path": "/none"}) != str(codex)
    assert bridge.finish() == 0


# --------------------------------------------------------------------------- subscriptions


def test_a_subscription_survives_restarts_of_orcad_with_no_gap_and_no_duplicate(
    make_daemon: Callable[..., DaemonProcess], bridge_for: Callable[..., BridgeProcess]
) -> None:
    """orcad is stopped and started, then killed (-9) and started, under the bridge while an
    agent goes on counting in its holder: the editor gets every event of the log once, in order
    (what the agent printed while orcad was away too), and is told when orcad came back."""
    daemon = make_daemon().start()
    bridge = bridge_for(daemon.env)
    subscription = bridge.call("subscribe", {"after": 0})["subscription"]
    lines = 300
    started = bridge.call(
        "run", {"cwd": str(daemon.home), "command": agent("counter.py", str(lines), "0.02")}
    )
    run_id = started["run_id"]
    wait_pending(daemon, run_id)
    assert bridge.call("answer", {"run_id": run_id, "text": "go on"})["run_id"] == run_id

    instances = [hello_of(daemon).instance]
    for how in (signal.SIGTERM, signal.SIGKILL):
        daemon.stop(how)
        daemon.start()
        instance = hello_of(daemon).instance
        instances.append(instance)
        back = {"state": "available", "instance": instance, "restarted": True}
        bridge.wait_for(
            f"orcad's return ({instance})", lambda _, back=back: back in bridge.daemon_notices()
        )
        bridge.wait_for_position(hello_of(daemon).head_position)  # resubscribed to this orcad
    assert daemon.wait_for_run(run_id, timeout=60).status == "completed"

    head = hello_of(daemon).head_position
    events = bridge.wait_for_position(head)
    assert [e["position"] for e in events] == list(range(1, head + 1))
    assert {e["subscription"] for e in events} == {subscription}
    assert [(e["position"], e["event"]) for e in events] == all_events(daemon)
    output = "".join(
        e["event"]["text"]
        for e in events
        if e["event"]["type"] == "output_appended" and e["event"]["stream"] == "stdout"
    )
    numbers = [int(line.split()[1]) for line in output.splitlines() if line.startswith("line ")]
    assert numbers == list(range(1, lines + 1))
    assert len(set(instances)) == 3
    assert bridge.stderr().count(f"subscription {subscription}: resumed after position") == 2
    assert bridge.finish() == 0


def test_an_editor_that_stops_reading_gets_every_event_once_it_reads_again(
    make_daemon: Callable[..., DaemonProcess],
    orca_home: Path,
    bridge_for: Callable[..., BridgeProcess],
) -> None:
    """While the editor reads nothing, an agent writes far more than the bridge holds: the bridge
    stops reading from orcad, orcad ends its subscription (overflow), and once the editor reads
    again the bridge resumes from where it was: every position once, in order."""
    write_config(orca_home, "[daemon]\nsubscriber_queue_events = 20\n")
    daemon = make_daemon().start()
    bridge = bridge_for(daemon.env)
    subscription = bridge.call("subscribe", {"after": 0})["subscription"]
    bridge.pause_reading()
    with daemon.client() as client:
        # 64 MiB: more than every buffer on the way holds (orcad's outbox for a peer takes 16
        # MiB, the bridge's 4 MiB), however many events orcad puts in one message
        started = client.request(StartRun(command=agent("firehose.py", "64"), cwd=str(daemon.home)))
    assert daemon.wait_for_run(started.run_id, timeout=60).status == "completed"
    bridge.resume_reading()

    head = hello_of(daemon).head_position
    events = bridge.wait_for_position(head, timeout=60)
    assert [e["position"] for e in events] == list(range(1, head + 1))
    assert {e["subscription"] for e in events} == {subscription}
    assert "ending it at position" in daemon.output()  # orcad did end a subscription of it
    assert f"subscription {subscription}: resumed after position" in bridge.stderr()
    assert bridge.finish() == 0


def test_an_editor_that_closes_stdin_and_reads_nothing_does_not_keep_the_bridge(
    make_daemon: Callable[..., DaemonProcess],
    orca_home: Path,
    bridge_for: Callable[..., BridgeProcess],
) -> None:
    """The bridge holds all the events it may for an editor that reads nothing, and the editor
    closes stdin: the bridge ends all the same (after EXIT_FLUSH_SECONDS without the editor
    reading), with nothing left subscribed."""
    write_config(orca_home, "[daemon]\nsubscription_lease_seconds = 1\n")
    daemon = make_daemon().start()
    with daemon.client() as client:
        started = client.request(StartRun(command=agent("firehose.py", "8"), cwd=str(daemon.home)))
    daemon.wait_for_run(started.run_id)
    bridge = bridge_for(daemon.env)
    bridge.pause_reading()
    bridge.request("subscribe", {"after": 0})
    # orcad sent all it could (more than the bridge holds) and then ended the subscription
    wait_until(lambda: "ending it at position" in daemon.output(), "orcad to give up on it")
    bridge.close_stdin()
    assert bridge.process.wait(30) == 0
    assert hello_of(daemon).subscriptions == 0


def test_a_run_filter_holds_across_a_restart_and_unsubscribe_ends_a_subscription(
    daemon: DaemonProcess, bridge_for: Callable[..., BridgeProcess]
) -> None:
    """A subscription to one run (named by a prefix) resumes after a restart of orcad with that
    run's events only, though another run ran meanwhile; an unsubscribed one gets nothing more."""
    bridge = bridge_for(daemon.env)
    whole = bridge.call("subscribe", {})["subscription"]
    script = {"steps": [{"ask": [q("go")]}, DONE]}
    asking = {"cwd": str(daemon.home), "command": agent("q_ask.py", json.dumps(script))}
    first = bridge.call("run", asking)["run_id"]
    subscribing = bridge.request("subscribe", {"after": 0, "run_id": first[:5]})
    only = bridge.response(subscribing)["result"]["subscription"]
    assert only != whole
    bridge.wait_for("its first events", lambda _: bridge.events(only))
    about_it = [
        m
        for m in bridge.lines
        if m.get("id") == subscribing or m.get("params", {}).get("subscription") == only
    ]
    assert about_it[0]["id"] == subscribing  # the editor learns its id before its events
    wait_pending(daemon, first)
    assert bridge.call("unsubscribe", {"subscription": whole}) == {}
    unsubscribed = len(bridge.lines)
    with pytest.raises(RpcFailed) as unknown:
        bridge.call("unsubscribe", {"subscription": whole})
    assert (unknown.value.code, unknown.value.orca_code) == (-32000, "not_found")
    assert bridge.call("hello", {"subscription": only})["subscription_open"] is True

    other = bridge.call("run", {"cwd": str(daemon.home), "command": agent("reviewer.py")})
    daemon.wait_for_run(other["run_id"])
    daemon.stop()
    daemon.start()
    bridge.call("answer", {"run_id": first, "text": "yes"})
    assert daemon.wait_for_run(first).status == "completed"

    def first_completed(lines: list[dict[str, Any]]) -> bool:
        return any(
            m.get("method") == "event"
            and m["params"]["subscription"] == only
            and m["params"]["event"].get("status") == "completed"
            and m["params"]["event"]["type"] == "run_status_changed"
            for m in lines
        )

    bridge.wait_for("the first run's end", first_completed)
    filtered = bridge.events(only)  # events come in position order: the other run's are before
    assert {e["stream"] for e in filtered} == {f"run-{first}"}
    assert [e["position"] for e in filtered] == [
        position for position, event in all_events(daemon) if event["run_id"] == first
    ]
    late = [m for m in bridge.lines[unsubscribed:] if m.get("method") == "event"]
    assert all(m["params"]["subscription"] == only for m in late)
    assert bridge.finish() == 0
    wait_until(lambda: hello_of(daemon).subscriptions == 0, "the bridge to unsubscribe")


# --------------------------------------------------------------------------- questions


def test_questions_are_answered_through_the_bridge_and_a_secret_is_written_nowhere(
    make_daemon: Callable[..., DaemonProcess],
    orca_home: Path,
    bridge_for: Callable[..., BridgeProcess],
) -> None:
    daemon = make_daemon().start()
    bridge = bridge_for(daemon.env)
    bridge.call("subscribe", {"after": 0})
    secret = "s3cr3t-" + secrets.token_hex(16)
    script = {
        "steps": [
            {"ask": [q("token", "API token?", isSecret=True)]},
            {"ask": [q("colour", "Which colour?"), q("size", "Which size?")]},
            DONE,
        ]
    }
    run = bridge.call(
        "run", {"cwd": str(daemon.home), "command": agent("q_ask.py", json.dumps(script))}
    )
    run_id = run["run_id"]
    wait_pending(daemon, run_id, "q1")
    with pytest.raises(RpcFailed) as refused:
        bridge.call("answer", {"run_id": run_id, "answers": {"token": [secret], "bogus": ["x"]}})
    assert (refused.value.code, refused.value.orca_code) == (-32000, "bad_request")
    assert "bogus" in refused.value.error["message"]
    answered = bridge.call("answer", {"run_id": run_id, "text": secret})
    assert answered["request_id"] == "q1"

    wait_pending(daemon, run_id, "q2")
    answers = {"colour": ["blue"], "size": ["large"]}
    bridge.call("answer", {"run_id": run_id, "answers": answers})
    assert daemon.wait_for_run(run_id).status == "completed"

    received = [e for e in of_type(daemon, run_id, "output_appended") if "received" in e["text"]]
    digest = "sha256:" + hashlib.sha256(secret.encode()).hexdigest()
    assert digest in received[0]["text"]  # the agent got the secret itself
    recorded = of_type(daemon, run_id, "question_answered")
    assert [e["answered_by"] for e in recorded] == [who("orca-bridge")] * 2
    assert recorded[0]["redacted_ids"] == ["token"]
    head = hello_of(daemon).head_position
    bridge.wait_for_position(head)
    assert bridge.finish() == 0
    daemon.stop()

    needle = secret.encode()
    for path in [*orca_home.rglob("*"), daemon.stderr_path, bridge.stderr_path]:
        if path.is_file():
            assert needle not in path.read_bytes(), path
    assert secret not in json.dumps(bridge.events())


# --------------------------------------------------------------------------- errors


def test_errors_are_json_rpc_errors_and_the_bridge_goes_on(
    daemon: DaemonProcess, bridge_for: Callable[..., BridgeProcess]
) -> None:
    bridge = bridge_for(daemon.env)

    def error_for(data: bytes) -> dict[str, Any]:
        before = len(bridge.responses())
        bridge.write(data + b"\n")
        return bridge.wait_for("an error", lambda _: bridge.responses()[before:])[0]

    def expect(data: bytes, code: int, call_id: Any = None) -> dict[str, Any]:
        response = error_for(data)
        assert response["jsonrpc"] == "2.0"
        assert (response["id"], response["error"]["code"]) == (call_id, code), response
        return dict(response["error"])

    expect(b"{not json", -32700)
    expect(b"\xff\xfe", -32700)
    assert "batch" in expect(b'[{"jsonrpc":"2.0","id":1,"method":"hello"}]', -32600)["message"]
    expect(b"42", -32600)
    expect(b'{"id": 7, "method": "hello"}', -32600, 7)
    expect(b'{"jsonrpc": "2.0", "id": 8, "method": 5}', -32600, 8)
    expect(b'{"jsonrpc": "2.0", "id": {"x": 1}, "method": "hello"}', -32600)
    unknown = expect(b'{"jsonrpc": "2.0", "id": "u", "method": "launch"}', -32601, "u")
    assert "launch" in unknown["message"] and "subscribe" in unknown["message"]
    bad = expect(b'{"jsonrpc":"2.0","id":9,"method":"cancel","params":{"run_id":3}}', -32602, 9)
    assert "params.run_id" in bad["message"] and bad["data"]["orca_code"] == "bad_request"
    missing = expect(b'{"jsonrpc":"2.0","id":10,"method":"answer","params":{}}', -32602, 10)
    assert "run_id" in missing["message"]
    extra = expect(b'{"jsonrpc":"2.0","id":11,"method":"hello","params":{"x":1}}', -32602, 11)
    assert "`x`" in extra["message"]
    expect(b'{"jsonrpc":"2.0","id":12,"method":"hello","params":[1]}', -32602, 12)

    with pytest.raises(RpcFailed) as not_found:
        bridge.call("status", {"run_id": "ffffffffffff"})
    assert (not_found.value.code, not_found.value.orca_code) == (-32000, "not_found")
    assert "ffffffffffff" in not_found.value.error["message"]

    long_line = b'{"jsonrpc":"2.0","id":13,"method":"hello","params":{"p":"' + b"x" * (2 << 20)
    too_long = expect(long_line + b'"}}', -32600)
    assert "1 MiB" in too_long["message"]

    # A notification is carried out, never answered, even when it fails.
    bridge.send({"jsonrpc": "2.0", "method": "launch"})
    bridge.send({"jsonrpc": "2.0", "method": "hello"})
    before = len(bridge.responses())
    assert bridge.call("hello")["protocol"] == 1
    assert len(bridge.responses()) == before + 1
    assert all("id" in m or "method" in m for m in bridge.lines)
    assert bridge.finish() == 0
    assert bridge.daemon_notices() == []


def test_without_orcad_requests_get_daemon_unavailable_and_the_editor_is_told_once(
    make_daemon: Callable[..., DaemonProcess], bridge_for: Callable[..., BridgeProcess]
) -> None:
    daemon = make_daemon()  # not started
    bridge = bridge_for(daemon.env)
    with pytest.raises(RpcFailed) as unavailable:
        bridge.call("hello")
    assert (unavailable.value.code, unavailable.value.orca_code) == (-32001, "daemon_unavailable")
    assert "orca daemon start" in unavailable.value.error["message"]
    with pytest.raises(RpcFailed) as again:
        bridge.call("subscribe", {})
    assert again.value.code == -32001
    notices = bridge.wait_for("the notice", lambda _: bridge.daemon_notices())
    assert notices[0]["state"] == "unavailable"
    assert "orca daemon start" in notices[0]["message"]

    daemon.start()
    instance = hello_of(daemon).instance
    bridge.wait_for("orcad's arrival", lambda _: len(bridge.daemon_notices()) == 2)
    assert bridge.daemon_notices() == [
        notices[0],
        {"state": "available", "instance": instance, "restarted": False},
    ]
    assert bridge.call("hello")["instance"] == instance
    assert bridge.finish() == 0


def test_a_bridge_without_orcad_exits_when_stdin_closes_even_with_a_request_in_flight(
    make_daemon: Callable[..., DaemonProcess],
) -> None:
    """An editor that quits while orcad is down: stdin closes as the keeper learns orcad is
    away (a race that left one bridge in five running forever). Twenty tries, each must end."""
    daemon = make_daemon()  # not started
    line = b'{"jsonrpc":"2.0","id":1,"method":"hello"}\n'
    command = [sys.executable, "-m", "orca_client.cli", "bridge", "--stdio"]
    for _ in range(20):
        done = subprocess.run(command, input=line, env=daemon.env, capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr
        [reply] = [m for m in map(json.loads, done.stdout.splitlines()) if m.get("id") == 1]
        assert reply["error"]["code"] == -32001


def test_start_starts_orcad_and_shutdown_stops_it(
    make_daemon: Callable[..., DaemonProcess], bridge_for: Callable[..., BridgeProcess]
) -> None:
    daemon = make_daemon()  # for its home and environment: the bridge starts orcad
    bridge = bridge_for(daemon.env, "--start")
    hello = bridge.call("hello")
    assert process_exists(hello["pid"])
    assert "orcad started" in bridge.stderr()
    assert daemon.paths.daemon_log_file.exists()
    assert bridge.call("shutdown", {}) == {}
    wait_until(lambda: not process_exists(hello["pid"]), "orcad to stop", timeout=30)
    with pytest.raises(RpcFailed) as gone:
        bridge.call("status")
    assert gone.value.code == -32001
    assert bridge.finish() == 0


def test_an_orcad_the_bridge_started_is_reaped_when_it_stops(
    make_daemon: Callable[..., DaemonProcess], bridge_for: Callable[..., BridgeProcess]
) -> None:
    """orcad started by `--start` is the bridge's child: stopped with `orca daemon stop` while
    the editor keeps the bridge open, it must not linger as a zombie (the stop would wait for
    it in vain and fail)."""
    daemon = make_daemon()
    bridge = bridge_for(daemon.env, "--start")
    pid = bridge.call("hello")["pid"]
    stopped = run_orca(daemon.env, "daemon", "stop", timeout=90)
    assert stopped.returncode == 0, stopped.stderr
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), "orcad to be reaped", timeout=10)
    assert bridge.finish() == 0


# --------------------------------------------------------------------------- lines, without I/O


def test_lines_of_up_to_the_limit_pass_and_longer_ones_are_dropped_whatever_the_chunks() -> None:
    limit = 8
    text = b"12345678\n123456789\n\nab" + b"x" * 20 + b"\nlast"
    expected = [b"12345678", Marker.TOO_LONG, b"", Marker.TOO_LONG, b"last"]
    for size in (1, 3, 8, 9, len(text)):
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        assert list(split_lines(chunks, limit)) == expected, size
    assert list(split_lines([b"x" * 9], limit)) == [Marker.TOO_LONG]  # no newline, still too long
