// The answer flow: a pending question request → prompts → the `answer` params.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  type AnswerUI,
  OTHER_LABEL,
  type PickItem,
  type QuestionPrompt,
  collectAnswer,
  promptsFor,
} from "../src/answer";
import type { PendingQuestion } from "../src/protocol.generated";

/** A UI that gives scripted replies and records what it was shown. */
function scripted(replies: Array<string | undefined>) {
  const shown: Array<{ how: string; title: string; items?: string[]; password?: boolean; refusal?: string }> =
    [];
  const ui: AnswerUI = {
    async pick(prompt: QuestionPrompt, items: PickItem[]) {
      shown.push({ how: "pick", title: prompt.title, items: items.map((i) => i.label) });
      return replies.shift();
    },
    async input(prompt, { password, validate }) {
      const reply = replies.shift();
      shown.push({ how: "input", title: prompt.title, password, refusal: validate(reply ?? "x") });
      return reply;
    },
  };
  return { ui, shown };
}

const pending: PendingQuestion = {
  request_id: "req-1",
  session_id: "r.1",
  asked_at: 1,
  questions: [
    {
      id: "runtime",
      header: "Runtime",
      question: "Which runtime?",
      options: [{ label: "py311", description: "CI" }, { label: "py313" }],
      isOther: true,
    },
    { id: "strict", question: "Strict mode?", options: [{ label: "yes" }, { label: "no" }] },
    { id: "name", question: "Branch name?" },
    { id: "token", header: "Token", question: "API token?", isSecret: true, options: [{ label: "ignored" }] },
  ],
};

describe("answer flow", () => {
  it("asks options as a pick, free text as an input, a secret as a password input", () => {
    assert.deepEqual(
      promptsFor(pending).map((p) => [p.title, p.kind, p.allowOther]),
      [
        ["Runtime (1/4)", "pick", true],
        ["strict (2/4)", "pick", false],
        ["name (3/4)", "text", false],
        ["Token (4/4)", "secret", false],
      ],
    );
  });

  it("builds the answer params for this very request from the choices", async () => {
    const { ui, shown } = scripted(["py313", "no", "fix-parser", "s3cret"]);
    const params = await collectAnswer("r", pending, ui, "orca-vscode:me");
    assert.deepEqual(params, {
      run_id: "r",
      request_id: "req-1",
      answers: { runtime: ["py313"], strict: ["no"], name: ["fix-parser"], token: ["s3cret"] },
      answered_by: "orca-vscode:me",
    });
    assert.deepEqual(
      shown.map((s) => [s.how, s.items ?? s.password]),
      [
        ["pick", ["py311", "py313", OTHER_LABEL]],
        ["pick", ["yes", "no"]],
        ["input", false],
        ["input", true],
      ],
    );
  });

  it("lets the user type their own answer when the question allows other answers", async () => {
    const { ui, shown } = scripted([OTHER_LABEL, "pypy", "yes", "n", "t"]);
    const params = await collectAnswer("r", pending, ui);
    assert.deepEqual(params?.answers?.runtime, ["pypy"]);
    assert.equal(params?.answered_by, undefined, "the bridge names who answered when we do not");
    assert.deepEqual(
      shown.slice(0, 2).map((s) => s.how),
      ["pick", "input"],
    );
  });

  it("asks again after an empty answer, which the input box refuses", async () => {
    const single: PendingQuestion = { ...pending, questions: [{ id: "name", question: "Branch?" }] };
    const { ui, shown } = scripted(["", "main"]);
    assert.deepEqual((await collectAnswer("r", single, ui))?.answers, { name: ["main"] });
    assert.deepEqual(
      shown.map((s) => s.refusal),
      ["an answer cannot be empty", undefined],
    );
  });

  it("sends nothing when the user dismisses any question", async () => {
    for (const replies of [
      [undefined],
      ["py311", undefined],
      [OTHER_LABEL, undefined],
      ["py311", "yes", "x", undefined],
    ]) {
      const { ui } = scripted(replies);
      assert.equal(await collectAnswer("r", pending, ui), undefined);
    }
  });
});
