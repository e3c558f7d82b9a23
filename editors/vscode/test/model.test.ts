// The tree model: given these events (and status snapshots), this tree.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { RunsModel } from "../src/model";
import type { EventRecord, RunInfo, SessionInfo, StatusResult } from "../src/protocol.generated";

let clock = 1_800_000_000;

function record(position: number, event: Record<string, unknown>): EventRecord {
  return {
    position,
    stream: `run-${event.run_id as string}`,
    version: position,
    recorded_at: ++clock,
    schema_version: 1,
    event,
  };
}

function fold(model: RunsModel, events: Array<Record<string, unknown>>, first = 1): void {
  events.forEach((event, i) => model.applyEvent(record(first + i, event)));
}

const runCreated = (run_id: string, extra: Record<string, unknown> = {}) => ({
  type: "run_created",
  run_id,
  title: `title of ${run_id}`,
  cwd: "/tmp",
  ...extra,
});
const sessionCreated = (run_id: string, n: number, extra: Record<string, unknown> = {}) => ({
  type: "session_created",
  run_id,
  session_id: `${run_id}.${n}`,
  agent: "asker",
  command: ["python3", "asker.py"],
  cwd: "/tmp",
  ...extra,
});
const question = {
  id: "runtime",
  header: "Runtime",
  question: "Which runtime?",
  options: [{ label: "python3.11", description: "CI" }],
  isOther: true,
};

describe("RunsModel", () => {
  it("follows a single run from created to waiting to completed", () => {
    const model = new RunsModel();
    fold(model, [
      runCreated("r1"),
      sessionCreated("r1", 1),
      { type: "session_started", run_id: "r1", session_id: "r1.1", pid: 42 },
      { type: "run_status_changed", run_id: "r1", status: "running" },
      {
        type: "output_appended",
        run_id: "r1",
        session_id: "r1.1",
        stream: "stdout",
        text: "planning\nstep two\n",
      },
      { type: "question_asked", run_id: "r1", session_id: "r1.1", request_id: "q1", questions: [question] },
      { type: "run_status_changed", run_id: "r1", status: "waiting_for_answer" },
    ]);
    const [root] = model.roots();
    assert.ok(root);
    assert.equal(model.describe(root)?.contextValue, "run.waiting");
    assert.match(model.describe(root)!.description, /^waiting for answer · asks: Which runtime\?/);
    const [session] = model.children(root);
    assert.deepEqual(session, { kind: "session", id: "session:r1.1", sessionId: "r1.1" });
    assert.equal(model.session("r1.1")?.last_output_line, "step two");
    assert.equal(model.describe(session!)?.contextValue, "session.waiting");
    assert.deepEqual(
      model.waitingQuestions().map((w) => [w.runId, w.pending.request_id, w.pending.questions[0]?.id]),
      [["r1", "q1", "runtime"]],
    );

    fold(
      model,
      [
        { type: "question_answered", run_id: "r1", session_id: "r1.1", request_id: "q1", answered_by: "me" },
        { type: "run_status_changed", run_id: "r1", status: "running" },
        {
          type: "session_terminated",
          run_id: "r1",
          session_id: "r1.1",
          status: "completed",
          reason: "done",
          summary: "planned",
        },
        { type: "run_status_changed", run_id: "r1", status: "completed" },
      ],
      8,
    );
    assert.deepEqual(model.waitingQuestions(), []);
    assert.equal(model.run("r1")?.status, "completed");
    assert.equal(model.describe(root)?.contextValue, "run.ended");
    assert.equal(model.describe(session!)?.description, "completed · worker · planned");
    assert.equal(model.position, 11);
  });

  it("shows a fan-out's workers and orchestrator with its progress", () => {
    const model = new RunsModel();
    fold(model, [
      runCreated("f", { kind: "fanout" }),
      sessionCreated("f", 1, { role: "worker" }),
      sessionCreated("f", 2, { role: "worker" }),
      { type: "session_terminated", run_id: "f", session_id: "f.1", status: "completed", reason: "done" },
    ]);
    const root = model.roots()[0]!;
    assert.match(model.describe(root)!.description, /1\/2 workers ended/);
    fold(
      model,
      [
        { type: "session_terminated", run_id: "f", session_id: "f.2", status: "failed", reason: "exit 1" },
        sessionCreated("f", 3, { role: "orchestrator", agent: "synthesizer" }),
        {
          type: "orchestration_finished",
          run_id: "f",
          debug_run_id: "f",
          session_id: "f.3",
          status: "completed",
          summary: "both agree",
          task_file: "/t.md",
        },
        { type: "run_status_changed", run_id: "f", status: "completed" },
      ],
      5,
    );
    assert.deepEqual(
      model.children(root).map((n) => n.id),
      ["session:f.1", "session:f.2", "session:f.3"],
    );
    assert.equal(model.run("f")?.orchestrator_session_id, "f.3");
    assert.equal(model.run("f")?.result, "both agree");
    assert.match(model.describe(root)!.description, /^completed · 2\/2 workers ended$/);
  });

  it("shows a plan's tasks with their sessions, and child runs under their parent", () => {
    const model = new RunsModel();
    const plan = {
      max_parallel: 2,
      plan: {
        title: "p",
        tasks: [
          { id: "a", prompt: "x" },
          { id: "b", prompt: "y", depends_on: ["a"] },
        ],
      },
    };
    fold(model, [
      runCreated("p", { kind: "plan", plan }),
      sessionCreated("p", 1, { role: "task", task_id: "a" }),
      {
        type: "task_status_changed",
        run_id: "p",
        task_id: "a",
        status: "in_progress",
        attempt: 1,
        session_id: "p.1",
      },
      { type: "task_status_changed", run_id: "p", task_id: "a", status: "done", summary: "did a" },
      runCreated("parent", { kind: "parent" }),
      runCreated("child", { parent_run_id: "parent" }),
    ]);
    assert.deepEqual(
      model.roots().map((n) => n.id),
      ["run:parent", "run:p"],
    );
    const planNode = model.roots()[1]!;
    const tasks = model.children(planNode);
    assert.deepEqual(
      tasks.map((n) => n.id),
      ["task:p/a", "task:p/b"],
    );
    assert.equal(model.describe(tasks[0]!)?.description, "done");
    assert.equal(model.describe(tasks[1]!)?.description, "pending");
    assert.deepEqual(
      model.children(tasks[0]!).map((n) => n.id),
      ["session:p.1"],
    );
    assert.match(model.describe(planNode)!.description, /1\/2 tasks done/);
    assert.deepEqual(
      model.children(model.roots()[0]!).map((n) => n.id),
      ["run:child"],
    );
  });

  it("takes a status snapshot, ignores events it holds and folds again newer ones seen before it", () => {
    const model = new RunsModel();
    fold(model, [runCreated("r1"), sessionCreated("r1", 1)]);
    // an event newer than the snapshot that is about to arrive
    model.applyEvent(
      record(7, { type: "run_status_changed", run_id: "r1", status: "failed", reason: "boom" }),
    );
    const run: RunInfo = {
      run_id: "r1",
      title: "from status",
      status: "running",
      cwd: "/tmp",
      created_at: 1,
      updated_at: 1,
      session_ids: ["r1.1"],
    };
    const session: SessionInfo = {
      session_id: "r1.1",
      run_id: "r1",
      agent: "asker",
      role: "worker",
      status: "running",
      command: [],
      cwd: "/tmp",
      created_at: 1,
    };
    const status: StatusResult = { runs: [run], sessions: [session], head_position: 6 };
    model.applyStatus(status);
    assert.equal(model.run("r1")?.title, "from status");
    assert.equal(model.run("r1")?.status, "failed");
    assert.equal(run.status, "running", "the snapshot given is not changed");
    model.applyEvent(record(5, { type: "run_status_changed", run_id: "r1", status: "running" }));
    assert.equal(model.run("r1")?.status, "failed", "an event the snapshot holds is not folded again");
    assert.equal(model.position, 7);
  });

  it("tells its listeners of each change, and ignores events of runs it does not know", () => {
    const model = new RunsModel();
    let changes = 0;
    const stop = model.onChange(() => changes++);
    fold(model, [{ type: "run_status_changed", run_id: "nobody", status: "running" }, runCreated("r")]);
    assert.equal(changes, 2);
    assert.deepEqual(
      model.roots().map((n) => n.id),
      ["run:r"],
    );
    stop();
    fold(model, [runCreated("s")], 3);
    assert.equal(changes, 2);
  });
});
