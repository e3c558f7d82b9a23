// A stand-in for the `vscode` module (VS Code itself cannot run here): just the API surface
// extension.ts uses, recording what it shows and answering dialogs from a script.
import { readFileSync } from "node:fs";
import Module from "node:module";

export interface Script {
  info?: (message: string, items: string[]) => string | undefined;
  warning?: (message: string, items: string[]) => string | undefined;
  pick?: (items: unknown[], options: { title?: string }) => unknown;
  input?: (options: { title?: string; password?: boolean }) => string | undefined;
  open?: () => string | undefined;
}

export interface Channel {
  name: string;
  text: string;
}

export interface TreeProvider {
  getChildren(node?: unknown): unknown[];
  getTreeItem(node: unknown): { label: string; description?: string; contextValue?: string };
}

class EventEmitter<T> {
  private readonly listeners: Array<(value: T) => void> = [];
  readonly event = (listener: (value: T) => void) => {
    this.listeners.push(listener);
    return { dispose: () => undefined };
  };
  fire(value: T): void {
    for (const listener of this.listeners) listener(value);
  }
  dispose(): void {}
}

export function fakeVscode(settings: Record<string, unknown>, folder: string) {
  const script: Script = {};
  const shown = { info: [] as string[], errors: [] as string[] };
  const channels = new Map<string, Channel>();
  const commands = new Map<string, (...args: unknown[]) => Promise<unknown>>();
  const view: { message: string | undefined; provider?: TreeProvider } = { message: undefined };
  const api = {
    EventEmitter,
    TreeItem: class {
      constructor(
        readonly label: string,
        readonly collapsibleState: number,
      ) {}
    },
    ThemeIcon: class {
      constructor(readonly id: string) {}
    },
    TreeItemCollapsibleState: { None: 0, Collapsed: 1, Expanded: 2 },
    window: {
      createOutputChannel(name: string) {
        const channel = { name, text: "", append: (t: string) => void (channel.text += t) };
        channels.set(name, channel);
        return {
          ...channel,
          append: channel.append,
          appendLine: (t: string) => channel.append(t + "\n"),
          show() {},
          dispose() {},
        };
      },
      createTreeView(_id: string, { treeDataProvider }: { treeDataProvider: TreeProvider }) {
        view.provider = treeDataProvider;
        return Object.assign(view, { dispose() {} });
      },
      async showInformationMessage(message: string, ...items: string[]) {
        shown.info.push(message);
        return script.info?.(message, items);
      },
      async showWarningMessage(message: string, _options: unknown, ...items: string[]) {
        return script.warning?.(message, items);
      },
      async showErrorMessage(message: string) {
        shown.errors.push(message);
      },
      async showQuickPick(items: unknown[], options: { title?: string }) {
        return script.pick?.(items, options);
      },
      async showInputBox(options: { title?: string; password?: boolean }) {
        return script.input?.(options);
      },
      async showOpenDialog() {
        const path = script.open?.();
        return path ? [{ fsPath: path }] : undefined;
      },
    },
    workspace: {
      getConfiguration: () => ({ get: (key: string, fallback?: unknown) => settings[key] ?? fallback }),
      onDidChangeConfiguration: () => ({ dispose() {} }),
      workspaceFolders: [{ uri: { fsPath: folder } }],
      fs: { readFile: async (uri: { fsPath: string }) => readFileSync(uri.fsPath) },
    },
    commands: {
      registerCommand(name: string, handler: (...args: unknown[]) => Promise<unknown>) {
        commands.set(name, handler);
        return { dispose() {} };
      },
      executeCommand: async () => undefined,
    },
  };
  return { api, script, shown, channels, commands, view };
}

/** Makes `require("vscode")` return `api` from now on. */
export function installVscode(api: unknown): void {
  const loader = Module as unknown as { _load: (request: string, ...rest: unknown[]) => unknown };
  const original = loader._load;
  loader._load = function (request: string, ...rest: unknown[]) {
    return request === "vscode" ? api : original.call(this, request, ...rest);
  };
}
