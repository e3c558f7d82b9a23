"""Text a request hands to the operating system, checked before anything is decided: no NUL
byte anywhere (argv, environment and paths cannot hold one), absolute paths of a length the
kernel accepts. A failure is a `bad_request` that names the field."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import msgspec

from orca_client.wire import StartDebug, StartPlan, StartRun, WireError

MAX_PATH_BYTES = 4095
"""PATH_MAX less its terminating NUL."""
MAX_NAME_BYTES = 255
"""The longest file name (one path component) Linux file systems accept."""
PATH_FIELDS = ("cwd", "task_file", "codex_path", "claude_path")


def check_start(request: StartRun | StartDebug | StartPlan) -> None:
    """Refuse a request that starts work with text the OS cannot take; see the module doc."""
    for where, text in _strings(msgspec.to_builtins(request), ""):
        if "\0" in text:
            raise WireError("bad_request", f"{where} must not contain a NUL byte")
    for field in PATH_FIELDS:
        value = getattr(request, field, None)
        if value:
            if not os.path.isabs(value):
                raise WireError("bad_request", f"{field} must be an absolute path, got {value!r}")
            _check_length(field, value)
    for directory in (request.search_path or "").split(os.pathsep):
        _check_length("search_path", directory)


def _check_length(field: str, path: str) -> None:
    encoded = os.fsencode(path)
    longest = max((len(name) for name in encoded.split(b"/")), default=0)
    if len(encoded) > MAX_PATH_BYTES or longest > MAX_NAME_BYTES:
        raise WireError(
            "bad_request",
            f"{field} is too long: a path may have {MAX_PATH_BYTES} bytes, each name in it "
            f"{MAX_NAME_BYTES} (got {len(encoded)} bytes, a name of {longest})",
        )


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string in a request's builtins, with where it is (`plan.tasks[3].prompt`)."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{where}[{index}]")
