/**
 * The tree of runs the extension shows: a `status` snapshot with the log's events folded on
 * top, live. Pure (no vscode, no I/O): the extension feeds it and draws `describe(node)`.
 */
import type {
  EventRecord,
  PendingQuestion,
  RunInfo,
  SessionInfo,
  StatusResult,
  TaskInfo,
} from "./protocol.generated";

export type RunStatus = RunInfo["status"];
export type SessionStatus = SessionInfo["status"];

const TERMINAL_RUN: ReadonlySet<string> = new Set(["completed", "failed", "cancelled"]);
const TERMINAL_TASK: ReadonlySet<string> = new Set(["done", "failed", "cancelled"]);
/** Events kept since the last snapshot, to fold again over a newer one. */
const REPLAY_LIMIT = 20_000;

export type OrcaNode =
  | { kind: "run"; id: string; runId: string }
  | { kind: "task"; id: string; runId: string; taskId: string }
  | { kind: "session"; id: string; sessionId: string };

/** What the tree shows for a node (the extension maps it onto a TreeItem). */
export interface NodeView {
  label: string;
  description: string;
  tooltip: string;
  /** `run.live`, `run.waiting`, `run.ended`, `session.live`, `session.waiting`, `session.ended`, `task`. */
  contextValue: string;
  /** A codicon name. */
  icon: string;
  collapsible: boolean;
}

/** A question request waiting for an answer, with its run. */
export interface WaitingQuestion {
  runId: string;
  runTitle: string;
  pending: PendingQuestion;
}

// The event shapes the model folds (a subset of protocol.generated's, read loosely).
type Ev = { type: string; run_id: string; [key: string]: unknown };

export class RunsModel {
  private runs = new Map<string, RunInfo>();
  private sessions = new Map<string, SessionInfo>();
  private head = 0;
  private sinceSnapshot: EventRecord[] = [];
  private readonly listeners = new Set<() => void>();

  /** The last log position folded in. */
  get position(): number {
    return this.head;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Replaces everything with a `status` snapshot, then folds again the events already seen
   * that are newer than it. */
  applyStatus(status: StatusResult): void {
    this.runs = new Map(status.runs.map((r) => [r.run_id, structuredClone(r)]));
    this.sessions = new Map(status.sessions.map((s) => [s.session_id, structuredClone(s)]));
    const newer = this.sinceSnapshot.filter((r) => r.position > status.head_position);
    this.sinceSnapshot = [];
    this.head = status.head_position;
    for (const record of newer) this.fold(record);
    this.changed();
  }

  /** Folds one event of the log; positions already folded are ignored. */
  applyEvent(record: EventRecord): void {
    if (record.position <= this.head) return;
    this.fold(record);
    this.changed();
  }

  run(runId: string): RunInfo | undefined {
    return this.runs.get(runId);
  }

  session(sessionId: string): SessionInfo | undefined {
    return this.sessions.get(sessionId);
  }

  /** Runs at the top of the tree (not a child of a known run), newest first. */
  roots(): OrcaNode[] {
    return [...this.runs.values()]
      .filter((r) => !r.parent_run_id || !this.runs.has(r.parent_run_id))
      .sort((a, b) => b.created_at - a.created_at)
      .map((r) => runNode(r.run_id));
  }

  children(node: OrcaNode): OrcaNode[] {
    if (node.kind === "session") return [];
    if (node.kind === "task") {
      return this.sessionsOf(node.runId)
        .filter((s) => s.task_id === node.taskId)
        .map((s) => sessionNode(s.session_id));
    }
    const run = this.runs.get(node.runId);
    if (!run) return [];
    const children = (run.child_run_ids ?? []).filter((id) => this.runs.has(id)).map(runNode);
    const tasks = (run.tasks ?? []).map((t) => taskNode(run.run_id, t.task_id));
    const sessions = this.sessionsOf(run.run_id)
      .filter((s) => !s.task_id || !tasks.length)
      .map((s) => sessionNode(s.session_id));
    return [...children, ...tasks, ...sessions];
  }

  /** Every question request waiting for an answer, oldest first. */
  waitingQuestions(): WaitingQuestion[] {
    const waiting: WaitingQuestion[] = [];
    for (const session of this.sessions.values()) {
      const run = this.runs.get(session.run_id);
      if (session.pending && run) {
        waiting.push({ runId: run.run_id, runTitle: run.title, pending: session.pending });
      }
    }
    return waiting.sort((a, b) => a.pending.asked_at - b.pending.asked_at);
  }

  describe(node: OrcaNode): NodeView | undefined {
    if (node.kind === "run") {
      const run = this.runs.get(node.runId);
      return run && describeRun(run, this.sessionsOf(run.run_id));
    }
    if (node.kind === "task") {
      const task = this.runs.get(node.runId)?.tasks?.find((t) => t.task_id === node.taskId);
      return task && describeTask(task);
    }
    const session = this.sessions.get(node.sessionId);
    return session && describeSession(session);
  }

  private sessionsOf(runId: string): SessionInfo[] {
    const ids = this.runs.get(runId)?.session_ids ?? [];
    return ids.map((id) => this.sessions.get(id)).filter((s): s is SessionInfo => !!s);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  private fold(record: EventRecord): void {
    this.head = Math.max(this.head, record.position);
    if (this.sinceSnapshot.length < REPLAY_LIMIT) this.sinceSnapshot.push(record);
    const event = record.event as Ev;
    const at = record.recorded_at;
    const run = this.runs.get(event.run_id);
    if (event.type === "run_created") {
      this.created(event, at);
      return;
    }
    if (!run) return;
    run.updated_at = at;
    const session = typeof event.session_id === "string" ? this.sessions.get(event.session_id) : undefined;
    switch (event.type) {
      case "run_status_changed":
        run.status = event.status as RunStatus;
        run.reason = (event.reason as string | null | undefined) ?? run.reason ?? null;
        break;
      case "session_created":
        this.sessionCreated(run, event, at);
        break;
      case "session_started":
        if (session) {
          session.status = "running";
          session.pid = event.pid as number;
          session.started_at = at;
        }
        break;
      case "session_terminated":
        if (session) {
          session.status = event.status as SessionStatus;
          session.reason = event.reason as string;
          session.summary = (event.summary as string | null | undefined) ?? null;
          session.exit_code = (event.exit_code as number | null | undefined) ?? null;
          session.ended_at = at;
          session.pending = null;
        }
        break;
      case "question_asked":
        if (session) {
          session.status = "waiting_for_answer";
          session.pending = {
            request_id: event.request_id as string,
            session_id: session.session_id,
            questions: event.questions as PendingQuestion["questions"],
            asked_at: at,
          };
          session.last_activity_at = at;
        }
        break;
      case "question_answered":
      case "question_cleared":
        if (session && session.pending?.request_id === event.request_id) {
          session.pending = null;
          if (session.status === "waiting_for_answer") session.status = "running";
        }
        break;
      case "task_status_changed":
        this.taskChanged(run, event);
        break;
      case "orchestration_finished":
        run.result = (event.summary as string | null | undefined) ?? run.result ?? null;
        run.task_file = event.task_file as string;
        break;
      case "output_appended":
        if (session) {
          session.last_activity_at = at;
          const line = lastLine(event.text as string);
          if (line) session.last_output_line = line;
        }
        break;
    }
  }

  private created(event: Ev, at: number): void {
    const plan = (event.plan as { plan?: { tasks?: Array<Record<string, unknown>> } } | null)?.plan;
    const tasks: TaskInfo[] = (plan?.tasks ?? []).map((t) => ({
      task_id: t.id as string,
      title: (t.title as string | undefined) || (t.id as string),
      status: "pending",
      depends_on: (t.depends_on as string[] | undefined) ?? [],
      attempt: 0,
      max_retries: (t.max_retries as number | undefined) ?? 0,
    }));
    const parent = (event.parent_run_id as string | null | undefined) ?? null;
    this.runs.set(event.run_id, {
      run_id: event.run_id,
      title: event.title as string,
      status: "queued",
      cwd: event.cwd as string,
      created_at: at,
      updated_at: at,
      kind: (event.kind as RunInfo["kind"]) ?? "single",
      parent_run_id: parent,
      prompt: (event.prompt as string | null | undefined) ?? null,
      repo: (event.repo as string | null | undefined) ?? null,
      session_ids: [],
      child_run_ids: [],
      tasks,
    });
    const parentRun = parent ? this.runs.get(parent) : undefined;
    if (parentRun && !parentRun.child_run_ids?.includes(event.run_id)) {
      parentRun.child_run_ids = [...(parentRun.child_run_ids ?? []), event.run_id];
    }
  }

  private sessionCreated(run: RunInfo, event: Ev, at: number): void {
    const id = event.session_id as string;
    this.sessions.set(id, {
      session_id: id,
      run_id: run.run_id,
      agent: event.agent as string,
      role: (event.role as string | undefined) ?? "worker",
      status: "created",
      command: event.command as string[],
      cwd: event.cwd as string,
      created_at: at,
      task_id: (event.task_id as string | null | undefined) ?? null,
      attempt: (event.attempt as number | undefined) ?? 1,
      debug_run_id: (event.debug_run_id as string | null | undefined) ?? null,
      pending: null,
    });
    if (!run.session_ids?.includes(id)) run.session_ids = [...(run.session_ids ?? []), id];
    if (event.role === "orchestrator") run.orchestrator_session_id = id;
  }

  private taskChanged(run: RunInfo, event: Ev): void {
    const task = run.tasks?.find((t) => t.task_id === event.task_id);
    if (!task) return;
    task.status = event.status as string;
    if (typeof event.attempt === "number" && event.attempt > 0) task.attempt = event.attempt;
    if (event.session_id) task.session_id = event.session_id as string;
    if (event.summary) task.summary = event.summary as string;
    if (event.reason) task.reason = event.reason as string;
  }
}

function runNode(runId: string): OrcaNode {
  return { kind: "run", id: `run:${runId}`, runId };
}

function taskNode(runId: string, taskId: string): OrcaNode {
  return { kind: "task", id: `task:${runId}/${taskId}`, runId, taskId };
}

function sessionNode(sessionId: string): OrcaNode {
  return { kind: "session", id: `session:${sessionId}`, sessionId };
}

/** The last non-blank line of `text`, its last 200 characters. */
function lastLine(text: string): string | undefined {
  const lines = text.split("\n").filter((l) => l.trim());
  return lines.length ? lines[lines.length - 1]!.slice(-200) : undefined;
}

/** `2/3 workers done`, `1/4 tasks done`, … : a fan-out's, plan's or parent's progress. */
export function progress(run: RunInfo, sessions: SessionInfo[]): string | undefined {
  if (run.kind === "plan" && run.tasks?.length) {
    const done = run.tasks.filter((t) => t.status === "done").length;
    return `${done}/${run.tasks.length} tasks done`;
  }
  if (run.kind === "fanout") {
    const workers = sessions.filter((s) => s.role === "worker");
    const ended = workers.filter((s) => TERMINAL_RUN.has(s.status)).length;
    return `${ended}/${workers.length} workers ended`;
  }
  if (run.kind === "parent" && run.child_run_ids?.length) {
    return `${run.child_run_ids.length} child runs`;
  }
  return undefined;
}

function describeRun(run: RunInfo, sessions: SessionInfo[]): NodeView {
  const waiting = sessions.find((s) => s.pending)?.pending;
  const ended = TERMINAL_RUN.has(run.status);
  const parts = [run.status.replaceAll("_", " "), progress(run, sessions)];
  if (waiting) parts.push(`asks: ${waiting.questions[0]?.question ?? ""}`);
  const tooltip = [
    `${run.title} (${run.run_id})`,
    `${run.kind ?? "single"} run, ${run.status}`,
    run.reason ? `reason: ${run.reason}` : "",
    run.result ? `result: ${run.result}` : "",
    run.cwd,
  ];
  return {
    label: `${run.run_id.slice(0, 12)} ${run.title}`,
    description: parts.filter(Boolean).join(" · "),
    tooltip: tooltip.filter(Boolean).join("\n"),
    contextValue: waiting ? "run.waiting" : ended ? "run.ended" : "run.live",
    icon: runIcon(run.status),
    collapsible: (run.child_run_ids?.length ?? 0) + (run.tasks?.length ?? 0) + sessions.length > 0,
  };
}

function describeTask(task: TaskInfo): NodeView {
  const attempt = task.attempt && task.attempt > 1 ? ` (attempt ${task.attempt})` : "";
  return {
    label: task.task_id,
    description: `${task.status.replaceAll("_", " ")}${attempt}`,
    tooltip: [task.title, task.summary ?? "", task.reason ?? ""].filter(Boolean).join("\n"),
    contextValue: "task",
    icon: TERMINAL_TASK.has(task.status)
      ? task.status === "done"
        ? "pass"
        : "error"
      : task.status === "in_progress"
        ? "sync~spin"
        : "circle-outline",
    collapsible: !!task.session_id,
  };
}

function describeSession(session: SessionInfo): NodeView {
  const ended = TERMINAL_RUN.has(session.status);
  const detail = session.pending
    ? `asks: ${session.pending.questions[0]?.question ?? ""}`
    : ended
      ? (session.summary ?? session.reason ?? "")
      : (session.last_output_line ?? "");
  return {
    label: `${session.session_id} ${session.agent}`,
    description: [session.status.replaceAll("_", " "), session.role, detail].filter(Boolean).join(" · "),
    tooltip: [
      `${session.agent} (${session.role}), ${session.status}`,
      session.reason ?? "",
      session.summary ?? "",
      session.last_output_line ? `latest: ${session.last_output_line}` : "",
    ]
      .filter(Boolean)
      .join("\n"),
    contextValue: session.pending ? "session.waiting" : ended ? "session.ended" : "session.live",
    icon: session.pending ? "question" : runIcon(session.status),
    collapsible: false,
  };
}

function runIcon(status: string): string {
  switch (status) {
    case "completed":
      return "pass";
    case "failed":
      return "error";
    case "cancelled":
      return "circle-slash";
    case "waiting_for_answer":
      return "question";
    case "queued":
    case "created":
      return "clock";
    default:
      return "sync~spin";
  }
}
