"""`orca mcp` driven by the MCP SDK's own client, as Codex or Claude Code would drive it.

Each test spawns the real `orca mcp` as a subprocess (`mcp.client.stdio.stdio_client`), talks
MCP to it through `ClientSession`, and the server talks to a real orcad whose agents are the
example command agents (examples/agents/) and tests/agents/q_ask.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import EXAMPLES, REPO, DaemonProcess, events_of, output_of, wait_until
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent
from support.example_agents import write_agent_config

from orca_client.cli.mcp import find_login_runtime_dir
from orca_client.mcp_calls import MAX_WAIT_SECONDS
from orca_client.paths import resolve_paths

TOOLS = {
    "orca_run",
    "orca_debug",
    "orca_plan",
    "orca_status",
    "orca_wait",
    "orca_logs",
    "orca_answer",
    "orca_cancel",
}


@pytest.fixture
def daemon(make_daemon: Callable[..., DaemonProcess], orca_home: Path) -> DaemonProcess:
    write_agent_config(orca_home)
    return make_daemon().start()


@asynccontextmanager
async def mcp_session(env: dict[str, str]) -> AsyncIterator[ClientSession]:
    """`orca mcp` as a subprocess (the real CLI), initialized by the SDK's client."""
    server = StdioServerParameters(
        command=sys.executable, args=["-m", "orca_client.cli", "mcp"], env=env, cwd=str(REPO)
    )
    async with (
        stdio_client(server) as (read, write),
        ClientSession(read, write, read_timeout_seconds=MAX_WAIT_SECONDS + 20) as session,
    ):
        await session.initialize()
        yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """A tool call that must succeed; its structured result (also given as JSON text)."""
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, f"{tool} failed: {text_of(result)}"
    assert result.structured_content is not None
    assert json.loads(text_of(result)) == result.structured_content
    return result.structured_content


async def refused(session: ClientSession, tool: str, **arguments: Any) -> str:
    """A tool call that must fail as a tool error (not a protocol error); its message."""
    result = await session.call_tool(tool, arguments)
    assert result.is_error, f"{tool} succeeded: {result.structured_content}"
    return text_of(result)


def text_of(result: CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, TextContent))


async def wait_until_terminal(
    session: ClientSession, run_id: str, after: int | None = None
) -> dict[str, Any]:
    """orca_wait again and again, as a model is told to, until the run has ended."""
    for _ in range(10):
        arguments: dict[str, Any] = {"run_id": run_id, "timeout_seconds": 20}
        if after is not None:
            arguments["after"] = after
        waited = await call(session, "orca_wait", **arguments)
        if waited["terminal"]:
            assert waited["run"]["terminal"] is True
            return waited
        assert f"call orca_wait again with after={waited['position']}" in waited["next"]
        after = waited["position"]
    raise AssertionError(f"run {run_id} did not end: {waited}")


# --------------------------------------------------------------------------- the tools


async def test_the_server_lists_its_tools_with_descriptions_and_schemas(
    daemon: DaemonProcess,
) -> None:
    async with mcp_session(daemon.env) as session:
        assert session.initialize_result is not None
        assert session.initialize_result.server_info.name == "orca"
        assert "orca_wait" in (session.initialize_result.instructions or "")
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and len(tool.description) > 80, tool.name
        assert "  " not in tool.description and "\n" not in tool.description
        for name, field in tool.input_schema["properties"].items():
            assert field.get("description"), f"{tool.name}.{name} has no description"
    wait = tools["orca_wait"].input_schema
    assert wait["required"] == ["run_id"]
    assert wait["properties"]["timeout_seconds"]["maximum"] == MAX_WAIT_SECONDS
    debug = tools["orca_debug"].input_schema
    assert set(debug["required"]) == {"prompt", "agents"}
    assert debug["properties"]["agents"]["minItems"] == 1
    assert "ctx" not in tools["orca_answer"].input_schema["properties"]
    assert tools["orca_status"].annotations is not None
    assert tools["orca_status"].annotations.read_only_hint is True
    assert tools["orca_cancel"].annotations is not None
    assert tools["orca_cancel"].annotations.destructive_hint is True


async def test_a_fan_out_is_started_waited_for_answered_and_its_synthesis_read(
    daemon: DaemonProcess,
) -> None:
    """What issue 13 asks to be shown: an MCP client starts a fan-out, waits for it, and reads
    the synthesis. One worker asks a question on the way, which the client answers."""
    async with mcp_session(daemon.env) as session:
        started = await call(
            session,
            "orca_debug",
            prompt="why does the parser test fail on python3.13?",
            agents=["investigator", "tester", "asker"],
            cwd=str(EXAMPLES),
            title="parser hunt",
        )
        run_id = started["run_id"]
        assert len(started["session_ids"]) == 3
        assert "orca_wait" in started["next"]

        waited = await call(session, "orca_wait", run_id=run_id)
        assert waited["terminal"] is False  # it returned early, for the question
        [pending] = waited["run"]["pending"]
        [question] = pending["questions"]
        assert question["id"] == "runtime"
        assert [option["label"] for option in question["options"]] == ["python3.11", "python3.13"]
        assert "secret" not in question
        answered = await call(session, "orca_answer", run_id=run_id, text="python3.11")
        assert answered["request_id"] == pending["request_id"]

        ended = await wait_until_terminal(session, run_id, waited["position"])
        run = ended["run"]
        assert run["status"] == "completed"
        assert run["kind"] == "fanout"
        synthesis = await anyio.Path(run["task_file"]).read_text()
        assert run["synthesis"] == synthesis
        assert synthesis.startswith("# Synthesis of 3 agents")
        assert "1 test failed: test_parse" in synthesis
        assert "targeting python3.11" in synthesis
        roles = sorted(session_view["role"] for session_view in run["sessions"])
        assert roles == ["orchestrator", "worker", "worker", "worker"]

        status = await call(session, "orca_status", run_id=run_id[:8])
        assert status["run"]["synthesis"] == synthesis
        listed = await call(session, "orca_status")
        assert [r["run_id"] for r in listed["runs"]] == [run_id]

        whole = await call(session, "orca_logs", run_id=run_id, max_chars=100_000)
        assert whole["more"] is False
        text = "".join(chunk["text"] for chunk in whole["chunks"])
        assert text == output_of(daemon, run_id, "stdout")
        assert "targeting python3.11" in text
        assert {chunk["session_id"] for chunk in whole["chunks"]} >= set(started["session_ids"])

        pieces, after = [], 0
        for _ in range(100):
            page = await call(session, "orca_logs", run_id=run_id, after=after, max_chars=60)
            pieces += [chunk["text"] for chunk in page["chunks"]]
            after = page["next_after"]
            if not page["more"]:
                break
        assert len(pieces) > 3
        assert "".join(pieces) == text
        tail = await call(session, "orca_logs", run_id=run_id, max_chars=100, tail=True)
        assert "".join(chunk["text"] for chunk in tail["chunks"]) == text[-100:]
        assert tail["earlier_output_left_out"] is True
        everything = await call(session, "orca_logs", run_id=run_id, max_chars=10_000, tail=True)
        assert everything["chunks"] == whole["chunks"]
        assert everything["earlier_output_left_out"] is False

    [answer] = [e for e in events_of(daemon, run_id) if e["type"] == "question_answered"]
    assert answer["answered_by"].startswith("orca-mcp:")
    assert answer["answered_by"].endswith("via mcp")  # the SDK client's default name


async def test_a_secret_question_is_refused_and_left_to_a_person(daemon: DaemonProcess) -> None:
    async with mcp_session(daemon.env) as session:
        run_id = (await call(session, "orca_run", agent="secret", prompt="deploy it"))["run_id"]
        waited = await call(session, "orca_wait", run_id=run_id)
        [question] = waited["run"]["pending"][0]["questions"]
        assert question["secret"] is True
        assert f"orca answer {run_id}" in question["answered_by"]

        message = await refused(session, "orca_answer", run_id=run_id, text="hunter2")
        assert "secret" in message and "only a person" in message
        assert f"orca answer {run_id}" in message
        assert "hunter2" not in message
        again = await call(session, "orca_wait", run_id=run_id, timeout_seconds=40)
        assert again["waited_seconds"] < 40  # without after, a pending question is news
        still = await call(
            session, "orca_wait", run_id=run_id, timeout_seconds=1, after=waited["position"]
        )
        assert still["run"]["status"] == "waiting_for_answer"  # nobody answered meanwhile:
        assert still["waited_seconds"] >= 1  # it waited the whole timeout
        assert still["run"]["pending"] == waited["run"]["pending"]

        person = daemon.orca("answer", run_id, "s3cret-token")  # a person, with the CLI
        assert person.returncode == 0, person.stderr
        ended = await wait_until_terminal(session, run_id, still["position"])
        assert ended["run"]["status"] == "completed"
    log = json.dumps(events_of(daemon, run_id))
    assert "hunter2" not in log and "s3cret-token" not in log


async def test_a_run_is_cancelled_and_errors_are_tool_errors(daemon: DaemonProcess) -> None:
    async with mcp_session(daemon.env) as session:
        started = await call(session, "orca_run", agent="long", prompt="count", title="counter")
        run_id = started["run_id"]
        waited = await call(session, "orca_wait", run_id=run_id, timeout_seconds=0.5)
        assert waited["terminal"] is False
        assert waited["run"]["status"] == "running"

        cancelled = await call(session, "orca_cancel", run_id=run_id, reason="enough")
        assert cancelled["already_ended"] is False
        ended = await call(session, "orca_wait", run_id=run_id)
        assert ended["terminal"] is True
        assert ended["run"]["status"] == "cancelled"
        again = await call(session, "orca_cancel", run_id=run_id)
        assert again["already_ended"] is True

        missing = await refused(session, "orca_status", run_id="nosuchrun")
        assert "orcad refused: not_found: no run with id" in missing
        assert "nosuchrun" in missing
        unknown_agent = await refused(session, "orca_run", agent="nobody", prompt="x")
        assert "orcad refused: bad_request:" in unknown_agent
        assert "nobody" in unknown_agent
        relative = await refused(session, "orca_run", agent="long", prompt="x", cwd="src")
        assert "absolute" in relative
        cyclic = await refused(
            session,
            "orca_plan",
            plan={
                "title": "loop",
                "tasks": [
                    {"id": "a", "prompt": "a", "depends_on": ["b"]},
                    {"id": "b", "prompt": "b", "depends_on": ["a"]},
                ],
            },
            agent="investigator",
        )
        assert "cycle" in cyclic
        not_waiting = await refused(session, "orca_answer", run_id=run_id, text="yes")
        assert "no pending question" in not_waiting
        too_long = await session.call_tool(
            "orca_wait", {"run_id": run_id, "timeout_seconds": MAX_WAIT_SECONDS + 1}
        )
        assert too_long.is_error
        assert run_id in json.dumps(await call(session, "orca_status"))  # still serving


async def test_a_wait_goes_on_across_an_orcad_restart(
    make_daemon: Callable[..., DaemonProcess], daemon: DaemonProcess
) -> None:
    """orca_wait follows the run's events: orcad stopping and coming back in the middle of a
    call (its sessions run on in their holders) loses nothing; the call returns at the end."""
    async with mcp_session(daemon.env) as session:
        run_id = (await call(session, "orca_run", agent="gated", prompt="go"))["run_id"]
        first = await call(session, "orca_wait", run_id=run_id, timeout_seconds=0.5)
        assert first["run"]["status"] == "running"
        waited: dict[str, Any] = {}

        def following() -> bool:
            with daemon.client() as client:
                return client.hello().subscriptions > 0

        async def wait() -> None:
            waited.update(await call(session, "orca_wait", run_id=run_id, timeout_seconds=40))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait)
            await anyio.to_thread.run_sync(wait_until, following, "orca_wait to subscribe")
            await anyio.to_thread.run_sync(daemon.stop)
            await anyio.to_thread.run_sync(make_daemon().start)
            await anyio.Path(daemon.home / "go").touch()
        assert waited["terminal"] is True
        assert waited["run"]["status"] == "completed"
        assert waited["run"]["sessions"][0]["summary"] == "went"


async def test_a_plan_runs_to_its_end(daemon: DaemonProcess) -> None:
    plan = json.loads((REPO / "examples" / "plans" / "demo.json").read_text())
    async with mcp_session(daemon.env) as session:
        run_id = (
            await call(session, "orca_plan", plan=plan, cwd=str(EXAMPLES), agent="investigator")
        )["run_id"]
        answered, after = 0, {}
        for _ in range(10):
            waited = await call(session, "orca_wait", run_id=run_id, timeout_seconds=20, **after)
            if waited["terminal"]:
                break
            if "pending" in waited["run"]:
                await call(session, "orca_answer", run_id=run_id, text="python3.13")
                answered += 1
            after = {"after": waited["position"]}
        assert answered == 1
        assert waited["run"]["status"] == "completed"
        assert {task["status"] for task in waited["run"]["tasks"]} == {"done"}


async def test_with_orcad_down_each_call_says_how_to_start_it(orca_home: Path) -> None:
    env = DaemonProcess(orca_home).env
    async with mcp_session(env) as session:
        assert len((await session.list_tools()).tools) == len(TOOLS)
        for tool, arguments in [
            ("orca_status", {}),
            ("orca_run", {"agent": "codex", "prompt": "hi"}),
            ("orca_wait", {"run_id": "abcd"}),
        ]:
            message = await refused(session, tool, **arguments)
            assert "orcad is not running" in message
            assert "orca daemon start" in message


# --------------------------------------------------------------------------- the command


def test_without_the_sdk_orca_mcp_says_how_to_install_it() -> None:
    code = (
        "import sys; sys.modules['mcp'] = None; "
        "from orca_client.cli import main; sys.exit(main(['mcp']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.returncode == 2
    assert "pip install 'orca[mcp]'" in done.stderr
    assert done.stdout == ""


def test_other_commands_do_not_import_the_sdk(orca_home: Path) -> None:
    code = (
        "import sys; from orca_client.cli import main; "
        "codes = [main(['status']), main(['debug', '--agents', 'a', 'x'])]; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('mcp', 'pydantic')); "
        "print(codes, loaded)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=DaemonProcess(orca_home).env,
        timeout=60,
    )
    assert done.stdout.strip() == "[3, 3] []", done.stderr


def test_orca_mcp_finds_orcad_in_the_login_runtime_dir_the_client_did_not_pass(
    tmp_path: Path,
) -> None:
    """Codex starts MCP servers without XDG_RUNTIME_DIR; orcad's socket is still found there."""
    login = tmp_path / "run-user"
    (login / "orca").mkdir(parents=True)
    bare = {"HOME": str(tmp_path), "PATH": "/usr/bin"}
    find_login_runtime_dir(bare, login)
    assert "XDG_RUNTIME_DIR" not in bare  # no socket there: nothing changes
    (login / "orca" / "orcad.sock").touch()
    for given in ({"ORCA_HOME": "/elsewhere"}, {"XDG_RUNTIME_DIR": "/run/other"}):
        env = {**bare, **given}
        find_login_runtime_dir(env, login)
        assert env == {**bare, **given}
    find_login_runtime_dir(bare, login)
    assert bare["XDG_RUNTIME_DIR"] == str(login)
    assert resolve_paths(bare).socket_file == login / "orca" / "orcad.sock"
