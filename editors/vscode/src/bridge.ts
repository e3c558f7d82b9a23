/**
 * The client of `orca bridge --stdio`: spawns it, speaks JSON-RPC 2.0 in lines, pairs replies
 * by id, turns errors into `OrcaError`s that carry orcad's code, and restarts the bridge when
 * it dies. `follow` is a subscription that survives a bridge restart with no gap and no
 * duplicate (the bridge itself survives orcad's restarts; see docs/protocol.md).
 */
import { ChildProcess, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { createInterface } from "node:readline";

import type { EventRecord, OrcaMethod, OrcaMethods } from "./protocol.generated";

export type Params<M extends OrcaMethod> = OrcaMethods[M]["params"];
export type Result<M extends OrcaMethod> = OrcaMethods[M]["result"];

/** An event notification: an EventRecord with the bridge's subscription id. */
export interface EventNotification extends EventRecord {
  subscription: string;
}

/** A `daemon` notification: orcad became unreachable, or is back. */
export type DaemonNotification =
  { state: "unavailable"; message: string } | { state: "available"; instance: string; restarted: boolean };

/** Codes of errors the client raises itself (not from the bridge). */
export const BRIDGE_EXITED = -32099;

/** A request that failed: `code` is JSON-RPC's, `orcaCode` orcad's (e.g. `not_found`,
 * `daemon_unavailable`), or `bridge_exited` when the bridge died before it answered. */
export class OrcaError extends Error {
  constructor(
    message: string,
    readonly code: number,
    readonly orcaCode: string | undefined,
    readonly method: string,
  ) {
    super(message);
    this.name = "OrcaError";
  }
}

export interface BridgeOptions {
  /** The `orca` executable (a name on PATH or a path). */
  executable: string;
  /** ORCA_HOME for the bridge; undefined: the environment's. */
  home?: string;
  /** Pass `--start`: start orcad when it is not running. */
  startDaemon?: boolean;
  /** The environment (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** First delay before restarting a bridge that died; doubles up to `maxRestartDelayMs`. */
  restartDelayMs?: number;
  maxRestartDelayMs?: number;
}

interface Pending {
  method: string;
  resolve: (result: unknown) => void;
  reject: (error: OrcaError) => void;
}

interface RpcMessage {
  jsonrpc?: string;
  id?: number | string | null;
  method?: string;
  params?: unknown;
  result?: unknown;
  error?: { code: number; message: string; data?: { orca_code?: string } };
}

/** A subscription of this client: its id is stable across bridge restarts, and it delivers
 * each position once, in order. */
export interface Follow {
  readonly id: number;
  readonly runId: string | undefined;
  /** The last position delivered. */
  readonly position: number;
}

interface FollowState {
  id: number;
  runId: string | undefined;
  position: number;
  bridgeId: string | undefined;
}

/** Events: `event` (EventNotification, every one), `record` (EventRecord, Follow: per follow,
 * deduplicated), `daemon` (DaemonNotification), `stderr` (a line the bridge wrote),
 * `started` (pid), `exited` (code, signal), `spawnError` (Error). */
export class BridgeClient extends EventEmitter {
  private process: ChildProcess | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly follows = new Map<number, FollowState>();
  private readonly earlyEvents: EventNotification[] = [];
  private subscribing = 0;
  private nextFollowId = 1;
  private disposed = false;
  private restartDelay: number;
  private restartTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: BridgeOptions) {
    super();
    this.restartDelay = options.restartDelayMs ?? 500;
  }

  /** Spawns the bridge (again, if it died). */
  start(): void {
    if (this.disposed || this.process) return;
    const args = ["bridge", "--stdio", ...(this.options.startDaemon ? ["--start"] : [])];
    const env = { ...(this.options.env ?? process.env) };
    if (this.options.home) env.ORCA_HOME = this.options.home;
    const child = spawn(this.options.executable, args, { env, stdio: ["pipe", "pipe", "pipe"] });
    this.process = child;
    child.stdin.on("error", () => undefined); // a dead bridge: 'exit' handles it
    createInterface({ input: child.stdout, crlfDelay: Infinity }).on("line", (line) => this.received(line));
    createInterface({ input: child.stderr, crlfDelay: Infinity }).on("line", (line) =>
      this.emit("stderr", line),
    );
    child.on("error", (error) => {
      this.emit("spawnError", error);
      this.exited(child, null, null);
    });
    // 'close' comes once its stdout is read to the end (no reply left unread); 'exit' alone
    // too, should a process it started keep its stdout or stderr open
    let fallback: NodeJS.Timeout | undefined;
    child.on("exit", (code, signal) => {
      fallback = setTimeout(() => this.exited(child, code, signal), 2000);
    });
    child.on("close", (code, signal) => {
      clearTimeout(fallback);
      this.exited(child, code, signal);
    });
    if (child.pid !== undefined) {
      this.emit("started", child.pid);
      void this.resubscribeAll();
    }
  }

  /** The pid of the running bridge, if any. */
  get pid(): number | undefined {
    return this.process?.pid;
  }

  /** Sends one request; resolves with its result or rejects with an OrcaError. */
  request<M extends OrcaMethod>(method: M, params: Params<M>): Promise<Result<M>> {
    const child = this.process;
    if (!child || !child.stdin || child.stdin.destroyed) {
      return Promise.reject(
        new OrcaError("orca bridge is not running", BRIDGE_EXITED, "bridge_exited", method),
      );
    }
    const id = this.nextId++;
    const line = JSON.stringify({ jsonrpc: "2.0", id, method, params }) + "\n";
    return new Promise<Result<M>>((resolve, reject) => {
      this.pending.set(id, { method, resolve: resolve as (r: unknown) => void, reject });
      child.stdin!.write(line);
    });
  }

  /** Follows the log from after `after` (for one run, or all): `record` events, each position
   * once, resubscribing from the last one delivered whenever the bridge restarts. */
  async follow(after = 0, runId?: string): Promise<Follow> {
    const state: FollowState = { id: this.nextFollowId++, runId, position: after, bridgeId: undefined };
    this.follows.set(state.id, state);
    try {
      await this.subscribe(state);
    } catch (error) {
      this.follows.delete(state.id);
      throw error;
    }
    return this.view(state);
  }

  /** Stops following. */
  async unfollow(follow: Follow): Promise<void> {
    const state = this.follows.get(follow.id);
    this.follows.delete(follow.id);
    if (state?.bridgeId !== undefined) {
      await this.request("unsubscribe", { subscription: state.bridgeId }).catch(() => undefined);
    }
  }

  /** Closes the bridge's stdin (it unsubscribes and exits) and waits for it to exit. */
  async dispose(): Promise<void> {
    this.disposed = true;
    clearTimeout(this.restartTimer);
    const child = this.process;
    if (!child) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.stdin?.end();
    const timer = setTimeout(() => child.kill("SIGTERM"), 5000);
    await exited;
    clearTimeout(timer);
  }

  private view(state: FollowState): Follow {
    return {
      id: state.id,
      runId: state.runId,
      get position() {
        return state.position;
      },
    };
  }

  private async subscribe(state: FollowState): Promise<void> {
    this.subscribing++;
    try {
      const params =
        state.runId === undefined
          ? { after: state.position }
          : { after: state.position, run_id: state.runId };
      const { subscription } = await this.request("subscribe", params);
      state.bridgeId = subscription;
    } finally {
      this.subscribing--;
    }
    const early = this.earlyEvents.splice(0);
    for (const note of early) this.deliver(note);
  }

  private async resubscribeAll(): Promise<void> {
    for (const state of this.follows.values()) {
      state.bridgeId = undefined;
      try {
        await this.subscribe(state);
      } catch {
        // the bridge died again: the next start resubscribes
      }
    }
  }

  private received(line: string): void {
    let message: RpcMessage;
    try {
      message = JSON.parse(line) as RpcMessage;
    } catch {
      this.emit("stderr", `orca bridge wrote a line that is not JSON: ${line.slice(0, 200)}`);
      return;
    }
    if (message.method === "event") {
      const note = message.params as EventNotification;
      this.emit("event", note);
      this.deliver(note);
    } else if (message.method === "daemon") {
      this.emit("daemon", message.params as DaemonNotification);
    } else if (typeof message.id === "number") {
      this.settle(message.id, message);
    }
  }

  private settle(id: number, message: RpcMessage): void {
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    if (message.error) {
      const { code, message: text, data } = message.error;
      pending.reject(new OrcaError(text, code, data?.orca_code, pending.method));
    } else {
      this.restartDelay = this.options.restartDelayMs ?? 500;
      pending.resolve(message.result);
    }
  }

  private deliver(note: EventNotification): void {
    const state = [...this.follows.values()].find((f) => f.bridgeId === note.subscription);
    if (!state) {
      // its subscribe reply may still be on its way: keep it for a moment (bounded)
      if (this.subscribing > 0 && this.earlyEvents.length < 100_000) this.earlyEvents.push(note);
      return;
    }
    if (note.position <= state.position) return;
    state.position = note.position;
    const { subscription: _ignored, ...record } = note;
    this.emit("record", record as EventRecord, this.view(state));
  }

  private exited(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.process !== child) return;
    this.process = undefined;
    for (const [id, pending] of this.pending) {
      this.pending.delete(id);
      pending.reject(
        new OrcaError(
          "orca bridge exited before it answered",
          BRIDGE_EXITED,
          "bridge_exited",
          pending.method,
        ),
      );
    }
    this.emit("exited", code, signal);
    if (this.disposed) return;
    const delay = this.restartDelay;
    this.restartDelay = Math.min(delay * 2, this.options.maxRestartDelayMs ?? 30_000);
    this.restartTimer = setTimeout(() => this.start(), delay);
  }
}
