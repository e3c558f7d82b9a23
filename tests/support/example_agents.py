"""The agents `orca mcp`'s tests run: the example command agents by name (as scripts/demo
configures them), an agent that asks a secret question, and one that waits for a go file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from conftest import EXAMPLES, agent

from support.homes import write_config

TWO_QUESTIONS_SCRIPT = {
    "steps": [
        {
            "ask": [
                {"id": "branch", "question": "Which branch?"},
                {
                    "id": "push",
                    "question": "Push it?",
                    "options": [{"label": "yes"}, {"label": "no"}],
                },
            ]
        },
        {"result": {"outcome": "done", "summary": "answered both"}},
    ]
}
SECRET_SCRIPT = {
    "steps": [
        {"ask": [{"id": "token", "question": "API token?", "header": "Token", "isSecret": True}]},
        {"result": {"outcome": "done", "summary": "deployed"}},
    ]
}


def gated_script(home: Path) -> dict[str, Any]:
    """Work that ends once the test creates the file `go` in the home."""
    return {
        "steps": [
            {"say": "waiting for go"},
            {"wait_file": str(home / "go")},
            {"result": {"outcome": "done", "summary": "went"}},
        ]
    }


def write_agent_config(home: Path, more: str = "") -> None:
    """config.toml for orcad on `home`: investigator, tester (fails), asker, reviewer, long
    (60 s), secret (asks for a token, secret), two_questions (asks two at once), gated (done
    once the file `home`/go exists); then `more` (other tables)."""
    agents = {
        "investigator": [sys.executable, str(EXAMPLES / "investigator.py")],
        "tester": [sys.executable, str(EXAMPLES / "failing.py")],
        "asker": [sys.executable, str(EXAMPLES / "asker.py")],
        "reviewer": [sys.executable, str(EXAMPLES / "reviewer.py")],
        "long": [sys.executable, str(EXAMPLES / "long_task.py"), "60"],
        "secret": agent("q_ask.py", json.dumps(SECRET_SCRIPT)),
        "two_questions": agent("q_ask.py", json.dumps(TWO_QUESTIONS_SCRIPT)),
        "gated": agent("q_ask.py", json.dumps(gated_script(home))),
    }
    write_config(
        home,
        "".join(
            f'[agents.{name}]\nadapter = "command"\ncommand = {json.dumps(argv)}\n'
            for name, argv in agents.items()
        )
        + more,
    )
