"""Runs of tests/agents/q_ask.py, the command agent that asks what a test tells it to, and what
a test waits for and reads back from them."""

from __future__ import annotations

import json
from typing import Any

from conftest import DaemonProcess, agent, events_of, wait_until

from orca_client.views import PendingQuestion
from orca_client.wire import RunStarted, StartRun


def start(daemon: DaemonProcess, script: dict[str, Any], **kwargs: Any) -> str:
    """Start a run of q_ask.py with `script`; returns the run id."""
    cwd = str(kwargs.pop("cwd", daemon.home))
    request = StartRun(command=agent("q_ask.py", json.dumps(script)), cwd=cwd, **kwargs)
    with daemon.client() as client:
        started: RunStarted = client.request(request)
    return started.run_id


def of_type(daemon: DaemonProcess, run_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in events_of(daemon, run_id) if e["type"] == kind]


def pending_of(daemon: DaemonProcess, run_id: str) -> PendingQuestion | None:
    sessions = daemon.status(run_id).sessions
    found = [s.pending for s in sessions if s.pending is not None]
    return found[0] if found else None


def wait_pending(daemon: DaemonProcess, run_id: str, request_id: str = "") -> PendingQuestion:
    """Wait until the run waits for an answer to a request (a given one, if named)."""

    def ready() -> bool:
        pending = pending_of(daemon, run_id)
        return (
            pending is not None
            and (not request_id or pending.request_id == request_id)
            and daemon.status(run_id).runs[0].status == "waiting_for_answer"
        )

    wait_until(ready, what=f"run {run_id} waiting for {request_id or 'an answer'}")
    pending = pending_of(daemon, run_id)
    assert pending is not None
    return pending


def q(qid: str, text: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": qid, "question": f"question {qid}?" if text is None else text, **extra}


DONE: dict[str, Any] = {"result": {"outcome": "done", "summary": "finished"}}
