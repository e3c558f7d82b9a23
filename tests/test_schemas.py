"""The committed JSON Schemas in schemas/ match what the code generates."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from conftest import REPO

from orca_client import wire
from orca_client.events import EVENT_TYPES
from orca_daemon.schemagen import normalised, render_all, stale_files


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


def _descriptions(schema: Any) -> Iterator[str]:
    if isinstance(schema, list):
        for item in schema:
            yield from _descriptions(item)
    elif isinstance(schema, dict):
        for key, value in schema.items():
            if key == "description" and isinstance(value, str):
                yield value
            else:
                yield from _descriptions(value)


def _rewritten(
    schema: Any, description: Callable[[str], str], any_of: Callable[[list[Any]], list[Any]]
) -> Any:
    if isinstance(schema, list):
        return [_rewritten(item, description, any_of) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: _rewritten(value, description, any_of) for key, value in schema.items()}
    if isinstance(result.get("description"), str):
        result["description"] = description(result["description"])
    if isinstance(result.get("anyOf"), list):
        result["anyOf"] = any_of(result["anyOf"])
    return result


def test_committed_descriptions_carry_no_docstring_indentation() -> None:
    paths = sorted((REPO / "schemas").rglob("*.json"))
    assert paths
    for path in paths:
        for description in _descriptions(json.loads(path.read_text())):
            assert description == inspect.cleandoc(description), path


@pytest.mark.parametrize("indent", ["", "    ", "        ", "\t"])
def test_schemas_do_not_depend_on_how_msgspec_dedents_or_orders_unions(indent: str) -> None:
    """msgspec < 0.21 keeps a docstring's indentation after its first line (0.21+ and Python
    3.13 remove it) and lists `null` first in a union; the generated text is the same."""
    kinds = [*EVENT_TYPES, *wire.REQUEST_TYPES, *wire.RESULT_TYPES.values(), wire.DaemonMessage]
    rewritten = 0
    for kind in kinds:
        raw = msgspec.json.schema(kind)
        other = _rewritten(
            raw,
            description=lambda text: text.replace("\n", "\n" + indent),
            any_of=lambda members: members[::-1],
        )
        rewritten += other != raw
        assert normalised(other) == normalised(raw), kind
    assert rewritten > 0
