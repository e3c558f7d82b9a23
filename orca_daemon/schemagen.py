"""Writes the JSON Schemas of every event and socket message into `schemas/`.

python -m orca_daemon.schemagen [DIR]      write (default: ./schemas)
python -m orca_daemon.schemagen --check    exit 1 if the committed files are stale

The output depends only on the code: descriptions are dedented here (msgspec before 0.21 and
after dedent docstrings differently, and Python 3.13 dedents them itself) and the members of
every `anyOf` are put in one order (msgspec versions list `null` first or last).
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from orca_client import wire
from orca_client.events import EVENT_TYPES, SCHEMA_VERSION, AnyEvent


def _schema(kind: type[Any], title: str) -> dict[str, Any]:
    schema: dict[str, Any] = msgspec.json.schema(kind)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title, **schema}
    result: dict[str, Any] = normalised(schema)
    return result


def normalised(schema: Any) -> Any:
    """`schema` with every description dedented like `inspect.cleandoc` and every `anyOf` in
    one order: the same whichever msgspec or Python version produced it."""
    if isinstance(schema, list):
        return [normalised(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "description" and isinstance(value, str):
            result[key] = inspect.cleandoc(value)
        elif key == "anyOf" and isinstance(value, list):
            result[key] = sorted(
                normalised(value), key=lambda item: json.dumps(item, sort_keys=True)
            )
        else:
            result[key] = normalised(value)
    return result


def _tag(kind: type[msgspec.Struct]) -> str:
    tag = kind.__struct_config__.tag
    return str(tag) if tag is not None else kind.__name__


def render_all() -> dict[str, str]:
    """Every schema file, by relative path, as the text it must contain."""
    files: dict[str, Any] = {}
    for event in EVENT_TYPES:
        files[f"events/{_tag(event)}.json"] = _schema(event, event.__name__)
    files["events/any.json"] = _schema(AnyEvent, "AnyEvent")  # type: ignore[arg-type]
    for request in wire.REQUEST_TYPES:
        files[f"requests/{_tag(request)}.json"] = _schema(request, request.__name__)
        result = wire.RESULT_TYPES[request]
        files[f"results/{_tag(request)}.json"] = _schema(result, result.__name__)
    files["requests/envelope.json"] = _schema(wire.RequestEnvelope, "RequestEnvelope")
    files["daemon/message.json"] = _schema(wire.DaemonMessage, "DaemonMessage")  # type: ignore[arg-type]
    files["daemon/event_record.json"] = _schema(wire.EventRecord, "EventRecord")
    files["VERSION.json"] = {
        "protocol": wire.PROTOCOL.decode(),
        "protocol_version": wire.PROTOCOL_VERSION,
        "event_schema_version": SCHEMA_VERSION,
    }
    return {
        path: json.dumps(value, indent=2, sort_keys=True) + "\n" for path, value in files.items()
    }


def stale_files(directory: Path) -> list[str]:
    """Paths under `directory` that are missing, different, or no longer generated."""
    expected = render_all()
    stale = [p for p, text in expected.items() if _read(directory / p) != text]
    extra = [
        str(p.relative_to(directory))
        for p in directory.rglob("*.json")
        if str(p.relative_to(directory)) not in expected
    ]
    return sorted(stale + extra)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def write_all(directory: Path) -> None:
    for path in directory.rglob("*.json"):
        path.unlink()
    for relative, text in render_all().items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orca_daemon.schemagen", description=__doc__)
    parser.add_argument("directory", nargs="?", default="schemas", type=Path)
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.directory)
        for path in stale:
            print(f"stale: {args.directory / path}", file=sys.stderr)
        if stale:
            print("regenerate with: python -m orca_daemon.schemagen", file=sys.stderr)
        return 1 if stale else 0
    write_all(args.directory)
    print(f"wrote {len(render_all())} schema files to {args.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
