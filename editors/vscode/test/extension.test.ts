// extension.ts, the glue, on a stand-in `vscode` module against a real orcad through a real
// `orca bridge`: the tree, a notification answered with a quick pick, a run's log in its output
// channel, cancel, and a refused request shown as an error.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { type TreeProvider, fakeVscode, installVscode } from "./fake_vscode";
import { EXAMPLES, makeHome, stopDaemon, until } from "./support";

describe("the extension on a stand-in vscode", () => {
  const home = makeHome();
  const vscode = fakeVscode({ executable: "orca", home, startDaemon: true }, EXAMPLES);
  let extension: typeof import("../src/extension");
  let tree: TreeProvider;

  /** The top-level tree items, as the view would show them. */
  const items = () => tree.getChildren().map((node) => ({ node, ...tree.getTreeItem(node) }));
  const item = (runId: string) => items().find((i) => i.label.startsWith(runId.slice(0, 12)));
  const command = (name: string, ...args: unknown[]) => vscode.commands.get(name)!(...args);
  const startedRun = () => /run (\w+) started/.exec(vscode.shown.info.at(-1) ?? "")?.[1];

  before(async () => {
    installVscode(vscode.api);
    extension = require("../src/extension") as typeof import("../src/extension");
    extension.activate({ subscriptions: [] } as never);
    tree = vscode.view.provider!;
    assert.deepEqual([...vscode.commands.keys()].sort(), [
      "orca.answer",
      "orca.cancel",
      "orca.refresh",
      "orca.showLog",
      "orca.startFanout",
      "orca.startPlan",
      "orca.startRun",
    ]);
    await command("orca.refresh");
  });

  after(async () => {
    await extension.deactivate();
    stopDaemon(home);
  });

  it("starts a run from the palette, notifies its question and answers it with a quick pick", async () => {
    vscode.script.pick = (choices) => (choices.includes("asker") ? "asker" : undefined);
    vscode.script.input = () => "fix the parser";
    vscode.script.info = (message, buttons) => (message.includes(" asks: ") ? buttons[0] : undefined);
    await command("orca.startRun");
    const runId = startedRun()!;
    vscode.script.pick = (choices) =>
      (choices as Array<{ label: string }>).find((c) => c.label === "python3.11");

    await until(() => item(runId)?.description?.startsWith("completed"), "the run to complete in the tree");
    assert.ok(vscode.shown.info.some((m) => m.includes("asks: Which runtime should the fix target?")));
    assert.equal(item(runId)?.contextValue, "run.ended");

    await command("orca.showLog", item(runId)!.node);
    const log = vscode.channels.get(`Orca ${runId.slice(0, 12)}`)!;
    assert.match(log.text, /── answered by orca-vscode:\S+\ntargeting python3\.11\n/);
  });

  it("starts a fan-out and a plan from the palette and shows them to completed", async () => {
    vscode.script.pick = (_choices, options) =>
      options.title?.includes("workers") ? ["reviewer", "tester"] : undefined;
    vscode.script.input = () => "why does it fail?";
    await command("orca.startFanout");
    const fanout = /fan-out (\w+) started \(2 workers\)/.exec(vscode.shown.info.at(-1) ?? "")?.[1];
    assert.ok(fanout, vscode.shown.info.at(-1));

    const planFile = join(home, "plan.json");
    const task = (id: string, depends_on: string[]) => ({
      id,
      prompt: `do ${id}`,
      agent: "reviewer",
      depends_on,
    });
    writeFileSync(planFile, JSON.stringify({ title: "two steps", tasks: [task("a", []), task("b", ["a"])] }));
    vscode.script.open = () => planFile;
    await command("orca.startPlan");
    const plan = /plan (\w+) started/.exec(vscode.shown.info.at(-1) ?? "")?.[1];
    assert.ok(plan, vscode.shown.info.at(-1));

    await until(
      () => item(fanout)?.description === "completed · 2/2 workers ended",
      "the fan-out to complete",
    );
    await until(() => item(plan)?.description === "completed · 2/2 tasks done", "the plan to complete");
    const tasks = tree.getChildren(item(plan)!.node).map((node) => tree.getTreeItem(node));
    assert.deepEqual(
      tasks.map((t) => [t.label, t.description]),
      [
        ["a", "done"],
        ["b", "done"],
      ],
    );
    const workers = tree.getChildren(item(fanout)!.node).map((node) => tree.getTreeItem(node).description);
    assert.deepEqual(
      workers.map((d) => d?.split(" · ").slice(0, 2).join(" · ")),
      ["completed · worker", "failed · worker", "completed · orchestrator"],
    );
  });

  it("cancels a run from its tree item, after asking", async () => {
    vscode.script.pick = (choices) => (choices.includes("long") ? "long" : undefined);
    vscode.script.input = () => "work for long";
    await command("orca.startRun");
    const runId = startedRun()!;
    await until(() => item(runId)?.description?.startsWith("running"), "the run to run");
    let asked = "";
    vscode.script.warning = (message, buttons) => ((asked = message), buttons[0]);
    await command("orca.cancel", item(runId)!.node);
    assert.equal(asked, `Cancel run ${runId}?`);
    await until(() => item(runId)?.description?.startsWith("cancelled"), "the run to be cancelled");
  });

  it("shows a refused request as an error with orcad's code", async () => {
    vscode.script.warning = (_message, buttons) => buttons[0];
    await command("orca.cancel", { kind: "run", id: "run:nosuchrun", runId: "nosuchrun" });
    assert.match(vscode.shown.errors.at(-1) ?? "", /^Orca: cancel refused \(not_found\): /);
  });
});
