/**
 * A run's log as text for an output channel: its agents' output, and a line for each question,
 * answer, session end and the run's outcome. Pure: fed the run's events (from `read`, then live), it
 * returns what to append, each position once.
 */
import type { EventRecord, Question } from "./protocol.generated";

const TERMINAL: ReadonlySet<string> = new Set(["completed", "failed", "cancelled"]);

type Ev = { type: string; run_id: string; session_id?: string; [key: string]: unknown };

export class RunLog {
  private position = 0;
  private readonly agents = new Map<string, string>();
  private readonly midLine = new Set<string>();

  constructor(readonly runId: string) {}

  /** The last position appended: read on from here. */
  get after(): number {
    return this.position;
  }

  /** The text to append for `record` ("" for an event of another run or one seen already). */
  append(record: EventRecord): string {
    const event = record.event as Ev;
    if (record.position <= this.position || event.run_id !== this.runId) return "";
    this.position = record.position;
    const session = event.session_id ?? "";
    switch (event.type) {
      case "session_created":
        this.agents.set(session, event.agent as string);
        return "";
      case "output_appended":
        return this.output(session, event.text as string);
      case "question_asked":
        return this.note(
          (event.questions as Question[]).map((q) => `asks: [${q.id}] ${q.question}`).join("\n"),
        );
      case "question_answered":
        return this.note(`answered by ${event.answered_by as string}`);
      case "question_cleared":
        return this.note(`question withdrawn: ${event.reason as string}`);
      case "session_terminated": {
        const summary = (event.summary as string | null | undefined) ?? (event.reason as string);
        return this.note(`session ${session} ${event.status as string}: ${summary}`);
      }
      case "run_status_changed": {
        if (!TERMINAL.has(event.status as string)) return "";
        const reason = event.reason ? `: ${event.reason as string}` : "";
        return this.note(`run ${(event.status as string).replaceAll("_", " ")}${reason}`);
      }
      default:
        return "";
    }
  }

  private prefix(session: string): string {
    const agent = this.agents.get(session) ?? "";
    const suffix = session.slice(session.indexOf(".") + 1);
    return `[${suffix}${agent ? ` ${agent}` : ""}] `;
  }

  private output(session: string, text: string): string {
    if (!text) return "";
    const prefix = this.agents.size > 1 ? this.prefix(session) : "";
    let out = "";
    for (const piece of text.split(/(?<=\n)/)) {
      out += this.midLine.has(session) ? piece : prefix + piece;
      if (piece.endsWith("\n")) this.midLine.delete(session);
      else this.midLine.add(session);
    }
    return out;
  }

  private note(text: string): string {
    const lead = this.midLine.size ? "\n" : "";
    this.midLine.clear();
    return `${lead}── ${text}\n`;
  }
}

/** A `read` request (the bridge's, or a stand-in). */
export type ReadEvents = (params: { after: number; limit: number; run_id: string }) => Promise<{
  events: EventRecord[];
}>;

/** Reads the run's whole log so far into `log`, page by page; returns the text. */
export async function loadRunLog(read: ReadEvents, log: RunLog, limit = 1000): Promise<string> {
  let text = "";
  for (;;) {
    const page = await read({ after: log.after, limit, run_id: log.runId });
    for (const record of page.events) text += log.append(record);
    if (page.events.length < limit) return text;
  }
}
