"""The command-agent translator (orca_daemon/agents/command.py), per docs/agent-protocol.md.

Lines in, effects out: `output` lines are output verbatim, the first valid `result` line is the
agent's verdict, and anything else is plain output recorded as written, with its newline.
"""

from __future__ import annotations

import json

import pytest

from orca_daemon.agents.base import Output, Result, Send
from orca_daemon.agents.command import CommandTranslator


@pytest.fixture
def translator() -> CommandTranslator:
    return CommandTranslator()


def test_an_output_line_is_output_verbatim_without_an_added_newline(
    translator: CommandTranslator,
) -> None:
    assert translator.feed_line('{"type":"output","text":"hello"}') == [Output("hello")]
    assert translator.feed_line('{"type":"output","text":"line\\n"}') == [Output("line\n")]
    assert translator.feed_line('{"type":"output","text":""}') == [Output("")]
    assert translator.feed_line('{"type": "output", "text": "ünï ✓"}') == [Output("ünï ✓")]
    assert translator.result is None


def test_a_done_result_is_the_agents_verdict(translator: CommandTranslator) -> None:
    effects = translator.feed_line('{"type":"result","outcome":"done","summary":"fixed it"}')
    assert effects == [Result("done", summary="fixed it")]
    assert translator.result == Result("done", summary="fixed it", error=None)


def test_a_failed_result_carries_its_error(translator: CommandTranslator) -> None:
    effects = translator.feed_line('{"type":"result","outcome":"failed","error":"no tests"}')
    assert effects == [Result("failed", error="no tests")]
    assert translator.result == Result("failed", summary=None, error="no tests")


def test_a_result_needs_no_summary_or_error(translator: CommandTranslator) -> None:
    assert translator.feed_line('{"type":"result","outcome":"done"}') == [Result("done")]


def test_surrounding_whitespace_does_not_hide_a_protocol_line(
    translator: CommandTranslator,
) -> None:
    assert translator.feed_line('   {"type":"output","text":"x"}\t ') == [Output("x")]
    assert translator.feed_line(' {"type":"result","outcome":"done"}\r') == [Result("done")]


@pytest.mark.parametrize(
    "line",
    [
        "plain text",
        "",
        "   ",
        "Traceback (most recent call last):",
        "[1, 2, 3]",
        '"a json string"',
        "42",
        "null",
        "true",
        "{not json",
        '{"type":"output","text":"x"} trailing',
        '{"type":"output","text":"x"}{"type":"output","text":"y"}',
    ],
)
def test_a_line_that_is_not_a_json_object_is_plain_output_with_its_newline(
    translator: CommandTranslator, line: str
) -> None:
    assert translator.feed_line(line) == [Output(line + "\n")]
    assert translator.result is None


@pytest.mark.parametrize(
    "line",
    [
        "{}",
        '{"text":"no type"}',
        '{"type":"progress","percent":50}',
        '{"type":"prompt","text":"an echo of our own prompt"}',
        '{"type":"OUTPUT","text":"x"}',
        '{"type":5,"text":"x"}',
        '{"type":"output"}',
        '{"type":"output","text":5}',
        '{"type":"output","text":null}',
        '{"type":"output","text":["a"]}',
        '{"type":"result"}',
        '{"type":"result","outcome":"maybe"}',
        '{"type":"result","outcome":"DONE"}',
        '{"type":"result","outcome":null}',
        '{"type":"result","outcome":"done","summary":7}',
        '{"type":"result","outcome":"failed","error":{"why":"x"}}',
    ],
)
def test_an_object_with_an_unknown_type_or_wrong_fields_is_plain_output(
    translator: CommandTranslator, line: str
) -> None:
    assert translator.feed_line(line) == [Output(line + "\n")]
    assert translator.result is None


def test_plain_output_keeps_the_line_exactly_as_written(translator: CommandTranslator) -> None:
    line = "  indented\twith tabs  "
    assert translator.feed_line(line) == [Output(line + "\n")]


def test_an_invalid_result_does_not_use_up_the_verdict(translator: CommandTranslator) -> None:
    translator.feed_line('{"type":"result","outcome":"maybe"}')
    assert translator.feed_line('{"type":"result","outcome":"failed","error":"e"}') == [
        Result("failed", error="e")
    ]


def test_only_the_first_result_counts_and_later_ones_are_output(
    translator: CommandTranslator,
) -> None:
    first = '{"type":"result","outcome":"done","summary":"ok"}'
    second = '{"type":"result","outcome":"failed","error":"changed my mind"}'
    assert translator.feed_line(first) == [Result("done", summary="ok")]
    assert translator.feed_line(second) == [Output(second + "\n")]
    assert translator.feed_line(first) == [Output(first + "\n")]
    assert translator.result == Result("done", summary="ok")
    # Output lines still work after the verdict.
    assert translator.feed_line('{"type":"output","text":"bye"}') == [Output("bye")]


@pytest.mark.parametrize(
    "prompt",
    ["fix the failing test", "", 'quotes " and \\ backslashes', "two\nlines\r\n", "ünï ✓ \x00"],
)
def test_the_prompt_line_is_one_json_object_on_one_line(
    translator: CommandTranslator, prompt: str
) -> None:
    (effect,) = translator.start(prompt)
    assert isinstance(effect, Send)
    line = effect.line
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1, "the prompt must not break the one-object-per-line framing"
    assert json.loads(line.decode("utf-8")) == {"type": "prompt", "text": prompt}
