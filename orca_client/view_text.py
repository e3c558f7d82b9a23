"""How much of a text a status view keeps per field, and how a shortened text says so.

orcad's projection keeps summaries, reasons, questions and prompt previews to this length, so
that `status` stays small whatever agents write; the whole text stays in the log, and
`orca logs` prints it. Pure; shared by orcad and the CLI.
"""

from __future__ import annotations

VIEW_TEXT_CHARS = 4000
"""The characters of a text a view keeps."""
MARKER_SLACK = 200
"""A text at most this much over the limit is kept whole: a shortened text (its marker
included) is never shortened again."""


def is_long(text: str) -> bool:
    """Whether a view shows only the start of `text`."""
    return len(text) > VIEW_TEXT_CHARS + MARKER_SLACK


def bounded(text: str, run_id: str) -> str:
    """`text`, or its start and a marker that says how much is left out and where it is."""
    if not is_long(text):
        return text
    more = len(text) - VIEW_TEXT_CHARS
    return f"{text[:VIEW_TEXT_CHARS]}… ({more:,} more characters; see `orca logs {run_id}`)"


def bounded_or_none(text: str | None, run_id: str) -> str | None:
    return None if text is None else bounded(text, run_id)
