/**
 * The answer flow: a pending question request → one prompt per question (options as a pick,
 * free text as an input box, a secret as a password input) → the `answer` request's params.
 * Pure logic against `AnswerUI`; the extension implements it with VS Code's quick pick and
 * input box, the tests with a scripted stand-in.
 */
import type { Params } from "./bridge";
import type { PendingQuestion, Question } from "./protocol.generated";

/** The choice in a pick that lets the user type an answer of their own. */
export const OTHER_LABEL = "Other…";

export interface PickItem {
  label: string;
  description: string;
}

/** How one question is asked. */
export interface QuestionPrompt {
  id: string;
  /** `Runtime (1/2)`: the header (else the id), and the place among several. */
  title: string;
  /** The question's text. */
  prompt: string;
  /** `pick`: one of `options` (with `Other…` last when `allowOther`); `text`; `secret`: unechoed. */
  kind: "pick" | "text" | "secret";
  options: PickItem[];
  allowOther: boolean;
}

/** What the flow needs from a user interface; `undefined` means the user dismissed it. */
export interface AnswerUI {
  pick(prompt: QuestionPrompt, items: PickItem[]): Promise<string | undefined>;
  /** A free-text answer (`password` for a secret); `validate` returns why a value is refused. */
  input(
    prompt: QuestionPrompt,
    options: { password: boolean; validate: (value: string) => string | undefined },
  ): Promise<string | undefined>;
}

/** Refuses an empty answer (as `orca answer` does). */
export function validateAnswer(value: string): string | undefined {
  return value.length === 0 ? "an answer cannot be empty" : undefined;
}

export function promptFor(question: Question, index: number, count: number): QuestionPrompt {
  const options = (question.options ?? []).map((o) => ({ label: o.label, description: o.description ?? "" }));
  const place = count > 1 ? ` (${index + 1}/${count})` : "";
  const kind = question.isSecret ? "secret" : options.length ? "pick" : "text";
  return {
    id: question.id,
    title: `${question.header || question.id}${place}`,
    prompt: question.question,
    kind,
    options,
    allowOther: !!question.isOther,
  };
}

export function promptsFor(pending: PendingQuestion): QuestionPrompt[] {
  return pending.questions.map((q, i) => promptFor(q, i, pending.questions.length));
}

/** Asks one question; `undefined` when the user dismissed it. An empty answer is asked again. */
export async function ask(prompt: QuestionPrompt, ui: AnswerUI): Promise<string | undefined> {
  for (;;) {
    let value: string | undefined;
    if (prompt.kind === "pick") {
      const items = prompt.allowOther
        ? [...prompt.options, { label: OTHER_LABEL, description: "type an answer" }]
        : prompt.options;
      value = await ui.pick(prompt, items);
      if (value === OTHER_LABEL && prompt.allowOther) {
        value = await ui.input(prompt, { password: false, validate: validateAnswer });
      } else if (value !== undefined && !prompt.options.some((o) => o.label === value)) {
        continue; // not one of the options: ask again
      }
    } else {
      value = await ui.input(prompt, { password: prompt.kind === "secret", validate: validateAnswer });
    }
    if (value === undefined) return undefined;
    if (validateAnswer(value) === undefined) return value;
  }
}

/** The `answer` params for `answers` (by question id), aimed at this very request so an answer
 * cannot land on a question that replaced it. */
export function answerParams(
  runId: string,
  pending: PendingQuestion,
  answers: Record<string, string>,
  answeredBy?: string,
): Params<"answer"> {
  const missing = pending.questions.filter((q) => !(q.id in answers)).map((q) => q.id);
  if (missing.length) throw new Error(`no answer to ${missing.join(", ")}`);
  const params: Params<"answer"> = {
    run_id: runId,
    request_id: pending.request_id,
    answers: Object.fromEntries(pending.questions.map((q) => [q.id, [answers[q.id]!]])),
  };
  if (answeredBy) params.answered_by = answeredBy;
  return params;
}

/** Asks every question of `pending` in turn; the `answer` params, or `undefined` when the user
 * dismissed one (nothing is sent then). */
export async function collectAnswer(
  runId: string,
  pending: PendingQuestion,
  ui: AnswerUI,
  answeredBy?: string,
): Promise<Params<"answer"> | undefined> {
  const answers: Record<string, string> = {};
  for (const prompt of promptsFor(pending)) {
    const value = await ask(prompt, ui);
    if (value === undefined) return undefined;
    answers[prompt.id] = value;
  }
  return answerParams(runId, pending, answers, answeredBy);
}
