"""The agent translators without I/O: given these agent lines, these effects and these replies."""

from __future__ import annotations

import json
from typing import Any

from orca_daemon.agents.base import (
    CloseInput,
    Effect,
    Identified,
    Interrupting,
    Note,
    Output,
    QuestionsAsked,
    QuestionsWithdrawn,
    Result,
    Send,
    Usage,
)
from orca_daemon.agents.claude import ClaudeTranslator, claude_argv
from orca_daemon.agents.codex import CodexAppServerTranslator, CodexSettings, verdict_of
from orca_daemon.agents.codex_exec import CodexExecTranslator, exec_argv


def sent(effects: list[Effect]) -> list[dict[str, Any]]:
    return [json.loads(e.line) for e in effects if isinstance(e, Send)]


def line(value: dict[str, Any]) -> str:
    return json.dumps(value)


def started_codex(**settings: Any) -> CodexAppServerTranslator:
    """A translator that has been through initialize, thread/start and turn/start."""
    codex = CodexAppServerTranslator(
        CodexSettings(label="/bin/codex (codex-cli 1.2.3)", cwd="/w", **settings)
    )
    assert sent(codex.start("do it"))[0]["method"] == "initialize"
    after_init = codex.feed_line(line({"id": 0, "result": {"userAgent": "x"}}))
    assert [m.get("method") for m in sent(after_init)] == ["initialized", "thread/start"]
    after_thread = codex.feed_line(line({"id": 1, "result": {"thread": {"id": "th-1"}}}))
    assert Identified("th-1") in after_thread
    (turn,) = sent(after_thread)
    assert turn == {
        "id": 2,
        "method": "turn/start",
        "params": {"threadId": "th-1", "input": [{"type": "text", "text": "do it"}]},
    }
    assert codex.feed_line(line({"id": 2, "result": {"turn": {"id": "tu-1"}}})) == []
    return codex


def test_codex_handshake_has_no_jsonrpc_member_and_starts_the_thread_in_the_cwd() -> None:
    codex = CodexAppServerTranslator(CodexSettings(label="codex", cwd="/w", model="m1"))
    (init,) = sent(codex.start("p"))
    assert "jsonrpc" not in init
    assert init["params"]["clientInfo"]["name"] == "orca"
    thread = sent(codex.feed_line(line({"id": 0, "result": {}})))[1]
    assert thread["params"] == {
        "cwd": "/w",
        "model": "m1",
        "sandbox": "workspace-write",
        "approvalPolicy": "never",
    }


def test_finding_1_codex_resume_keeps_cwd_sandbox_approval_policy_and_model() -> None:
    settings = CodexSettings(
        label="codex", cwd="/w", model="m1", approval_policy="on-request", resume_thread="th-9"
    )
    codex = CodexAppServerTranslator(settings)
    codex.start("again")
    resume = sent(codex.feed_line(line({"id": 0, "result": {}})))[1]
    assert resume["method"] == "thread/resume"
    assert resume["params"] == {
        "threadId": "th-9",
        "cwd": "/w",
        "model": "m1",
        "sandbox": "workspace-write",
        "approvalPolicy": "on-request",
        "excludeTurns": True,
    }


def test_codex_streams_deltas_items_and_usage_then_completes_with_the_last_message() -> None:
    codex = started_codex()
    effects = codex.feed_line(
        line({"method": "item/agentMessage/delta", "params": {"itemId": "m", "delta": "Hel"}})
    )
    effects += codex.feed_line(
        line(
            {
                "method": "item/completed",
                "params": {"item": {"type": "agentMessage", "id": "m", "text": "Hello"}},
            }
        )
    )
    effects += codex.feed_line(
        line(
            {
                "method": "item/completed",
                "params": {
                    "item": {
                        "type": "commandExecution",
                        "id": "c",
                        "command": "ls",
                        "exitCode": 0,
                        "status": "completed",
                        "aggregatedOutput": "a\n",
                    }
                },
            }
        )
    )
    effects += codex.feed_line(
        line(
            {
                "method": "thread/tokenUsage/updated",
                "params": {"tokenUsage": {"total": {"totalTokens": 5}}},
            }
        )
    )
    effects += codex.feed_line(
        line(
            {"method": "turn/completed", "params": {"turn": {"id": "tu-1", "status": "completed"}}}
        )
    )
    assert effects == [
        Output("Hel"),
        Output("\n"),
        Output("$ ls  (exit 0, completed)\na\n"),
        Usage({"total": {"totalTokens": 5}}),
        Result("done", summary="Hello"),
    ]
    assert codex.finish() == []


def test_codex_question_is_answered_with_the_same_rpc_id_and_the_documented_shape() -> None:
    codex = started_codex()
    questions = [
        {
            "id": "db",
            "header": "DB",
            "question": "Which?",
            "isOther": True,
            "isSecret": False,
            "options": [{"label": "pg", "description": ""}],
        }
    ]
    (asked,) = codex.feed_line(
        line({"id": 0, "method": "item/tool/requestUserInput", "params": {"questions": questions}})
    )
    assert isinstance(asked, QuestionsAsked) and asked.questions[0].is_other
    (reply,) = sent(codex.answer(asked.request_id, {"db": ["pg"]}))
    assert reply == {"id": 0, "result": {"answers": {"db": {"answers": ["pg"]}}}}
    # Until the answer is recorded, the request stays pending: the same reply comes again.
    assert sent(codex.answer(asked.request_id, {"db": ["pg"]})) == [reply]
    assert codex.answered(asked.request_id)
    assert codex.answer(asked.request_id, {"db": ["again"]}) == []
    assert not codex.answered(asked.request_id)


def test_codex_resolving_its_own_request_withdraws_the_question() -> None:
    codex = started_codex()
    (asked,) = codex.feed_line(
        line(
            {
                "id": 7,
                "method": "item/tool/requestUserInput",
                "params": {"questions": [{"id": "a", "question": "?"}]},
            }
        )
    )
    assert isinstance(asked, QuestionsAsked)
    withdrawn = codex.feed_line(
        line({"method": "serverRequest/resolved", "params": {"requestId": 7}})
    )
    assert withdrawn == [QuestionsWithdrawn(asked.request_id, "codex resolved the request itself")]
    assert codex.answer(asked.request_id, {"a": ["x"]}) == []


def test_codex_refuses_questions_with_duplicate_ids() -> None:
    codex = started_codex()
    effects = codex.feed_line(
        line(
            {
                "id": 3,
                "method": "item/tool/requestUserInput",
                "params": {
                    "questions": [{"id": "a", "question": "1"}, {"id": "a", "question": "2"}]
                },
            }
        )
    )
    assert isinstance(effects[0], Note) and "duplicate" in effects[0].text
    assert sent(effects)[0]["error"]["code"] == -32602


def test_codex_cancel_rejects_the_pending_request_and_interrupts_the_turn() -> None:
    codex = started_codex()
    codex.feed_line(
        line(
            {
                "id": 4,
                "method": "item/tool/requestUserInput",
                "params": {"questions": [{"id": "a", "question": "?"}]},
            }
        )
    )
    effects = codex.cancel("user said stop")
    replies = sent(effects)
    assert replies[0]["id"] == 4 and "cancelled" in replies[0]["error"]["message"]
    assert replies[1]["method"] == "turn/interrupt"
    assert replies[1]["params"] == {"threadId": "th-1", "turnId": "tu-1"}
    assert effects[-1] == Interrupting()  # cancel waits for the turn to end before a signal


def test_codex_cancel_after_the_turn_ended_has_nothing_to_wait_for() -> None:
    codex = started_codex()
    codex.feed_line(line({"method": "turn/completed", "params": {"turn": {"status": "completed"}}}))
    assert codex.cancel("late") == []


def test_codex_turn_outcomes() -> None:
    failed = started_codex().feed_line(
        line(
            {
                "method": "turn/completed",
                "params": {"turn": {"status": "failed", "error": {"message": "boom"}}},
            }
        )
    )
    assert failed[-1] == Result("failed", error="boom")
    interrupted = started_codex().feed_line(
        line({"method": "turn/completed", "params": {"turn": {"status": "interrupted"}}})
    )
    assert interrupted[-2:] == [
        Note("codex interrupted the turn"),
        Result("failed", error="the turn was interrupted"),
    ]


def test_finding_6_codex_warnings_become_notes() -> None:
    codex = started_codex()
    effects = codex.feed_line(
        line({"method": "warning", "params": {"threadId": "th-1", "message": "features on"}})
    )
    effects += codex.feed_line(
        line({"method": "configWarning", "params": {"summary": "no bwrap", "details": "install"}})
    )
    effects += codex.feed_line(
        line({"method": "deprecationNotice", "params": {"summary": "old flag", "details": None}})
    )
    assert effects == [
        Note("codex warning: features on"),
        Note("codex config warning: no bwrap (install)"),
        Note("codex deprecation notice: old flag"),
    ]


def test_finding_6_codex_commands_and_file_changes_are_shown_compactly() -> None:
    codex = started_codex()
    output = "".join(f"line {n}\n" for n in range(1, 41)) + "x" * 500 + "\n"
    command = {
        "type": "commandExecution",
        "id": "c",
        "command": "/bin/bash -lc 'make test'",
        "commandActions": [{"type": "unknown", "command": "make test"}],
        "cwd": "/w",
        "exitCode": 2,
        "status": "failed",
        "aggregatedOutput": output,
    }
    change = {
        "type": "fileChange",
        "id": "f",
        "changes": [
            {"path": "/w/src/a.py", "kind": {"type": "update", "move_path": None}, "diff": ""},
            {"path": "/elsewhere/b.py", "kind": {"type": "add"}, "diff": ""},
        ],
        "status": "completed",
    }
    (shown,) = codex.feed_line(line({"method": "item/completed", "params": {"item": command}}))
    assert isinstance(shown, Output)
    assert shown.text.splitlines() == [
        "$ make test  (exit 2, failed)",
        "… 36 earlier line(s) of output (left out)",
        "line 37",
        "line 38",
        "line 39",
        "line 40",
        "x" * 200 + "…",
    ]
    changed = codex.feed_line(line({"method": "item/completed", "params": {"item": change}}))
    assert changed == [Output("update src/a.py\nadd /elsewhere/b.py\n")]


def test_codex_a_completed_turn_whose_message_reports_failure_fails() -> None:
    codex = started_codex()
    text = 'I tried.\n{"outcome":"failed","error":"tests still fail"}'
    codex.feed_line(
        line(
            {
                "method": "item/completed",
                "params": {"item": {"type": "agentMessage", "id": "m", "text": text}},
            }
        )
    )
    effects = codex.feed_line(
        line({"method": "turn/completed", "params": {"turn": {"status": "completed"}}})
    )
    assert effects[-1] == Result("failed", error="tests still fail")


def test_codex_an_unsupported_method_names_the_binary_and_version() -> None:
    codex = CodexAppServerTranslator(CodexSettings(label="/old/codex (codex-cli 0.1.0)", cwd="/w"))
    codex.start("p")
    codex.feed_line(line({"id": 0, "result": {}}))
    effects = codex.feed_line(
        line(
            {
                "id": 1,
                "error": {
                    "code": -32600,
                    "message": "Invalid request: unknown variant `thread/start`",
                },
            }
        )
    )
    result = effects[-1]
    assert isinstance(result, Result) and result.outcome == "failed"
    assert (
        result.error is not None
        and "/old/codex (codex-cli 0.1.0)" in result.error
        and "thread/start" in result.error
    )


def test_codex_garbage_is_a_note_and_an_early_exit_is_a_failure() -> None:
    codex = started_codex()
    assert isinstance(codex.feed_line("not json at all")[0], Note)
    assert isinstance(codex.feed_line(line({"method": "item/completed", "params": {}}))[0], Note)
    assert codex.finish() == [
        Result("failed", error="/bin/codex (codex-cli 1.2.3) exited before its turn completed")
    ]


def test_verdict_is_read_from_the_last_line_only() -> None:
    assert verdict_of('{"outcome":"done","summary":"ok"}') == Result("done", summary="ok")
    assert verdict_of('{"outcome":"failed"}\nthen more text') is None
    assert verdict_of("") is None


def test_codex_exec_reads_the_prompt_from_stdin_and_resumes_by_thread() -> None:
    argv = exec_argv(["codex"], resume_thread="th-2", model=None, sandbox="read-only", extra=[])
    assert argv == [
        "codex",
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--sandbox",
        "read-only",
        "resume",
        "th-2",
        "-",
    ]
    codex = CodexExecTranslator("codex")
    assert codex.start("fix") == [Send(b"fix"), CloseInput()]
    effects = codex.feed_line(line({"type": "thread.started", "thread_id": "th-3"}))
    effects += codex.feed_line(line({"type": "error", "message": "reconnecting"}))
    effects += codex.feed_line(
        line({"type": "item.completed", "item": {"type": "agent_message", "text": "done it"}})
    )
    effects += codex.feed_line(line({"type": "turn.completed", "usage": {"input_tokens": 3}}))
    assert effects == [
        Identified("th-3"),
        Note("codex exec error: reconnecting"),
        Output("done it\n"),
        Usage({"input_tokens": 3}, input_tokens=3),
        Result("done", summary="done it"),
    ]
    failed = CodexExecTranslator("codex").feed_line(
        line({"type": "turn.failed", "error": {"message": "nope"}})
    )
    assert failed == [Result("failed", error="nope")]


def test_claude_argv_enables_stdio_permission_prompts() -> None:
    argv = claude_argv(["claude"], model="opus", resume_session="s-1", extra=[])
    assert argv[:6] == [
        "claude",
        "--output-format",
        "stream-json",
        "--verbose",
        "--input-format",
        "stream-json",
    ]
    assert "--permission-prompt-tool" in argv and "stdio" in argv and "--resume=s-1" in argv


def test_claude_ask_user_question_is_answered_by_question_text() -> None:
    claude = ClaudeTranslator("claude")
    (first,) = sent(claude.start("hello"))
    assert first["type"] == "user" and first["message"] == {"role": "user", "content": "hello"}
    tool_input = {
        "questions": [
            {
                "question": "Which color?",
                "header": "Color",
                "options": [{"label": "Red", "description": ""}],
                "multiSelect": True,
            }
        ]
    }
    request = {
        "type": "control_request",
        "request_id": "r1",
        "request": {"subtype": "can_use_tool", "tool_name": "AskUserQuestion", "input": tool_input},
    }
    (asked,) = claude.feed_line(line(request))
    assert isinstance(asked, QuestionsAsked) and asked.questions[0].id == "q1"
    (reply,) = sent(claude.answer(asked.request_id, {"q1": ["Red", "Blue"]}))
    assert reply["response"]["request_id"] == "r1"
    assert reply["response"]["response"] == {
        "behavior": "allow",
        "updatedInput": {**tool_input, "answers": {"Which color?": "Red, Blue"}},
    }


def test_claude_result_decides_and_records_cost() -> None:
    claude = ClaudeTranslator("claude")
    assert claude.feed_line(line({"type": "system", "subtype": "init", "session_id": "s-9"})) == [
        Identified("s-9")
    ]
    ok = claude.feed_line(
        line(
            {
                "type": "result",
                "subtype": "success",
                "is_error": False,
                "result": "all good",
                "total_cost_usd": 0.5,
                "session_id": "s-9",
            }
        )
    )
    assert ok[-1] == Result("done", summary="all good")
    assert isinstance(ok[0], Usage) and ok[0].data["total_cost_usd"] == 0.5
    bad = ClaudeTranslator("claude").feed_line(
        line(
            {
                "type": "result",
                "subtype": "error_during_execution",
                "is_error": False,
                "errors": ["API error"],
            }
        )
    )
    assert bad[-1] == Result("failed", error="API error")


def test_claude_tool_permission_and_cancelled_questions() -> None:
    claude = ClaudeTranslator("claude", tool_permission="deny")
    effects = claude.feed_line(
        line(
            {
                "type": "control_request",
                "request_id": "r2",
                "request": {
                    "subtype": "can_use_tool",
                    "tool_name": "Bash",
                    "input": {"command": "ls"},
                },
            }
        )
    )
    assert sent(effects)[0]["response"]["response"]["behavior"] == "deny"
    (asked,) = claude.feed_line(
        line(
            {
                "type": "control_request",
                "request_id": "r3",
                "request": {
                    "subtype": "can_use_tool",
                    "tool_name": "AskUserQuestion",
                    "input": {"questions": [{"question": "?"}]},
                },
            }
        )
    )
    assert isinstance(asked, QuestionsAsked)
    assert claude.feed_line(line({"type": "control_cancel_request", "request_id": "r3"})) == [
        QuestionsWithdrawn(asked.request_id, "claude cancelled its question")
    ]
    assert claude.finish() == [Result("failed", error="claude exited without a result line")]


def test_a_newer_codex_question_replaces_and_refuses_the_older() -> None:
    codex = started_codex()
    (first,) = codex.feed_line(
        line(
            {
                "id": 5,
                "method": "item/tool/requestUserInput",
                "params": {"questions": [{"id": "a", "question": "1?"}]},
            }
        )
    )
    assert isinstance(first, QuestionsAsked)
    effects = codex.feed_line(
        line(
            {
                "id": 6,
                "method": "item/tool/requestUserInput",
                "params": {"questions": [{"id": "b", "question": "2?"}]},
            }
        )
    )
    assert sent(effects)[0]["id"] == 5 and "superseded" in sent(effects)[0]["error"]["message"]
    assert QuestionsWithdrawn(first.request_id, "superseded by a newer question") in effects
    assert isinstance(effects[-1], QuestionsAsked) and effects[-1].questions[0].id == "b"


def test_claude_tool_calls_and_results_are_shown_compactly() -> None:
    claude = ClaudeTranslator("claude")
    calls = {
        "type": "assistant",
        "message": {
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls -a"}},
                {"type": "tool_use", "id": "t2", "name": "Read", "input": {"file_path": "/w/a"}},
                {"type": "tool_use", "id": "t3", "name": "Glob", "input": {"pattern": "*.py"}},
                {"type": "tool_use", "id": "t4", "name": "Task", "input": {"n": "x" * 400}},
                {"type": "thinking", "thinking": "hmm"},
            ]
        },
    }
    (shown,) = claude.feed_line(line(calls))
    assert isinstance(shown, Output)
    first, second, third, fourth, fifth = shown.text.splitlines()
    assert [first, second, third, fourth] == ["Let me look.", "$ ls -a", "Read /w/a", "Glob *.py"]
    assert fifth.startswith('Task {"n":"xxx') and fifth.endswith("…") and len(fifth) == 300
    results = {
        "type": "user",
        "message": {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "a\nb\nc\nd\ne\nf\ng\n"},
                {
                    "type": "tool_result",
                    "tool_use_id": "t2",
                    "content": [{"type": "text", "text": "no such file"}, {"type": "image"}],
                    "is_error": True,
                },
                {"type": "tool_result", "tool_use_id": "t3", "content": ""},
            ],
        },
    }
    assert claude.feed_line(line(results)) == [
        Output(
            "  a\n  b\n  c\n  d\n  e\n  … (2 more lines)\n"
            "  error: no such file\n  [image]\n"
            "  (no output)\n"
        )
    ]
    interrupted = {"type": "user", "message": {"content": [{"type": "text", "text": "[x]"}]}}
    assert claude.feed_line(line(interrupted)) == []


def test_claude_api_retries_errors_and_interrupts_are_reported() -> None:
    retry = {
        "type": "system",
        "subtype": "api_retry",
        "attempt": 1,
        "max_retries": 10,
        "retry_delay_ms": 572,
        "error_status": 529,
        "error": "overloaded",
    }
    assert ClaudeTranslator("claude").feed_line(line(retry)) == [
        Note("claude: API error 529 (overloaded); retry 1 of 10 in 0.6s")
    ]
    # Claude 2.1.332 reports an API error as a `success` that `is_error`.
    api_error = {
        "type": "result",
        "subtype": "success",
        "is_error": True,
        "terminal_reason": "api_error",
        "result": "API Error: 403 not allowed",
    }
    effects = ClaudeTranslator("claude").feed_line(line(api_error))
    assert effects[-1] == Result("failed", error="API Error: 403 not allowed")
    interrupted = {
        "type": "result",
        "subtype": "error_during_execution",
        "is_error": True,
        "terminal_reason": "aborted_streaming",
        "errors": ["[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=null"],
    }
    effects = ClaudeTranslator("claude").feed_line(line(interrupted))
    assert effects[-2:] == [
        Note("claude's turn was interrupted"),
        Result("failed", error="claude's turn was interrupted"),
    ]


def test_finding_3_codex_permissions_request_is_answered_with_permissions_and_scope() -> None:
    request = {
        "id": 7,
        "method": "item/permissions/requestApproval",
        "params": {"permissions": {"network": {"enabled": True}, "fileSystem": None}},
    }
    declined = sent(started_codex().feed_line(line(request)))
    assert declined == [{"id": 7, "result": {"permissions": {}, "scope": "turn"}}]
    accepted = sent(started_codex(approval_decision="accept").feed_line(line(request)))
    assert accepted == [
        {
            "id": 7,
            "result": {
                "permissions": {"network": {"enabled": True}, "fileSystem": None},
                "scope": "turn",
            },
        }
    ]
