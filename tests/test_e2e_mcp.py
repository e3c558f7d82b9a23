"""The pinned real Codex hands work to Orca through `orca mcp`, registered as the README says.

`codex exec` runs against the loopback fake of the model API (tests/support/fake_responses_api),
whose scripted model calls Orca's tools; the tools reach a real orcad running the example agents.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, REPO, DaemonProcess
from support.example_agents import write_agent_config
from support.fake_responses_api import (
    FakeResponsesAPI,
    Turn,
    message,
    real_codex,
    shell,
    tool_call,
    write_codex_home,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def codex_home() -> Iterator[Path]:
    home = REPO / ".cache" / "e2e" / f"codex-mcp-{uuid.uuid4().hex[:12]}"  # not under /tmp
    yield home
    shutil.rmtree(home, ignore_errors=True)


def orca_server(orca_home: Path) -> str:
    """`[mcp_servers.orca]` as `codex mcp add orca --env ORCA_HOME=... -- orca mcp` writes it,
    with this checkout's `orca` (python -m orca_client.cli, from the repository), and the
    approval setting the README gives for `codex exec` (which cannot ask before a call)."""
    return (
        "[mcp_servers.orca]\n"
        f"command = {json.dumps(sys.executable)}\n"
        'args = ["-m", "orca_client.cli", "mcp"]\n'
        f"cwd = {json.dumps(str(REPO))}\n"
        'default_tools_approval_mode = "approve"\n'
        "[mcp_servers.orca.env]\n"
        f"ORCA_HOME = {json.dumps(str(orca_home))}\n"
    )


def orca_tool(name: str, call_id: str, **arguments: Any) -> Turn:
    """The model calls one of Orca's tools (Codex puts an MCP server's tools in a namespace)."""
    return tool_call(name, arguments, call_id, namespace="mcp__orca")


MCP_START_TURNS = 20
"""How many model requests may come before Codex offers Orca's tools (it starts MCP servers
while its first turn goes on: a tool the model calls before then is an "unsupported call")."""


def once_orca_is_offered(api: FakeResponsesAPI, turns: list[Callable[[], Turn]]) -> list[Any]:
    """The model's turns, for `api.script`: until a request of Codex's offers Orca's tools the
    model waits a moment (a shell `sleep`, so that the next request comes after Codex has had
    time to start `orca mcp`), then `turns` in order. Slots left over are never asked for."""
    left = list(turns)

    def next_turn() -> Turn:
        offered = "orca_debug" in json.dumps(api.requests[-1].get("tools", []))
        if len(left) == len(turns) and not offered:
            return shell("sleep 0.5", call_id=f"call_sleep_{len(api.requests)}")
        return left.pop(0)()

    return [next_turn] * (MCP_START_TURNS + len(turns))


def tool_result(api: FakeResponsesAPI, call_id: str) -> dict[str, Any]:
    """What an Orca tool returned, as Codex handed it to the model (after its wall time)."""
    output = api.tool_output(call_id)
    assert output is not None, f"Codex sent no output for {call_id}"
    return dict(json.loads(output[output.index("{") :]))


def test_codex_starts_a_fan_out_through_orca_mcp_and_reads_the_synthesis(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, codex_home: Path
) -> None:
    write_agent_config(orca_home)
    daemon = make_daemon().start()
    with FakeResponsesAPI() as api:
        env = {**os.environ, **write_codex_home(codex_home, api, extra=orca_server(orca_home))}
        env.pop("ORCA_HOME", None)
        debug = orca_tool(
            "orca_debug",
            "call_debug",
            prompt="why does the parser test fail?",
            agents=["investigator", "tester"],
            cwd=str(EXAMPLES),
        )
        api.script(
            *once_orca_is_offered(
                api,
                [
                    lambda: debug,
                    lambda: orca_tool(
                        "orca_wait", "call_wait", run_id=tool_result(api, "call_debug")["run_id"]
                    ),
                    lambda: message("The fan-out is done."),
                ],
            )
        )
        done = subprocess.run(
            [str(real_codex()), "exec", "--skip-git-repo-check", "-C", str(EXAMPLES), "debug it"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        assert "mcp: orca/orca_wait (completed)" in done.stderr
        assert api.unscripted == 0
        waited = tool_result(api, "call_wait")
    run_id = tool_result(api, "call_debug")["run_id"]
    assert waited["terminal"] is True
    assert waited["run"]["status"] == "completed"
    assert waited["run"]["synthesis"].startswith("# Synthesis of 2 agents")
    assert "1 test failed: test_parse" in waited["run"]["synthesis"]
    assert daemon.status(run_id).runs[0].status == "completed"
