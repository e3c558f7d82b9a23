/* Generated from schemas/ by `npm run gen:types` (json-schema-to-typescript); do not edit.
 * `npm run check:types` checks it is current; `python -m orca_daemon.schemagen` writes the schemas. */

export type AnyEvent =
  | AgentSessionIdentified
  | AnswerRequested
  | CancelRequested
  | HookFinished
  | HookStarted
  | NotificationFailed
  | NotificationSent
  | NotificationTriggered
  | OrchestrationFinished
  | OrchestratorTriggered
  | OutputAppended
  | OutputRead
  | QuestionAnswered
  | QuestionAsked
  | QuestionCleared
  | RelayedRequestSettled
  | RunAdopted
  | RunCreated
  | RunStatusChanged
  | SessionCreated
  | SessionStarted
  | SessionTerminated
  | TaskStatusChanged
  | UsageRecorded
  | VerifyFinished
  | WorktreeCreated
  | WorktreeRemoved;
export type DaemonMessage = EventsPushed | Reply | SubscriptionOverflowed;

/**
 * Every type of the protocol, by name (an index for the generator).
 */
export interface OrcaProtocolTypes {
  AgentCheck: AgentCheck;
  AgentChecks: AgentChecks;
  AgentLookup: AgentLookup;
  AgentSessionIdentified: AgentSessionIdentified;
  Answer: Answer;
  AnswerRequested: AnswerRequested;
  AnswerResult: AnswerResult;
  AnyEvent: AnyEvent;
  Cancel: Cancel;
  CancelRequested: CancelRequested;
  CancelResult: CancelResult;
  CheckAgents: CheckAgents;
  ChildTarget: ChildTarget;
  ChildrenSpec: ChildrenSpec;
  Clean: Clean;
  CleanResult: CleanResult;
  DaemonMessage: DaemonMessage;
  Doctor: Doctor;
  DoctorResult: DoctorResult;
  Done: Done;
  ErrorInfo: ErrorInfo;
  EventRecord: EventRecord;
  EventsPage: EventsPage;
  EventsPushed: EventsPushed;
  FanOutSpec: FanOutSpec;
  Hello: Hello;
  HelloResult: HelloResult;
  HookFinished: HookFinished;
  HookStarted: HookStarted;
  NotificationFailed: NotificationFailed;
  NotificationSent: NotificationSent;
  NotificationTriggered: NotificationTriggered;
  Orchestrate: Orchestrate;
  OrchestrateResult: OrchestrateResult;
  OrchestrationFinished: OrchestrationFinished;
  OrchestratorTriggered: OrchestratorTriggered;
  OutputAppended: OutputAppended;
  OutputRead: OutputRead;
  PendingQuestion: PendingQuestion;
  Plan: Plan;
  PlanSpec: PlanSpec;
  PlanTask: PlanTask;
  Question: Question;
  QuestionAnswered: QuestionAnswered;
  QuestionAsked: QuestionAsked;
  QuestionCleared: QuestionCleared;
  QuestionOption: QuestionOption;
  ReadEvents: ReadEvents;
  RelayedRequestSettled: RelayedRequestSettled;
  Reload: Reload;
  ReloadResult: ReloadResult;
  Reply: Reply;
  RequestEnvelope: RequestEnvelope;
  RetryTask: RetryTask;
  RunAdopted: RunAdopted;
  RunCreated: RunCreated;
  RunInfo: RunInfo;
  RunStarted: RunStarted;
  RunStatusChanged: RunStatusChanged;
  SessionCreated: SessionCreated;
  SessionHealth: SessionHealth;
  SessionInfo: SessionInfo;
  SessionStarted: SessionStarted;
  SessionTerminated: SessionTerminated;
  Shutdown: Shutdown;
  StartDebug: StartDebug;
  StartPlan: StartPlan;
  StartRun: StartRun;
  Status: Status;
  StatusResult: StatusResult;
  Subscribe: Subscribe;
  Subscribed: Subscribed;
  SubscriptionOverflowed: SubscriptionOverflowed;
  TaskInfo: TaskInfo;
  TaskRetried: TaskRetried;
  TaskStatusChanged: TaskStatusChanged;
  Unsubscribe: Unsubscribe;
  UsageRecorded: UsageRecorded;
  VerifyFinished: VerifyFinished;
  WorktreeCreated: WorktreeCreated;
  WorktreeInfo: WorktreeInfo;
  WorktreeRemoved: WorktreeRemoved;
}
/**
 * One agent as `orca doctor --agents` shows it.
 */
export interface AgentCheck {
  binary?: null | string;
  detail: string;
  kind: string;
  minimum?: null | string;
  name: string;
  status: "not_found" | "not_runnable" | "supported" | "too_old" | "unknown_version";
  usable: boolean;
  version?: null | string;
  version_text?: null | string;
}
export interface AgentChecks {
  agents: AgentCheck[];
}
/**
 * Where the client that started a run finds agent CLIs (its PATH, ORCA_CODEX_PATH,
 * ORCA_CLAUDE_PATH): kept so that the sessions orcad starts later, after a restart too, find
 * the same binaries.
 */
export interface AgentLookup {
  claude_path?: null | string;
  codex_path?: null | string;
  search_path?: null | string;
}
/**
 * The agent's own id for the conversation (Codex thread id, Claude session id).
 */
export interface AgentSessionIdentified {
  agent_session_id: string;
  run_id: string;
  session_id: string;
  type: "agent_session_identified";
}
/**
 * Answer a run's pending question request.
 *
 * Either `text` (only when exactly one question is pending; taken verbatim) or `answers`,
 * which must name every pending question id and no other. `session_id` or `request_id` picks
 * the request when several sessions of the run are waiting (each session numbers its requests
 * on its own, so two sessions may wait with the same request id).
 */
export interface Answer {
  answered_by?: string;
  answers?: {
    [k: string]: string[] | undefined;
  } | null;
  request_id?: null | string;
  run_id: string;
  session_id?: null | string;
  text?: null | string;
  type: "answer";
}
/**
 * With a log several daemons share: a client gave `from_daemon`, which does not own the
 * run, the answer to a pending question request; the owner hands it to the agent and records
 * `RelayedRequestSettled`. Never an answer to a secret question: those are refused, not
 * relayed (they never reach the log).
 */
export interface AnswerRequested {
  answered_by: string;
  answers: {
    [k: string]: string[] | undefined;
  };
  from_daemon: string;
  question_request_id: string;
  request_id: string;
  run_id: string;
  session_id: string;
  type: "answer_requested";
}
export interface AnswerResult {
  delivered?: boolean;
  request_id: string;
  run_id: string;
  session_id: string;
  status: "cancelled" | "completed" | "failed" | "planning" | "queued" | "reviewing" | "running" | "waiting_for_answer";
}
/**
 * With a log several daemons share: a client asked `from_daemon`, which does not own the
 * run, to cancel it (or one of its sessions). The owner carries it out and records
 * `RelayedRequestSettled` with the same `request_id`.
 */
export interface CancelRequested {
  from_daemon: string;
  reason?: null | string;
  request_id: string;
  run_id: string;
  session_id?: null | string;
  type: "cancel_requested";
}
export interface HookFinished {
  exit_code?: number | null;
  hook: string;
  ok: boolean;
  output_tail?: string;
  reason: string;
  run_id: string;
  trigger_position: number;
  type: "hook_finished";
}
/**
 * A hook was started for the event at `trigger_position` (it never starts twice).
 */
export interface HookStarted {
  command: string[];
  hook: string;
  run_id: string;
  trigger_position: number;
  type: "hook_started";
}
/**
 * A channel's delivery was given up; `reason` is the last attempt's error.
 */
export interface NotificationFailed {
  attempts: number;
  channel: string;
  reason: string;
  run_id: string;
  trigger_position: number;
  type: "notification_failed";
}
/**
 * A channel took the notification (a 2xx reply; notify-send exited 0).
 */
export interface NotificationSent {
  attempts: number;
  channel: string;
  run_id: string;
  trigger_position: number;
  type: "notification_sent";
}
/**
 * A notification is due for the event at `trigger_position` (recorded once, with how far
 * the notifier has read the log): what it says, and the channels it goes to. Each channel's
 * delivery ends with `NotificationSent` or `NotificationFailed`; one with neither when orcad
 * starts is delivered again, with the same idempotency key (`notification_key`).
 */
export interface NotificationTriggered {
  answer_command?: null | string;
  channels: string[];
  kind: "completed" | "failed" | "waiting";
  request_id?: null | string;
  run_id: string;
  summary: string;
  text: string;
  title: string;
  trigger_position: number;
  type: "notification_triggered";
}
/**
 * A fan-out's orchestrator ended; its synthesis is in `task_file` when it completed.
 */
export interface OrchestrationFinished {
  debug_run_id: string;
  run_id: string;
  session_id: string;
  status: "cancelled" | "completed" | "failed";
  summary?: null | string;
  task_file: string;
  type: "orchestration_finished";
}
/**
 * A fan-out's one orchestrator was decided on. Appended at an expected stream version, so
 * of two triggers that race, one loses; the orchestrator's `SessionCreated` follows it in the
 * same transaction.
 */
export interface OrchestratorTriggered {
  debug_run_id: string;
  run_id: string;
  session_id: string;
  triggered_by: string;
  truncated: boolean;
  type: "orchestrator_triggered";
  worker_statuses: {
    [k: string]: string | undefined;
  };
}
export interface OutputAppended {
  offset?: number | null;
  run_id: string;
  session_id: string;
  stream: "orca" | "stderr" | "stdout";
  text: string;
  type: "output_appended";
}
/**
 * orcad has handled what the agent wrote on `stream` up to `offset` (recorded with what
 * that output caused, or before orcad answers a line of it): a re-attach reads on from there.
 */
export interface OutputRead {
  offset: number;
  run_id: string;
  session_id: string;
  stream: "stderr" | "stdout";
  type: "output_read";
}
/**
 * That a request was answered and by whom; answers to secret questions are left out.
 */
export interface QuestionAnswered {
  answered_by: string;
  answers?: {
    [k: string]: string[] | undefined;
  };
  redacted_ids?: string[];
  request_id: string;
  run_id: string;
  session_id: string;
  type: "question_answered";
}
export interface QuestionAsked {
  questions: Question[];
  request_id: string;
  run_id: string;
  session_id: string;
  type: "question_asked";
}
/**
 * One question of a request, in the Codex `requestUserInput` shape (extra fields ignored).
 */
export interface Question {
  header?: string;
  id: string;
  isOther?: boolean;
  isSecret?: boolean;
  options?: QuestionOption[] | null;
  question: string;
}
/**
 * A suggested answer. Extra fields an agent sends are ignored.
 */
export interface QuestionOption {
  description?: string;
  label: string;
}
export interface QuestionCleared {
  reason: string;
  request_id: string;
  run_id: string;
  session_id: string;
  type: "question_cleared";
}
/**
 * The owner of the run carried out (or refused) a relayed request: `result_json` is the
 * reply's result (JSON), or `error_code` and `message` say why not.
 */
export interface RelayedRequestSettled {
  daemon: string;
  error_code?: null | string;
  message?: null | string;
  request_id: string;
  result_json?: null | string;
  run_id: string;
  type: "relayed_request_settled";
}
/**
 * The daemon that acted for the run stopped renewing its lease: `daemon` took the run
 * over and acts for it from here on. `generation` is the fencing token its appends for the
 * run carry; the one that was adopted can no longer append for it.
 */
export interface RunAdopted {
  daemon: string;
  from_daemon: string;
  generation: number;
  run_id: string;
  tracked?: {
    [k: string]: number | undefined;
  };
  type: "run_adopted";
}
export interface RunCreated {
  agent_lookup?: AgentLookup | null;
  children?: ChildrenSpec | null;
  cwd: string;
  daemon?: null | string;
  fanout?: FanOutSpec | null;
  kind?: "fanout" | "parent" | "plan" | "single";
  parent_run_id?: null | string;
  plan?: PlanSpec | null;
  prompt?: null | string;
  repo?: null | string;
  run_id: string;
  title: string;
  type: "run_created";
}
/**
 * A parent run's children and how to run them. Each child runs `agent` on the parent's
 * prompt, or `command`, in its repository.
 */
export interface ChildrenSpec {
  agent?: null | string;
  command?: string[];
  continue_on_failure?: boolean;
  max_parallel: number;
  mode: "parallel" | "sequential";
  targets: ChildTarget[];
  worktree?: boolean;
}
/**
 * One child run a parent run will start: a configured repository.
 */
export interface ChildTarget {
  path: string;
  repo: string;
}
/**
 * How a fan-out ends: which agent synthesizes, where, and how much output it reads.
 */
export interface FanOutSpec {
  orchestrator: string;
  per_worker_chars: number;
  task_file: string;
  total_chars: number;
  worktree?: boolean;
}
/**
 * A plan run's task graph and how to run it.
 */
export interface PlanSpec {
  agent?: null | string;
  cancel_dependants?: boolean;
  max_parallel: number;
  plan: Plan;
  verify_timeout_seconds?: number;
  worktree?: boolean | null;
}
export interface Plan {
  summary?: string;
  tasks: PlanTask[];
  title: string;
}
/**
 * One task of a plan.
 */
export interface PlanTask {
  acceptance?: string[];
  agent?: null | string;
  depends_on?: string[];
  id: string;
  max_retries?: number;
  prompt: string;
  title?: string;
  verify?: string[];
}
export interface RunStatusChanged {
  reason?: null | string;
  run_id: string;
  status: "cancelled" | "completed" | "failed" | "planning" | "queued" | "reviewing" | "running" | "waiting_for_answer";
  type: "run_status_changed";
}
export interface SessionCreated {
  agent: string;
  attempt?: number;
  command: string[];
  cwd: string;
  debug_run_id?: null | string;
  prompt?: null | string;
  role?: string;
  run_id: string;
  session_id: string;
  task_id?: null | string;
  type: "session_created";
  worktree?: boolean;
}
export interface SessionStarted {
  command?: string[] | null;
  holder_pid?: number | null;
  holder_start_ticks?: number | null;
  pid: number;
  process_start_ticks?: number | null;
  run_id: string;
  session_id: string;
  type: "session_started";
}
export interface SessionTerminated {
  cause?: ("agent" | "cancelled" | "internal" | "orcad_restarted" | "orcad_stopped" | "spawn_failed") | null;
  exit_code?: number | null;
  reason: string;
  run_id: string;
  session_id: string;
  status: "cancelled" | "completed" | "failed";
  summary?: null | string;
  type: "session_terminated";
}
/**
 * A plan task moved: `in_progress` starts attempt `attempt` in `session_id`.
 */
export interface TaskStatusChanged {
  attempt?: number;
  interrupted?: boolean;
  reason?: null | string;
  run_id: string;
  session_id?: null | string;
  status: "cancelled" | "done" | "failed" | "in_progress" | "pending";
  summary?: null | string;
  task_id: string;
  type: "task_status_changed";
}
/**
 * Token usage or cost an agent reported, as the agent reported it, with the session's
 * totals so far where the agent's protocol says them.
 */
export interface UsageRecorded {
  cost_usd?: null | number;
  data: {};
  input_tokens?: number | null;
  output_tokens?: number | null;
  run_id: string;
  session_id: string;
  type: "usage_recorded";
}
/**
 * One of a task's verify commands ran (orcad runs them after the agent reports done).
 */
export interface VerifyFinished {
  attempt: number;
  command: string;
  exit_code: number | null;
  ok: boolean;
  output_tail?: string;
  run_id: string;
  task_id: string;
  type: "verify_finished";
}
export interface WorktreeCreated {
  branch: string;
  path: string;
  repo: string;
  run_id: string;
  session_id: string;
  type: "worktree_created";
}
export interface WorktreeRemoved {
  path: string;
  run_id: string;
  session_id: string;
  type: "worktree_removed";
}
/**
 * End a run: its sessions are stopped and it becomes `cancelled`.
 */
export interface Cancel {
  reason?: null | string;
  run_id: string;
  session_id?: null | string;
  type: "cancel";
}
export interface CancelResult {
  already_terminal: boolean;
  run_id: string;
  status: "cancelled" | "completed" | "failed" | "planning" | "queued" | "reviewing" | "running" | "waiting_for_answer";
}
/**
 * Every agent a run may name (built in and configured): the binary a run started with
 * this lookup would run, its `--version`, and whether Orca supports it.
 */
export interface CheckAgents {
  claude_path?: null | string;
  codex_path?: null | string;
  search_path?: null | string;
  timeout?: null | number;
  type: "check_agents";
}
/**
 * Remove the git worktrees of an ended run (their branches are kept).
 */
export interface Clean {
  run_id: string;
  type: "clean";
}
export interface CleanResult {
  already_gone: string[];
  branches_kept: string[];
  removed: string[];
  run_id: string;
}
/**
 * Events for a subscription, in position order, never with a gap.
 */
export interface EventsPushed {
  events: EventRecord[];
  kind: "events";
  subscription: string;
}
/**
 * One committed event as a client sees it: its place in the log and its JSON body.
 */
export interface EventRecord {
  event: unknown;
  position: number;
  recorded_at: number;
  schema_version: number;
  stream: string;
  version: number;
}
/**
 * The answer to request `id`: `result` (the request's result type) when `ok`, else `error`.
 */
export interface Reply {
  error?: ErrorInfo | null;
  id: string;
  kind: "reply";
  ok: boolean;
  result: unknown;
}
export interface ErrorInfo {
  code:
    | "bad_request"
    | "busy"
    | "conflict"
    | "internal"
    | "invalid_state"
    | "log_unavailable"
    | "not_found"
    | "replayed"
    | "shutting_down"
    | "stale"
    | "too_large"
    | "unauthenticated";
  message: string;
}
/**
 * The subscriber fell too far behind; the subscription ended. Subscribe again after
 * `resume_from` (the last position delivered) to continue without a gap.
 */
export interface SubscriptionOverflowed {
  kind: "overflow";
  resume_from: number;
  subscription: string;
}
/**
 * What a run's live sessions are doing: pid, heartbeat, output tail; stuck ones flagged.
 */
export interface Doctor {
  run_id: string;
  stuck_after?: null | number;
  type: "doctor";
}
export interface DoctorResult {
  run_id: string;
  sessions: SessionHealth[];
  status: "cancelled" | "completed" | "failed" | "planning" | "queued" | "reviewing" | "running" | "waiting_for_answer";
  stuck_after: number;
}
/**
 * One live session as `orca doctor` shows it.
 */
export interface SessionHealth {
  alive: boolean;
  last_activity_at: null | number;
  last_heartbeat: null | number;
  output_tail: string;
  pid: number | null;
  retry_command: null | string;
  session_id: string;
  status: string;
  stuck: boolean;
  task_id: null | string;
  why: string;
}
/**
 * The result of a request that has nothing to return.
 */
export interface Done {}
export interface EventsPage {
  events: EventRecord[];
  head_position: number;
}
/**
 * Ask for the protocol and daemon version; also a cheap liveness check, and the keep-alive
 * of this connection's subscriptions. With `subscription`, also whether that subscription of
 * this connection is still open (a subscriber that missed its end resubscribes).
 */
export interface Hello {
  subscription?: null | string;
  type: "hello";
}
export interface HelloResult {
  daemon_name?: string;
  daemon_version: string;
  head_position: number;
  instance: string;
  log_file: string;
  pid: number;
  protocol: number;
  requests?: string[];
  started_at: number;
  subscription_open?: boolean | null;
  subscriptions?: number;
}
/**
 * Start a fan-out's orchestrator now; live workers are cancelled first. Idempotent: a
 * fan-out has one orchestrator, ever.
 */
export interface Orchestrate {
  requested_by?: string;
  run_id: string;
  type: "orchestrate";
}
export interface OrchestrateResult {
  already_triggered: boolean;
  cancelled_workers?: string[];
  run_id: string;
  session_id: string;
}
/**
 * A question request an agent asked and nobody has answered or cleared yet.
 */
export interface PendingQuestion {
  asked_at: number;
  questions: Question[];
  request_id: string;
  session_id: string;
}
/**
 * Committed events with position greater than `after`, at most `limit` of them.
 */
export interface ReadEvents {
  after?: number;
  limit?: number;
  run_id?: null | string;
  type: "read";
}
/**
 * Read the config file again and use it from now on, as SIGHUP does. A file with errors
 * changes nothing (the error lists them all). Agents, hooks, `[notify]`, `[orchestration]` and
 * repositories change at once; `[daemon]` settings only at the next start (`needs_restart`
 * names them).
 */
export interface Reload {
  dry_run?: boolean;
  type: "reload";
}
export interface ReloadResult {
  agents: string[];
  applied: boolean;
  changed: string[];
  config_file: string;
  error?: null | string;
  needs_restart: string[];
}
/**
 * A signed request: `id` pairs it with its reply; `nonce` and `ts` defeat replay.
 */
export interface RequestEnvelope {
  id: string;
  nonce: string;
  request:
    | Answer
    | Cancel
    | CheckAgents
    | Clean
    | Doctor
    | Hello
    | Orchestrate
    | ReadEvents
    | Reload
    | RetryTask
    | Shutdown
    | StartDebug
    | StartPlan
    | StartRun
    | Status
    | Subscribe
    | Unsubscribe;
  ts: number;
}
/**
 * Start a new attempt at a task of a live plan run: its current session is cancelled.
 */
export interface RetryTask {
  run_id: string;
  task_id: string;
  type: "retry_task";
}
/**
 * Stop the daemon cleanly, as SIGTERM does: running sessions keep running in their holders
 * and the next orcad re-attaches to them; with `cancel_sessions`, they are stopped and end
 * failed ("orcad stopped while the session was running").
 */
export interface Shutdown {
  cancel_sessions?: boolean;
  type: "shutdown";
}
/**
 * A fan-out: one worker session per agent in `agents` (names may repeat) on `prompt`; once
 * every worker is terminal, one `orchestrator` session synthesizes their outputs into
 * `task_file`.
 */
export interface StartDebug {
  agents: string[];
  claude_path?: null | string;
  codex_path?: null | string;
  cwd: string;
  orchestrator?: null | string;
  prompt: string;
  search_path?: null | string;
  task_file?: null | string;
  title?: null | string;
  type: "debug";
  worktree?: boolean | null;
}
/**
 * Run `plan` as a task graph in `cwd`; tasks without an agent use `agent`.
 */
export interface StartPlan {
  agent?: null | string;
  cancel_dependants?: boolean;
  claude_path?: null | string;
  codex_path?: null | string;
  cwd: string;
  max_parallel?: number | null;
  plan: Plan;
  search_path?: null | string;
  title?: null | string;
  type: "plan";
  worktree?: boolean | null;
}
/**
 * Create a run with one session in `cwd`: either `command` (a command agent) or the
 * configured `agent` (by name, e.g. `codex`, `codex-exec`, `claude`) with `prompt`.
 */
export interface StartRun {
  agent?: null | string;
  claude_path?: null | string;
  codex_path?: null | string;
  command?: string[];
  continue_on_failure?: boolean;
  cwd: string;
  feature?: null | string;
  follow_up?: null | string;
  max_parallel?: number | null;
  mode?: ("exec" | "plan") | null;
  orchestration_mode?: "parallel" | "sequential";
  project?: null | string;
  prompt?: null | string;
  repos?: string[];
  search_path?: null | string;
  title?: null | string;
  type: "run";
  worktree?: boolean | null;
}
/**
 * One run (`run_id`) with its sessions; or every live run and the `ended` most recently
 * created runs that have ended (None: all of them), with their sessions. With `tree`, a run
 * comes with all its descendant runs (children, their children, ...).
 *
 * The reply is one page: while its `next_cursor` is set, ask again with it as `cursor` (and
 * the same other fields) for the rest.
 */
export interface Status {
  cursor?: null | string;
  ended?: number | null;
  page_bytes?: number | null;
  run_id?: null | string;
  tree?: boolean;
  type: "status";
}
/**
 * Every event after `after` (catch-up from the log), then live events as they commit.
 */
export interface Subscribe {
  after?: number;
  run_id?: null | string;
  type: "subscribe";
}
export interface Unsubscribe {
  subscription: string;
  type: "unsubscribe";
}
/**
 * The projected state of one run; its sessions are listed by id.
 */
export interface RunInfo {
  child_run_ids?: string[];
  cost_usd?: null | number;
  created_at: number;
  cwd: string;
  debug_run_id?: null | string;
  input_tokens?: number | null;
  kind?: "fanout" | "parent" | "plan" | "single";
  orchestration_mode?: ("parallel" | "sequential") | null;
  orchestrator_session_id?: null | string;
  output_tokens?: number | null;
  owner?: null | string;
  parent_run_id?: null | string;
  paused_status?:
    | ("cancelled" | "completed" | "failed" | "planning" | "queued" | "reviewing" | "running" | "waiting_for_answer")
    | null;
  prompt?: null | string;
  reason?: null | string;
  repo?: null | string;
  result?: null | string;
  run_id: string;
  session_ids?: string[];
  status: "cancelled" | "completed" | "failed" | "planning" | "queued" | "reviewing" | "running" | "waiting_for_answer";
  task_file?: null | string;
  tasks?: TaskInfo[];
  title: string;
  updated_at: number;
}
/**
 * The projected state of one task of a plan run.
 */
export interface TaskInfo {
  attempt?: number;
  depends_on?: string[];
  interrupted?: number;
  max_retries?: number;
  reason?: null | string;
  session_id?: null | string;
  status: string;
  summary?: null | string;
  task_id: string;
  title: string;
}
export interface RunStarted {
  child_run_ids?: string[];
  position: number;
  run_id: string;
  session_id: null | string;
  session_ids?: string[];
  task_file?: null | string;
}
/**
 * The projected state of one session.
 */
export interface SessionInfo {
  agent: string;
  agent_session_id?: null | string;
  attempt?: number;
  command: string[];
  cost_usd?: null | number;
  created_at: number;
  cwd: string;
  debug_run_id?: null | string;
  detached?: null | string;
  ended_at?: null | number;
  exit_code?: number | null;
  in_worktree?: boolean;
  input_tokens?: number | null;
  last_activity_at?: null | number;
  last_output_line?: null | string;
  output_events?: number;
  output_tokens?: number | null;
  pending?: PendingQuestion | null;
  pid?: number | null;
  reason?: null | string;
  role: string;
  run_id: string;
  session_id: string;
  started_at?: null | number;
  status: "cancelled" | "completed" | "created" | "failed" | "running" | "waiting_for_answer";
  summary?: null | string;
  task_id?: null | string;
  usage?: null | {};
  worktree?: WorktreeInfo | null;
}
/**
 * The git worktree a session runs in, on its own branch.
 */
export interface WorktreeInfo {
  branch: string;
  path: string;
  removed?: boolean;
  repo: string;
}
/**
 * One page of a status. A run whose tasks or sessions do not all fit comes again at the
 * start of the next page with the rest: its `tasks` and `session_ids` hold what each page
 * carries, so a client appends them to the run it has (`sessions` holds the page's sessions,
 * in the order of the `session_ids` on it).
 */
export interface StatusResult {
  ended_not_shown?: number;
  head_position: number;
  next_cursor?: null | string;
  runs: RunInfo[];
  sessions: SessionInfo[];
}
export interface Subscribed {
  subscription: string;
}
export interface TaskRetried {
  attempt: number;
  run_id: string;
  task_id: string;
}

/** Each socket request type (a method of `orca bridge`): its params (the request's fields
 * without `type`) and its result. */
export interface OrcaMethods {
  answer: { params: Omit<Answer, "type">; result: AnswerResult };
  cancel: { params: Omit<Cancel, "type">; result: CancelResult };
  check_agents: { params: Omit<CheckAgents, "type">; result: AgentChecks };
  clean: { params: Omit<Clean, "type">; result: CleanResult };
  debug: { params: Omit<StartDebug, "type">; result: RunStarted };
  doctor: { params: Omit<Doctor, "type">; result: DoctorResult };
  hello: { params: Omit<Hello, "type">; result: HelloResult };
  orchestrate: { params: Omit<Orchestrate, "type">; result: OrchestrateResult };
  plan: { params: Omit<StartPlan, "type">; result: RunStarted };
  read: { params: Omit<ReadEvents, "type">; result: EventsPage };
  reload: { params: Omit<Reload, "type">; result: ReloadResult };
  retry_task: { params: Omit<RetryTask, "type">; result: TaskRetried };
  run: { params: Omit<StartRun, "type">; result: RunStarted };
  shutdown: { params: Omit<Shutdown, "type">; result: Done };
  status: { params: Omit<Status, "type">; result: StatusResult };
  subscribe: { params: Omit<Subscribe, "type">; result: Subscribed };
  unsubscribe: { params: Omit<Unsubscribe, "type">; result: Done };
}

export type OrcaMethod = keyof OrcaMethods;
