// What the integration tests share: a private ORCA_HOME with the example agents configured, a
// real `orca bridge --stdio --start` (which starts a real orcad), and waiting for a condition.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

import { BridgeClient, type BridgeOptions } from "../src/bridge";

/** The repository's root (this file runs from editors/vscode/out/test). */
export const REPO = resolve(__dirname, "..", "..", "..", "..");
export const EXAMPLES = join(REPO, "examples", "agents");
export const TEST_AGENTS = join(REPO, "tests", "agents");

/** A fresh home under /tmp (socket paths must stay short) with the example agents. */
export function makeHome(): string {
  const home = mkdtempSync("/tmp/orca-vsc.");
  const agent = (name: string, file: string) =>
    `[agents.${name}]\ncommand = ["python3", ${JSON.stringify(join(EXAMPLES, file))}]\n`;
  writeFileSync(
    join(home, "config.toml"),
    agent("asker", "asker.py") +
      agent("reviewer", "reviewer.py") +
      agent("tester", "failing.py") +
      agent("long", "long_task.py"),
  );
  return home;
}

export function bridgeFor(home: string, options: Partial<BridgeOptions> = {}): BridgeClient {
  const bridge = new BridgeClient({
    executable: "orca",
    home,
    startDaemon: true,
    restartDelayMs: 100,
    ...options,
  });
  bridge.on("stderr", (line: string) => process.stderr.write(`[bridge] ${line}\n`));
  return bridge;
}

/** Closes the bridge, then stops orcad (ending its sessions) and removes the home. (The
 * bridge first: an orcad it started is its child, which it does not reap; see the report.) */
export async function tearDown(bridge: BridgeClient, home: string): Promise<void> {
  await bridge.dispose();
  stopDaemon(home);
}

/** `orca daemon stop --cancel-sessions --force` (waits until orcad is gone), then removes the home. */
export function stopDaemon(home: string): void {
  try {
    execFileSync("orca", ["daemon", "stop", "--cancel-sessions", "--force"], {
      env: { ...process.env, ORCA_HOME: home },
      encoding: "utf8",
      stdio: ["ignore", "ignore", "pipe"],
    });
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls `condition` until it holds; fails naming `what` if it never does (a bound against
 * hanging, not a timing assertion). */
export async function until<T>(
  condition: () => T | undefined | false,
  what: string,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
