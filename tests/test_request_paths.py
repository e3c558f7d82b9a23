"""Paths and other text a request carries to the OS (working directories, agent binaries, the
search path, a fan-out's task file, repository names, prompts) are checked before anything is
done: a NUL byte, a relative binary or an impossible length is a `bad_request` that names the
field, sent over the real socket; orcad records nothing and goes on serving."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import DaemonProcess, as_an_ordinary_user

from orca_client.client import RequestFailed
from orca_client.plan import Plan, PlanTask
from orca_client.wire import Request, StartDebug, StartPlan, StartRun

TOO_LONG = "/tmp/" + "x" * 300
"""A path with a component longer than any file name may be (255 bytes)."""


def agent_run(home: str, **fields: Any) -> StartRun:
    return StartRun(**{"cwd": home, "agent": "codex", "prompt": "hi", **fields})


def fan_out(home: str, **fields: Any) -> StartDebug:
    return StartDebug(**{"cwd": home, "agents": ["synthesizer"], "prompt": "hi", **fields})


def plan_run(home: str, prompt: str = "hi", verify: tuple[str, ...] = ()) -> StartPlan:
    task = PlanTask(id="a", prompt=prompt, verify=list(verify))
    return StartPlan(cwd=home, plan=Plan(title="p", tasks=[task]), agent="synthesizer")


CASES: list[tuple[str, Any, str]] = [
    ("codex_path with NUL", lambda h: agent_run(h, codex_path="/usr/bin/co\0dex"), "codex_path"),
    ("claude_path with NUL", lambda h: agent_run(h, agent="claude", claude_path="/b\0"), "claude"),
    ("relative codex_path", lambda h: agent_run(h, codex_path="bin/codex"), "codex_path"),
    ("search_path with NUL", lambda h: agent_run(h, search_path="/usr/bin:/b\0in"), "search_path"),
    ("cwd with NUL", lambda h: StartRun(cwd=h + "/\0x", command=["true"]), "cwd"),
    ("cwd too long", lambda h: StartRun(cwd=TOO_LONG, command=["true"]), "cwd"),
    ("prompt with NUL", lambda h: StartRun(cwd=h, command=["true"], prompt="a\0b"), "prompt"),
    ("repository with NUL", lambda h: StartRun(cwd=h, command=["true"], repos=["w\0b"]), "repos"),
    ("task_file with NUL", lambda h: fan_out(h, task_file="/tmp/syn\0thesis.md"), "task_file"),
    ("task_file too long", lambda h: fan_out(h, task_file=TOO_LONG), "task_file"),
    ("fan-out cwd with NUL", lambda h: fan_out(h, cwd=h + "\0"), "cwd"),
    ("plan cwd too long", lambda h: msgspec.structs.replace(plan_run(h), cwd=TOO_LONG), "cwd"),
    ("plan prompt with NUL", lambda h: plan_run(h, prompt="do\0it"), "NUL"),
    ("verify with NUL", lambda h: plan_run(h, verify=("true\0",)), "NUL"),
]


@pytest.mark.parametrize(("build", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_path_or_text_is_refused_naming_the_field(
    daemon: DaemonProcess, build: Any, field: str
) -> None:
    request: Request = build(str(daemon.home))
    with daemon.client() as client:
        before = client.hello().head_position
        with pytest.raises(RequestFailed) as refused:
            client.request(request)
        assert refused.value.code == "bad_request", refused.value
        assert field in str(refused.value)
        assert client.hello().head_position == before  # nothing recorded
    assert daemon.process is not None and daemon.process.poll() is None
    assert "Traceback" not in daemon.output()


def test_a_cwd_under_a_directory_orcad_may_not_enter_is_a_bad_request(
    make_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    """orcad without the root capabilities that ignore file modes, as an ordinary user runs it."""
    locked = tmp_path / "locked"
    (locked / "work").mkdir(parents=True)
    locked.chmod(0o000)
    daemon = make_daemon()
    daemon.start(preexec_fn=as_an_ordinary_user)
    try:
        for request in (
            StartRun(cwd=str(locked / "work"), command=["true"]),
            fan_out(str(locked / "work")),
            plan_run(str(locked / "work")),
        ):
            with daemon.client() as client, pytest.raises(RequestFailed) as refused:
                client.request(request)
            assert refused.value.code == "bad_request", refused.value
            assert "cannot be used: Permission denied" in str(refused.value)
        assert daemon.status().runs == []
    finally:
        locked.chmod(0o700)
