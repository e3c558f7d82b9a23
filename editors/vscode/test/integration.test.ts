// The extension's logic against a real orcad through a real `orca bridge --stdio --start`:
// the model follows runs live, the answer flow answers questions (a secret too), cancel, errors
// with orcad's code, and a bridge that dies is restarted with no gap in the events.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { type AnswerUI, OTHER_LABEL } from "../src/answer";
import { collectAnswer } from "../src/answer";
import { BRIDGE_EXITED, type BridgeClient, type DaemonNotification, OrcaError } from "../src/bridge";
import { LiveRuns } from "../src/live";
import { RunLog, loadRunLog } from "../src/log";
import { RunsModel } from "../src/model";
import type { EventRecord } from "../src/protocol.generated";
import { EXAMPLES, TEST_AGENTS, alive, bridgeFor, makeHome, tearDown, until } from "./support";

/** A UI that answers with `replies` in turn and records the choices it was offered. */
function scripted(replies: string[]) {
  const offered: string[][] = [];
  const ui: AnswerUI = {
    async pick(_prompt, items) {
      offered.push(items.map((i) => i.label));
      return replies.shift();
    },
    async input(_prompt, { password }) {
      offered.push([password ? "(password)" : "(text)"]);
      return replies.shift();
    },
  };
  return { ui, offered };
}

describe("through a real orca bridge and orcad", () => {
  let home: string;
  let bridge: BridgeClient;
  let live: LiveRuns;
  const model = new RunsModel();
  const positions: number[] = [];

  const runLog = (runId: string) => loadRunLog((p) => bridge.request("read", p), new RunLog(runId));
  const ended = (runId: string) =>
    ["completed", "failed", "cancelled"].includes(model.run(runId)?.status ?? "");

  before(async () => {
    home = makeHome();
    bridge = bridgeFor(home);
    bridge.on("record", (record: EventRecord) => positions.push(record.position));
    const trouble: string[] = [];
    bridge.on("spawnError", (error: Error) =>
      trouble.push(`cannot run orca (is it on PATH?): ${error.message}`),
    );
    live = new LiveRuns(bridge, model, (message) => trouble.push(message));
    bridge.start();
    assert.equal(await live.refresh(), true, `orca bridge does not answer: ${trouble.join("; ")}`);
  });

  after(async () => {
    await live.dispose();
    await tearDown(bridge, home);
  });

  it("answers a question through the answer flow; the model follows the run to completed", async () => {
    const { run_id } = await bridge.request("run", {
      cwd: EXAMPLES,
      agent: "asker",
      prompt: "fix the parser",
    });
    const waiting = await until(
      () => model.waitingQuestions().find((w) => w.runId === run_id),
      "the question",
    );
    assert.equal(model.run(run_id)?.status, "waiting_for_answer");
    assert.equal(waiting.pending.questions[0]?.question, "Which runtime should the fix target?");

    const { ui, offered } = scripted(["python3.13"]);
    const params = await collectAnswer(run_id, waiting.pending, ui, "orca-vscode:test");
    assert.deepEqual(offered, [["python3.11", "python3.13", OTHER_LABEL]]);
    const answered = await bridge.request("answer", params!);
    assert.equal(answered.request_id, waiting.pending.request_id);

    await until(() => model.run(run_id)?.status === "completed", "the run to complete");
    assert.deepEqual(model.waitingQuestions(), []);
    const [session] = model.children({ kind: "run", id: `run:${run_id}`, runId: run_id });
    assert.equal(session?.kind, "session");
    assert.equal(model.session(answered.session_id)?.summary, "planned for python3.13");
    assert.equal(
      await runLog(run_id),
      "planning: fix the parser\n" +
        "── asks: [runtime] Which runtime should the fix target?\n" +
        "── answered by orca-vscode:test\n" +
        "targeting python3.13\n" +
        `── session ${answered.session_id} completed: planned for python3.13\n` +
        "── run completed: the agent reported done\n",
    );
  });

  it("answers a secret in a password input: the agent gets it, the log never holds it", async () => {
    const secret = "hunter2-not-for-logs";
    const script = {
      steps: [
        {
          ask: [
            { id: "token", header: "Token", question: "The deploy token?", isSecret: true },
            { id: "env", question: "Which environment?", options: [{ label: "staging" }, { label: "prod" }] },
          ],
        },
        { result: { outcome: "done", summary: "deployed" } },
      ],
    };
    const { run_id } = await bridge.request("run", {
      cwd: EXAMPLES,
      command: ["python3", join(TEST_AGENTS, "q_ask.py"), JSON.stringify(script)],
      prompt: "deploy",
    });
    const waiting = await until(
      () => model.waitingQuestions().find((w) => w.runId === run_id),
      "the questions",
    );
    const { ui, offered } = scripted([secret, "prod"]);
    await bridge.request("answer", (await collectAnswer(run_id, waiting.pending, ui))!);
    assert.deepEqual(offered, [["(password)"], ["staging", "prod"]]);

    await until(() => model.run(run_id)?.status === "completed", "the run to complete");
    const log = await runLog(run_id);
    const digest = createHash("sha256").update(secret).digest("hex");
    assert.match(
      log,
      new RegExp(`"token": \\{"answers": \\["sha256:${digest}"\\]`),
      "the agent got the secret",
    );
    assert.match(log, /"env": \{"answers": \["prod"\]/);
    assert.match(
      log,
      /── answered by orca-bridge:/,
      "the bridge names who answered when the client does not",
    );
    const everything = await bridge.request("read", { after: 0, limit: 10000 });
    assert.ok(!JSON.stringify(everything).includes(secret), "the secret is in no event");
  });

  it("follows a fan-out to completed: each worker, the orchestrator, the synthesis", async () => {
    const started = await bridge.request("debug", {
      cwd: EXAMPLES,
      agents: ["reviewer", "tester", "reviewer"],
      prompt: "why does the parser test fail?",
      title: "why",
    });
    const runNode = { kind: "run" as const, id: `run:${started.run_id}`, runId: started.run_id };
    await until(() => ended(started.run_id), "the fan-out to end");
    const run = model.run(started.run_id)!;
    assert.equal(run.status, "completed");
    assert.equal(run.kind, "fanout");
    const sessions = model
      .children(runNode)
      .map((n) => (n.kind === "session" ? model.session(n.sessionId) : undefined));
    assert.deepEqual(
      sessions.map((s) => [s?.role, s?.agent, s?.status]),
      [
        ["worker", "reviewer", "completed"],
        ["worker", "tester", "failed"],
        ["worker", "reviewer", "completed"],
        ["orchestrator", "synthesizer", "completed"],
      ],
    );
    assert.equal(run.orchestrator_session_id, sessions[3]?.session_id);
    assert.ok(run.task_file, "the synthesis' file is known");
    assert.equal(model.describe(runNode)?.description, "completed · 3/3 workers ended");
  });

  it("cancels a run", async () => {
    const { run_id } = await bridge.request("run", { cwd: EXAMPLES, agent: "long", prompt: "work" });
    await until(() => model.run(run_id)?.status === "running", "the run to run");
    const result = await bridge.request("cancel", { run_id, reason: "cancelled from VS Code" });
    assert.equal(result.already_terminal, false);
    await until(() => model.run(run_id)?.status === "cancelled", "the run to be cancelled");
    assert.equal(model.run(run_id)?.reason, "cancelled from VS Code");
    assert.equal(
      model.describe({ kind: "run", id: `run:${run_id}`, runId: run_id })?.contextValue,
      "run.ended",
    );
  });

  it("a request orcad refuses fails with orcad's code", async () => {
    const refused = (orcaCode: string) => (error: unknown) => {
      assert.ok(error instanceof OrcaError);
      assert.equal(error.code, -32000);
      assert.equal(error.orcaCode, orcaCode);
      return true;
    };
    await assert.rejects(bridge.request("cancel", { run_id: "nosuchrun" }), refused("not_found"));
    const done = model
      .roots()
      .map((n) => (n.kind === "run" ? model.run(n.runId) : undefined))
      .find((r) => r?.status === "completed");
    await assert.rejects(
      bridge.request("answer", { run_id: done!.run_id, text: "late" }),
      refused("invalid_state"),
    );
  });

  it("restarts a bridge that died; requests cut short say so; the events go on with no gap", async () => {
    const first = bridge.pid!;
    const cut = bridge.request("status", {});
    process.kill(first, "SIGKILL");
    await cut.then(
      () => undefined, // it may have been answered first
      (error: unknown) =>
        assert.ok(
          error instanceof OrcaError && error.code === BRIDGE_EXITED && error.orcaCode === "bridge_exited",
        ),
    );
    await until(() => !alive(first) && bridge.pid !== undefined && bridge.pid !== first, "a new bridge");
    const { run_id } = await bridge.request("run", {
      cwd: EXAMPLES,
      agent: "reviewer",
      prompt: "after the restart",
    });
    await until(() => model.run(run_id)?.status === "completed", "the run after the restart to complete");

    assert.ok(positions.length > 0);
    assert.deepEqual(
      positions,
      positions.map((_, i) => positions[0]! + i),
      "every position once, in order",
    );
    assert.equal(model.position, positions[positions.length - 1]);
  });

  it("stays live across a restart of orcad, and says when orcad went and came back", async () => {
    const notes: DaemonNotification[] = [];
    const listener = (note: DaemonNotification) => notes.push(note);
    bridge.on("daemon", listener);
    try {
      const before = await bridge.request("hello", {});
      await bridge.request("shutdown", {});
      await until(() => !alive(before.pid), "orcad to stop");
      await until(() => notes.find((n) => n.state === "unavailable"), "the bridge to say orcad is gone");
      execFileSync("orca", ["daemon", "start"], {
        env: { ...process.env, ORCA_HOME: home },
        stdio: "ignore",
      });
      const back = await until(
        () => notes.find((n) => n.state === "available"),
        "the bridge to say orcad is back",
      );
      assert.deepEqual(
        notes.map((n) => n.state),
        ["unavailable", "available"],
      );
      assert.notEqual(back.state === "available" && back.instance, before.instance);
      const { run_id } = await bridge.request("run", {
        cwd: EXAMPLES,
        agent: "reviewer",
        prompt: "after orcad's restart",
      });
      await until(
        () => model.run(run_id)?.status === "completed",
        "the run after orcad's restart to complete",
      );
    } finally {
      bridge.off("daemon", listener);
    }
  });

  it("has, folded from the events, what a fresh status says", async () => {
    const fresh = new RunsModel();
    fresh.applyStatus(await bridge.request("status", {}));
    const shape = (m: RunsModel) =>
      m.roots().map((node) => {
        const run = node.kind === "run" ? m.run(node.runId) : undefined;
        const children = m
          .children(node)
          .map((c) => (c.kind === "session" ? m.session(c.sessionId)?.status : c.id));
        return [run?.run_id, run?.status, run?.kind, children, m.describe(node)?.description];
      });
    assert.deepEqual(shape(model), shape(fresh));
    assert.equal(fresh.roots().length, 6);
  });
});

describe("without orcad", () => {
  it("a bridge not allowed to start orcad fails requests with daemon_unavailable", async () => {
    const home = makeHome();
    const bridge = bridgeFor(home, { startDaemon: false });
    const told: string[] = [];
    const live = new LiveRuns(bridge, new RunsModel(), (message) => told.push(message));
    try {
      bridge.start();
      await assert.rejects(bridge.request("status", {}), (error: unknown) => {
        assert.ok(error instanceof OrcaError);
        assert.equal(error.code, -32001);
        assert.equal(error.orcaCode, "daemon_unavailable");
        assert.match(error.message, /orca daemon start/);
        return true;
      });
      assert.equal(await live.refresh(), false);
      assert.match(told.at(-1) ?? "", /orca daemon start/);
    } finally {
      await live.dispose();
      await bridge.dispose();
      rmSync(home, { recursive: true, force: true });
    }
  });
});
