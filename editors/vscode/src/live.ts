/**
 * Keeps a RunsModel live from a BridgeClient: a `status` snapshot, then every event from its
 * head on; a new snapshot whenever the bridge (re)starts or orcad is back. No vscode import.
 */
import { type BridgeClient, type DaemonNotification, type Follow, OrcaError } from "./bridge";
import type { RunsModel } from "./model";
import type { EventRecord } from "./protocol.generated";

export class LiveRuns {
  private follow: Follow | undefined;
  private following: Promise<Follow> | undefined;
  private readonly detach: Array<() => void> = [];

  /** `onUnavailable` is told why orcad cannot be reached; `onError` of any other failure. */
  constructor(
    readonly bridge: BridgeClient,
    readonly model: RunsModel,
    private readonly onUnavailable: (message: string) => void = () => undefined,
    private readonly onError: (error: unknown) => void = () => undefined,
  ) {
    const on = <A extends unknown[]>(name: string, listener: (...args: A) => void) => {
      bridge.on(name, listener as (...args: unknown[]) => void);
      this.detach.push(() => bridge.off(name, listener as (...args: unknown[]) => void));
    };
    on("record", (record: EventRecord) => model.applyEvent(record));
    on("started", () => void this.refresh().catch(onError));
    on("daemon", (note: DaemonNotification) => {
      if (note.state === "unavailable") onUnavailable(note.message);
      else void this.refresh().catch(onError);
    });
  }

  /** A fresh snapshot (and, the first time, the subscription from its head). Resolves false
   * when orcad or the bridge could not be reached (`onUnavailable` was told why). */
  async refresh(): Promise<boolean> {
    let status;
    try {
      status = await this.bridge.request("status", {});
    } catch (error) {
      if (!(error instanceof OrcaError)) throw error;
      if (error.orcaCode === "daemon_unavailable" || error.orcaCode === "bridge_exited") {
        this.onUnavailable(error.message);
        return false;
      }
      throw error;
    }
    this.model.applyStatus(status);
    if (!this.following) {
      this.following = this.bridge.follow(status.head_position);
      this.following.then(
        (follow) => (this.follow = follow),
        () => (this.following = undefined),
      );
    }
    await this.following;
    return true;
  }

  /** Stops following and listening. */
  async dispose(): Promise<void> {
    for (const detach of this.detach.splice(0)) detach();
    if (this.follow) await this.bridge.unfollow(this.follow);
  }
}
