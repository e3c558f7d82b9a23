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
from orca_client.wire import RunStarted, StartRun

TOOLS = {
    "orca_run",
    "orca_debug",
    "orca_plan",
    "orca_status",
    "orca_wait",
    "orca_logs",
    "orca_answer",
    "orca_cancel",
    "orca_agents",
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
    assert "maximum" not in wait["properties"]["timeout_seconds"]  # longer waits are capped:
    assert "capped at 50" in wait["properties"]["timeout_seconds"]["description"]
    status = tools["orca_status"].description or ""
    assert "how to answer each (answer_with)" in status
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
        [pending] = waited["run"]["pending"]
        [question] = pending["questions"]
        assert question["secret"] is True
        assert pending["answer_with"].startswith("a person only")
        assert f"`orca answer {run_id}`" in pending["answer_with"]
        shown = await call(session, "orca_status", run_id=run_id)
        assert shown["run"]["pending"] == [pending]

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
        assert ended["run"]["sessions"][0]["summary"] == "deployed"
        assert ended["next"].startswith(
            "the run has ended completed (the agent reported done): see run.sessions"
        )
        assert "run.result" not in ended["next"]  # a single run has none
    log = json.dumps(events_of(daemon, run_id))
    assert "hunter2" not in log and "s3cret-token" not in log


async def test_a_run_is_cancelled_and_errors_are_tool_errors(daemon: DaemonProcess) -> None:
    async with mcp_session(daemon.env) as session:
        started = await call(session, "orca_run", agent="long", prompt="count", title="counter")
        run_id = started["run_id"]
        for _ in range(40):  # queued until its agent has started (a busy machine: seconds)
            waited = await call(session, "orca_wait", run_id=run_id, timeout_seconds=0.5)
            if waited["run"]["status"] != "queued":
                break
        assert waited["terminal"] is False
        assert waited["run"]["status"] == "running"

        beyond = await call(session, "orca_logs", run_id=run_id, after=10**12)
        assert beyond["chunks"] == []
        assert beyond["next_after"] < 10**12  # the log's end: from there, new output comes
        for _ in range(200):
            newer = await call(session, "orca_logs", run_id=run_id, after=beyond["next_after"])
            if newer["chunks"]:
                break
            await anyio.sleep(0.05)
        assert newer["chunks"][0]["text"].startswith("step ")

        cancelled = await call(session, "orca_cancel", run_id=run_id, reason="enough")
        assert cancelled["already_ended"] is False
        assert cancelled["cancelled"] == run_id
        ended = await call(session, "orca_wait", run_id=run_id)
        assert ended["terminal"] is True
        assert ended["run"]["status"] == "cancelled"
        assert ended["next"].startswith("the run has ended cancelled (enough): see run.sessions")
        assert "run.result" not in ended["next"]
        again = await call(session, "orca_cancel", run_id=run_id)
        assert again["already_ended"] is True
        assert again["cancelled"] is None
        assert again["message"] == (
            f"nothing was cancelled: run {run_id} had already ended (the run is cancelled)"
        )
        capped = await call(session, "orca_wait", run_id=run_id, timeout_seconds=60)
        assert capped["terminal"] is True  # 60 s is waited as 50 s, not refused

        missing = await refused(session, "orca_status", run_id="nosuchrun")
        assert "orcad refused: not_found: no run with id" in missing
        assert "nosuchrun" in missing
        assert "(orca_status lists the runs)" in missing and "orca status" not in missing
        unknown_agent = await refused(session, "orca_run", agent="nobody", prompt="x")
        assert "orcad refused: bad_request:" in unknown_agent
        assert "nobody" in unknown_agent
        assert "orca_agents lists the agents orcad has" in unknown_agent
        assert "kill -HUP" not in unknown_agent
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
        agentless = await refused(
            session, "orca_plan", plan={"title": "t", "tasks": [{"id": "a", "prompt": "a"}]}
        )
        assert "task a names no agent: give it one, or a default with the agent parameter" in (
            agentless
        )
        assert "--agent" not in agentless
        not_waiting = await refused(session, "orca_answer", run_id=run_id, text="yes")
        assert "no pending question" in not_waiting

        wrong_type = await refused(session, "orca_wait", run_id=5)
        assert wrong_type == "invalid arguments for orca_wait: run_id must be a string"
        wrong_answer = await refused(session, "orca_answer", run_id=run_id, answers={"q": 3})
        assert wrong_answer == (
            "invalid arguments for orca_answer: answers.q must be a string or a list"
        )
        nothing = await refused(session, "orca_debug", prompt="x", agents=[], cwd="/")
        assert nothing == "invalid arguments for orca_debug: agents must have at least 1 item"
        assert run_id in json.dumps(await call(session, "orca_status"))  # still serving


async def test_two_questions_at_once_are_answered_by_id(daemon: DaemonProcess) -> None:
    async with mcp_session(daemon.env) as session:
        run_id = (await call(session, "orca_run", agent="two_questions", prompt="ship"))["run_id"]
        waited = await call(session, "orca_wait", run_id=run_id)
        [pending] = waited["run"]["pending"]
        assert pending["answer_with"] == (
            f'orca_answer with run_id="{run_id}", answers={{"branch": <answer>, "push": <answer>}}'
        )
        listed = await call(session, "orca_status")
        [short] = [run for run in listed["runs"] if run["run_id"] == run_id]
        assert short["asks"] == ["Which branch?", "Push it?"]
        assert short["answer_with"] == [pending["answer_with"]]

        as_text = await refused(session, "orca_answer", run_id=run_id, text="main")
        assert "give answers as {question_id: answer}, one for each, instead of text" in as_text
        await call(session, "orca_answer", run_id=run_id, answers={"branch": "main", "push": "yes"})
        ended = await wait_until_terminal(session, run_id, waited["position"])
        assert ended["run"]["sessions"][0]["summary"] == "answered both"


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


async def test_sessions_waiting_with_the_same_request_id_are_answered_by_session(
    daemon: DaemonProcess,
) -> None:
    """Each session numbers its own requests: two workers of a fan-out both wait on q1, and
    orca_answer picks one by session_id (its whole id, or the part after the run id)."""
    async with mcp_session(daemon.env) as session:
        started = await call(
            session, "orca_debug", prompt="plan it", agents=["asker", "asker"], cwd=str(EXAMPLES)
        )
        run_id = started["run_id"]
        waited = await call(session, "orca_wait", run_id=run_id, timeout_seconds=20)
        for _ in range(10):
            if len(waited["run"]["pending"]) == 2:
                break
            after = waited["position"]
            waited = await call(
                session, "orca_wait", run_id=run_id, timeout_seconds=20, after=after
            )
        first, second = waited["run"]["pending"]
        assert first["request_id"] == second["request_id"] == "q1"
        assert [first["session_id"], second["session_id"]] == started["session_ids"]
        assert first["answer_with"] == (
            f'orca_answer with run_id="{run_id}", session_id="{first["session_id"]}", '
            "text=<an option's label or your own answer>"
        )
        listed = await call(session, "orca_status")
        assert listed["runs"][0]["answer_with"] == [first["answer_with"], second["answer_with"]]

        unpicked = await refused(
            session, "orca_answer", run_id=run_id, text="python3.11", request_id="q1"
        )
        assert f"several sessions of run {run_id} wait; give session_id, one of: " in unpicked
        assert f"{first['session_id']} (request q1: Which runtime" in unpicked
        by_number = first["session_id"].removeprefix(f"{run_id}.")
        one = await call(session, "orca_answer", run_id=run_id, session_id=by_number, text="3.11")
        assert one["session_id"] == first["session_id"]
        other = await call(
            session, "orca_answer", run_id=run_id, session_id=second["session_id"], text="3.13"
        )
        assert other["session_id"] == second["session_id"]
        ended = await wait_until_terminal(session, run_id, waited["position"])
    summaries = [s.get("summary") for s in ended["run"]["sessions"] if s["role"] == "worker"]
    assert summaries == ["planned for 3.11", "planned for 3.13"]


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
async def test_a_parent_run_is_waited_for_and_answered_through_its_child_runs(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path, mode: str
) -> None:
    """A parent run (one child run per repository) asks nothing itself: orca_wait on it returns
    when a child run asks, naming the child run to answer, and orca_answer on the parent says
    which child run to answer instead. In sequence, the second child run is created (and asks)
    only once the first has ended: the wait follows child runs created meanwhile too."""
    repos = ""
    for name in ("ra", "rb"):
        (tmp_path / name).mkdir()
        repos += f'[[repos]]\nname = "{name}"\npath = {json.dumps(str(tmp_path / name))}\n'
    write_agent_config(orca_home, more=repos)
    daemon = make_daemon().start()
    request = StartRun(
        cwd=str(EXAMPLES),
        agent="asker",
        prompt="fix it",
        repos=["ra", "rb"],
        orchestration_mode=mode,
    )
    with daemon.client() as client:
        started: RunStarted = client.request(request)
    parent = started.run_id
    children = [f"{parent}-1", f"{parent}-2"]
    async with mcp_session(daemon.env) as session:
        waited = await call(session, "orca_wait", run_id=parent, timeout_seconds=20)
        assert waited["terminal"] is False
        first = waited["run"]["pending"][0]
        assert first["run_id"] == children[0]
        assert first["questions"][0]["id"] == "runtime"
        assert first["answer_with"] == (
            f'orca_answer with run_id="{children[0]}", text=<an option\'s label or your own answer>'
        )
        refusal = await refused(session, "orca_answer", run_id=parent, text="python3.11")
        assert f"run {parent} waits on no question itself; its child runs do, {children[0]}" in (
            refusal
        )
        assert f'Call orca_answer with run_id="{children[0]}"' in refusal
        shown = await call(session, "orca_status", run_id=parent)
        assert shown["run"]["pending"][0] == first

        answered: list[str] = []
        for _ in range(10):
            for pending in waited["run"].get("pending", []):
                if pending["run_id"] not in answered:
                    await call(session, "orca_answer", run_id=pending["run_id"], text="python3.11")
                    answered.append(pending["run_id"])
            if waited["terminal"]:
                break
            waited = await call(
                session, "orca_wait", run_id=parent, timeout_seconds=20, after=waited["position"]
            )
        assert sorted(answered) == children
        run = waited["run"]
        assert run["status"] == "completed"
        assert [(c["run_id"], c["repo"], c["status"]) for c in run["child_runs"]] == [
            (children[0], "ra", "completed"),
            (children[1], "rb", "completed"),
        ]
        assert {c["sessions"][0]["summary"] for c in run["child_runs"]} == {
            "planned for python3.11"
        }
        assert "see run.child_runs, each child run's status" in waited["next"]
        assert "orca_logs with a child run's run_id" in waited["next"]


async def test_orca_agents_lists_the_agents_a_run_may_name(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    write_agent_config(
        orca_home, more='[agents.gone]\nadapter = "command"\ncommand = ["/nonexistent/agent"]\n'
    )
    daemon = make_daemon().start()
    async with mcp_session(daemon.env) as session:
        listed = await call(session, "orca_agents")
    by_name = {agent["name"]: agent for agent in listed["agents"]}
    assert {"codex", "codex-exec", "claude", "synthesizer", "investigator", "asker"} <= set(by_name)
    assert by_name["investigator"]["usable"] is True
    assert by_name["gone"]["usable"] is False
    assert "/nonexistent/agent" in by_name["gone"]["detail"]
    assert "orca_run" in listed["next"]


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


def test_the_help_lists_the_exit_statuses_orca_mcp_has() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "orca_client.cli", "mcp", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    statuses = done.stdout.partition("exit status:")[2]
    assert [line.split()[0] for line in statuses.strip().splitlines()] == ["0", "2"]
    assert 'codex mcp add orca -- "$(command -v orca)" mcp' in done.stdout


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
