/**
 * The glue to VS Code, kept thin: the tree view draws `RunsModel`, notifications and commands
 * call the bridge, the answer flow runs on quick picks and input boxes, and each run's log goes
 * to an output channel. Everything with logic in it lives in bridge.ts, model.ts, answer.ts and
 * log.ts (tested without VS Code).
 */
import { userInfo } from "node:os";
import { dirname } from "node:path";
import * as vscode from "vscode";

import { type AnswerUI, collectAnswer } from "./answer";
import { BridgeClient, type DaemonNotification, OrcaError } from "./bridge";
import { LiveRuns } from "./live";
import { RunLog, loadRunLog } from "./log";
import { type OrcaNode, RunsModel, type WaitingQuestion } from "./model";
import type { EventRecord, PendingQuestion, Plan } from "./protocol.generated";

interface OpenLog {
  channel: vscode.OutputChannel;
  log: RunLog;
  /** Live records that came while the log was being read. */
  held: EventRecord[] | undefined;
}

let active: Orca | undefined;

export function activate(context: vscode.ExtensionContext): void {
  active = new Orca(context);
  active.start();
}

/** VS Code waits for this: the bridge closes its subscription and exits. */
export async function deactivate(): Promise<void> {
  await active?.dispose();
  active = undefined;
}

class Orca implements vscode.TreeDataProvider<OrcaNode> {
  private readonly model = new RunsModel();
  private readonly output = vscode.window.createOutputChannel("Orca");
  private readonly changed = new vscode.EventEmitter<OrcaNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly view: vscode.TreeView<OrcaNode>;
  private readonly logs = new Map<string, OpenLog>();
  private readonly notified = new Set<string>();
  private readonly bridge: BridgeClient;
  private readonly live: LiveRuns;
  private redraw: NodeJS.Timeout | undefined;

  constructor(private readonly context: vscode.ExtensionContext) {
    const config = vscode.workspace.getConfiguration("orca");
    this.bridge = new BridgeClient({
      executable: config.get<string>("executable") || "orca",
      home: config.get<string>("home") || undefined,
      startDaemon: config.get<boolean>("startDaemon", true),
    });
    this.view = vscode.window.createTreeView("orca.runs", { treeDataProvider: this });
    context.subscriptions.push(this.view, this.output, this.changed);
    this.model.onChange(() => this.scheduleRedraw());
    this.bridge.on("stderr", (line: string) => this.output.appendLine(line));
    this.bridge.on("spawnError", (e: Error) => this.unavailable(`cannot start orca bridge: ${e.message}`));
    this.bridge.on("exited", (code: number | null) =>
      this.output.appendLine(`orca bridge exited (status ${code})`),
    );
    this.live = new LiveRuns(
      this.bridge,
      this.model,
      (m) => this.unavailable(m),
      (e) => this.failed(e),
    );
    this.bridge.on("record", (record: EventRecord) => this.record(record));
    this.bridge.on("daemon", (note: DaemonNotification) => {
      if (note.state === "available") this.view.message = undefined;
    });
    const commands: Record<string, (node?: OrcaNode) => Promise<unknown>> = {
      "orca.refresh": () => this.refresh(),
      "orca.startRun": () => this.startRun(),
      "orca.startFanout": () => this.startFanout(),
      "orca.startPlan": () => this.startPlan(),
      "orca.answer": (node) => this.answer(node),
      "orca.cancel": (node) => this.cancel(node),
      "orca.showLog": (node) => this.showLog(node),
    };
    context.subscriptions.push(
      vscode.workspace.onDidChangeConfiguration((change) => {
        if (!change.affectsConfiguration("orca")) return;
        void vscode.window
          .showInformationMessage("Orca: the settings apply after a reload of the window", "Reload Window")
          .then((choice) => choice && vscode.commands.executeCommand("workbench.action.reloadWindow"));
      }),
    );
    for (const [name, handler] of Object.entries(commands)) {
      context.subscriptions.push(
        vscode.commands.registerCommand(name, (node?: OrcaNode) =>
          handler(node).catch((e) => this.failed(e)),
        ),
      );
    }
  }

  start(): void {
    this.bridge.start();
  }

  async dispose(): Promise<void> {
    await this.live.dispose();
    await this.bridge.dispose();
  }

  // --- the tree ---

  getChildren(node?: OrcaNode): OrcaNode[] {
    return node ? this.model.children(node) : this.model.roots();
  }

  getTreeItem(node: OrcaNode): vscode.TreeItem {
    const view = this.model.describe(node);
    const item = new vscode.TreeItem(
      view?.label ?? node.id,
      view?.collapsible ? vscode.TreeItemCollapsibleState.Collapsed : vscode.TreeItemCollapsibleState.None,
    );
    item.id = node.id;
    item.description = view?.description;
    item.tooltip = view?.tooltip;
    item.contextValue = view?.contextValue;
    item.iconPath = new vscode.ThemeIcon(view?.icon ?? "circle-outline");
    if (node.kind === "run") item.command = { command: "orca.showLog", title: "Show log", arguments: [node] };
    return item;
  }

  private scheduleRedraw(): void {
    if (this.redraw) return;
    this.redraw = setTimeout(() => {
      this.redraw = undefined;
      this.changed.fire(undefined);
      for (const waiting of this.model.waitingQuestions()) this.notify(waiting);
    }, 100);
  }

  // --- live state ---

  private async refresh(): Promise<void> {
    if (await this.live.refresh()) this.view.message = undefined;
  }

  private record(record: EventRecord): void {
    for (const open of this.logs.values()) {
      if (open.held) open.held.push(record);
      else open.channel.append(open.log.append(record));
    }
  }

  private unavailable(message: string): void {
    this.view.message = message;
    this.output.appendLine(message);
  }

  private notify(waiting: WaitingQuestion): void {
    const { pending, runId, runTitle } = waiting;
    if (this.notified.has(pending.request_id)) return;
    this.notified.add(pending.request_id);
    const question = pending.questions[0]?.question ?? "";
    void vscode.window
      .showInformationMessage(`Orca: ${runTitle} (${runId.slice(0, 12)}) asks: ${question}`, "Answer")
      .then((choice) => (choice ? this.answerRequest(runId, pending) : undefined))
      .then(undefined, (e) => this.failed(e));
  }

  // --- commands ---

  private cwd(): string | undefined {
    return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  }

  private async agentNames(): Promise<string[]> {
    const { agents } = await this.bridge.request("reload", { dry_run: true });
    return agents;
  }

  private async startRun(): Promise<void> {
    const cwd = this.cwd() ?? (await this.pickFolder());
    if (!cwd) return;
    const agent = await vscode.window.showQuickPick(await this.agentNames(), { title: "Orca: agent" });
    if (!agent) return;
    const prompt = await vscode.window.showInputBox({
      title: `Orca: prompt for ${agent}`,
      ignoreFocusOut: true,
    });
    if (!prompt) return;
    const started = await this.bridge.request("run", {
      cwd,
      agent,
      prompt,
      search_path: process.env.PATH ?? null,
    });
    vscode.window.showInformationMessage(`Orca: run ${started.run_id} started`);
  }

  private async startFanout(): Promise<void> {
    const cwd = this.cwd() ?? (await this.pickFolder());
    if (!cwd) return;
    const agents = await vscode.window.showQuickPick(await this.agentNames(), {
      title: "Orca: the fan-out's workers",
      canPickMany: true,
    });
    if (!agents?.length) return;
    const prompt = await vscode.window.showInputBox({
      title: "Orca: what should they debug?",
      ignoreFocusOut: true,
    });
    if (!prompt) return;
    const started = await this.bridge.request("debug", {
      cwd,
      agents,
      prompt,
      search_path: process.env.PATH ?? null,
    });
    vscode.window.showInformationMessage(
      `Orca: fan-out ${started.run_id} started (${agents.length} workers)`,
    );
  }

  private async startPlan(): Promise<void> {
    const [file] =
      (await vscode.window.showOpenDialog({ title: "Orca: a plan (JSON)", filters: { Plan: ["json"] } })) ??
      [];
    if (!file) return;
    const plan: unknown = JSON.parse(Buffer.from(await vscode.workspace.fs.readFile(file)).toString("utf8"));
    const cwd = this.cwd() ?? dirname(file.fsPath);
    const started = await this.bridge.request("plan", {
      cwd,
      plan: plan as Plan,
      search_path: process.env.PATH ?? null,
    });
    vscode.window.showInformationMessage(`Orca: plan ${started.run_id} started`);
  }

  private async answer(node?: OrcaNode): Promise<void> {
    const waiting = this.model.waitingQuestions();
    const runId = node && node.kind !== "session" ? node.runId : undefined;
    const sessionId = node?.kind === "session" ? node.sessionId : undefined;
    let choices = waiting.filter(
      (w) => (!runId || w.runId === runId) && (!sessionId || w.pending.session_id === sessionId),
    );
    if (choices.length > 1) {
      const picked = await vscode.window.showQuickPick(
        choices.map((w) => ({ label: w.pending.questions[0]?.question ?? "", description: w.runTitle, w })),
        { title: "Orca: which question?" },
      );
      choices = picked ? [picked.w] : [];
    }
    const chosen = choices[0];
    if (!chosen) {
      if (!waiting.length) vscode.window.showInformationMessage("Orca: no run is waiting for an answer");
      return;
    }
    await this.answerRequest(chosen.runId, chosen.pending);
  }

  private async answerRequest(runId: string, pending: PendingQuestion): Promise<void> {
    if (!this.model.waitingQuestions().some((w) => w.pending.request_id === pending.request_id)) {
      void vscode.window.showInformationMessage("Orca: that question was answered or withdrawn meanwhile");
      return;
    }
    const params = await collectAnswer(runId, pending, vscodeAnswerUI, `orca-vscode:${userInfo().username}`);
    if (!params) return;
    await this.bridge.request("answer", params);
  }

  private async cancel(node?: OrcaNode): Promise<void> {
    const target = node ?? (await this.pickRun("Orca: cancel which run?"));
    if (!target || target.kind === "task") return;
    const session = target.kind === "session" ? this.model.session(target.sessionId) : undefined;
    const runId = target.kind === "run" ? target.runId : session?.run_id;
    if (!runId) return;
    const what = session ? `session ${session.session_id}` : `run ${runId}`;
    const sure = await vscode.window.showWarningMessage(`Cancel ${what}?`, { modal: true }, "Cancel it");
    if (!sure) return;
    const params = session ? { run_id: runId, session_id: session.session_id } : { run_id: runId };
    const result = await this.bridge.request("cancel", { ...params, reason: "cancelled from VS Code" });
    vscode.window.showInformationMessage(
      `Orca: ${what} ${result.already_terminal ? "had already ended" : "cancelled"}`,
    );
  }

  private async showLog(node?: OrcaNode): Promise<void> {
    const target = node ?? (await this.pickRun("Orca: whose log?"));
    if (!target || target.kind !== "run") return;
    const open = this.logs.get(target.runId);
    if (open) {
      open.channel.show(true);
      return;
    }
    const log = new RunLog(target.runId);
    const channel = vscode.window.createOutputChannel(`Orca ${target.runId.slice(0, 12)}`);
    this.context.subscriptions.push(channel);
    const entry: OpenLog = { channel, log, held: [] };
    this.logs.set(target.runId, entry);
    channel.show(true);
    try {
      channel.append(await loadRunLog((p) => this.bridge.request("read", p), log));
    } finally {
      for (const record of entry.held ?? []) channel.append(log.append(record));
      entry.held = undefined;
    }
  }

  private async pickRun(title: string): Promise<OrcaNode | undefined> {
    const items = this.model
      .roots()
      .map((node) => ({ label: this.model.describe(node)?.label ?? node.id, node }));
    return (await vscode.window.showQuickPick(items, { title }))?.node;
  }

  private async pickFolder(): Promise<string | undefined> {
    const [folder] =
      (await vscode.window.showOpenDialog({ canSelectFolders: true, canSelectFiles: false })) ?? [];
    return folder?.fsPath;
  }

  private failed(error: unknown): void {
    const message =
      error instanceof OrcaError
        ? `Orca: ${error.method} refused (${error.orcaCode ?? error.code}): ${error.message}`
        : `Orca: ${error instanceof Error ? error.message : String(error)}`;
    void vscode.window.showErrorMessage(message);
  }
}

/** The answer flow on VS Code's quick pick and input box. */
const vscodeAnswerUI: AnswerUI = {
  async pick(prompt, items) {
    const picked = await vscode.window.showQuickPick(items, {
      title: prompt.title,
      placeHolder: prompt.prompt,
      ignoreFocusOut: true,
    });
    return picked?.label;
  },
  input(prompt, { password, validate }) {
    return Promise.resolve(
      vscode.window.showInputBox({
        title: prompt.title,
        prompt: prompt.prompt,
        password,
        ignoreFocusOut: true,
        validateInput: validate,
      }),
    );
  },
};
