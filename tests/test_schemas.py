"""The committed JSON Schemas in schemas/ match what the code generates."""

from __future__ import annotations

import json

from conftest import REPO

from orca_client import wire
from orca_daemon.events import EVENT_TYPES
from orca_daemon.schemagen import render_all, stale_files


def test_committed_schemas_are_current() -> None:
    stale = stale_files(REPO / "schemas")
    assert stale == [], f"stale schema files {stale}: run `python -m orca_daemon.schemagen`"


def test_every_event_and_socket_message_has_a_schema() -> None:
    files = render_all()
    for event in EVENT_TYPES:
        assert f"events/{event.__struct_config__.tag}.json" in files
    for request in wire.REQUEST_TYPES:
        assert f"requests/{request.__struct_config__.tag}.json" in files
        assert f"results/{request.__struct_config__.tag}.json" in files
    message = json.loads(files["daemon/message.json"])
    assert {"Reply", "EventsPushed", "SubscriptionOverflowed"} <= set(message["$defs"])


def test_a_changed_schema_is_reported_stale(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for relative, text in render_all().items():
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    assert stale_files(tmp_path) == []
    (tmp_path / "events" / "run_created.json").write_text("{}\n")
    (tmp_path / "events" / "gone.json").write_text("{}\n")
    assert stale_files(tmp_path) == ["events/gone.json", "events/run_created.json"]
