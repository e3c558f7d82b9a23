// A run's log as text: output, questions, answers and outcomes, each position once.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { RunLog, loadRunLog } from "../src/log";
import type { EventRecord } from "../src/protocol.generated";

const rec = (position: number, event: Record<string, unknown>): EventRecord => ({
  position,
  stream: "run-r",
  version: position,
  recorded_at: position,
  schema_version: 1,
  event,
});

describe("RunLog", () => {
  it("prints one session's output as is, with a line per question, answer and outcome", () => {
    const log = new RunLog("r");
    const text = [
      rec(1, { type: "session_created", run_id: "r", session_id: "r.1", agent: "asker" }),
      rec(2, {
        type: "output_appended",
        run_id: "r",
        session_id: "r.1",
        stream: "stdout",
        text: "planning\nhalf",
      }),
      rec(3, {
        type: "question_asked",
        run_id: "r",
        session_id: "r.1",
        request_id: "q",
        questions: [{ id: "runtime", question: "Which?" }],
      }),
      rec(4, {
        type: "question_answered",
        run_id: "r",
        session_id: "r.1",
        request_id: "q",
        answered_by: "orca-vscode:me",
      }),
      rec(4, { type: "output_appended", run_id: "r", session_id: "r.1", stream: "stdout", text: "again" }),
      rec(5, {
        type: "output_appended",
        run_id: "other",
        session_id: "other.1",
        stream: "stdout",
        text: "not ours",
      }),
      rec(6, { type: "run_status_changed", run_id: "r", status: "completed" }),
    ]
      .map((r) => log.append(r))
      .join("");
    assert.equal(
      text,
      "planning\nhalf\n── asks: [runtime] Which?\n── answered by orca-vscode:me\n── run completed\n",
    );
    assert.equal(log.after, 6);
  });

  it("puts the session before each line of a fan-out's output", () => {
    const log = new RunLog("f");
    const text = [
      rec(1, { type: "session_created", run_id: "f", session_id: "f.1", agent: "codex" }),
      rec(2, { type: "session_created", run_id: "f", session_id: "f.2", agent: "claude" }),
      rec(3, { type: "output_appended", run_id: "f", session_id: "f.1", text: "a\nb" }),
      rec(4, { type: "output_appended", run_id: "f", session_id: "f.1", text: "c\n" }),
      rec(5, { type: "output_appended", run_id: "f", session_id: "f.2", text: "d\n" }),
    ]
      .map((r) => log.append(r))
      .join("");
    assert.equal(text, "[1 codex] a\n[1 codex] bc\n[2 claude] d\n");
  });

  it("reads the whole log page by page", async () => {
    const all = Array.from({ length: 5 }, (_, i) =>
      rec(i + 1, { type: "output_appended", run_id: "r", session_id: "r.1", text: `${i}\n` }),
    );
    const asked: number[] = [];
    const log = new RunLog("r");
    const text = await loadRunLog(
      async ({ after, limit }) => {
        asked.push(after);
        return { events: all.filter((r) => r.position > after).slice(0, limit) };
      },
      log,
      2,
    );
    assert.equal(text, "0\n1\n2\n3\n4\n");
    assert.deepEqual(asked, [0, 2, 4]);
  });
});
