import { withCode } from './core/errors.js';
import type { Logger } from './core/logger.js';
import type { Intake } from './intake/intake.js';

/** `leaving` until done; `deadline_passed` once the deadline went by first (the node goes on delivering); `left`. */
export type LeaveState = 'leaving' | 'left' | 'deadline_passed';

/** `components.leave` of the readiness JSON. */
export interface LeaveStatus {
  state: LeaveState;
  startedAt: string;
  deadlineAt: string;
  /** Messages in the spool, still to be delivered to the sinks (dead letters are not counted: they stay). */
  spoolMessages: number;
  detail: string;
}

/** What POST /leave answers: the HTTP status and its JSON body. */
export interface LeaveAnswer {
  status: number;
  body: Record<string, unknown>;
}

/** What a leave reads of the node (node.ts). */
export interface LeaveDeps {
  intake(): Intake | undefined;
  /** Messages in the spool and waiting for the group commit; undefined once the spool is closed. */
  held(): { spool: number; committing: number; pending: Record<string, number> } | undefined;
  stopping(): boolean;
  logger: Logger;
  pollMs?: number;
}

/**
 * `mqtt-ingest leave` on the node's side (POST /leave, docs/operations.md "Scaling down"): the intake stops taking
 * messages for good (Intake.leave), then the node waits until the spool is empty or the deadline passes. It never
 * takes messages again: after `left` it stays up, taking nothing, until SIGTERM (a container that exited would be
 * restarted and rejoin).
 */
export class NodeLeave {
  private current: LeaveStatus | undefined;
  private deadlineMs = 0;
  private intakeLeft = false;
  private intakeFailure: string | undefined;

  constructor(private readonly deps: LeaveDeps) {}

  /** Whether a leave was asked: the node is no longer ready, whatever its state. */
  get active(): boolean {
    return this.current !== undefined;
  }

  status(): LeaveStatus | undefined {
    if (this.current && this.current.state !== 'left') this.current.spoolMessages = this.deps.held()?.spool ?? this.current.spoolMessages;
    return this.current === undefined ? undefined : { ...this.current };
  }

  /**
   * Starts the leave (202), or reports the one under way (200). After `deadline_passed` a new call sets a new
   * deadline. Refused while the node starts or stops (503, 409), and when the intake refuses (409: the mosquitto mode
   * with MQTT_SHARE_GROUP, whose Mosquitto other nodes subscribe to).
   */
  begin(deadlineSeconds: number): LeaveAnswer {
    const intake = this.deps.intake();
    if (this.current?.state === 'deadline_passed') {
      this.setDeadline(deadlineSeconds);
      this.current.state = 'leaving';
      this.deps.logger.info(withCode('NODE_LEAVING', { deadlineSeconds, deadlineAt: this.current.deadlineAt, again: true }), 'leaving: a new deadline');
      return { status: 202, body: { leave: this.status() } };
    }
    if (this.current) return { status: 200, body: { leave: this.status(), note: `a leave is already ${this.current.state === 'left' ? 'done' : 'under way'}; its deadline is unchanged` } };
    if (this.deps.stopping()) return { status: 409, body: { error: 'the node is stopping' } };
    if (!intake) return { status: 503, body: { error: 'the node is still starting; ask again once it is up' } };
    const refusal = intake.leaveRefusal();
    if (refusal) return { status: 409, body: { error: refusal, code: 'LEAVE_REFUSED' } };
    const startedAt = new Date();
    this.current = { state: 'leaving', startedAt: startedAt.toISOString(), deadlineAt: '', spoolMessages: this.deps.held()?.spool ?? 0, detail: 'stopping taking messages' };
    this.setDeadline(deadlineSeconds);
    this.deps.logger.info(
      withCode('NODE_LEAVING', { mode: intake.mode, deadlineSeconds, deadlineAt: this.current.deadlineAt, spoolMessages: this.current.spoolMessages }),
      'leaving: no new messages are taken; the spool is drained to the sinks',
    );
    void this.run(intake);
    return { status: 202, body: { leave: this.status() } };
  }

  private setDeadline(seconds: number): void {
    this.deadlineMs = Date.now() + seconds * 1000;
    this.current!.deadlineAt = new Date(this.deadlineMs).toISOString();
  }

  private async run(intake: Intake): Promise<void> {
    const started = Date.now();
    intake.leave().then(
      () => (this.intakeLeft = true),
      (err: Error) => (this.intakeFailure = err.message),
    );
    const l = this.current!;
    while (!this.deps.stopping()) {
      const held = this.deps.held();
      if (!held) return;
      l.spoolMessages = held.spool;
      if (this.intakeLeft && held.spool === 0 && held.committing === 0) {
        l.state = 'left';
        l.detail = leftDetail(intake.mode);
        this.deps.logger.info(withCode('NODE_LEFT', { mode: intake.mode, ms: Date.now() - started }), `left: ${l.detail}`);
        return;
      }
      l.detail = this.progress(intake, held);
      if (l.state === 'leaving' && Date.now() >= this.deadlineMs) {
        l.state = 'deadline_passed';
        this.deps.logger.warn(
          withCode('NODE_LEAVE_DEADLINE_PASSED', { spoolMessages: held.spool, pending: held.pending, detail: l.detail }),
          `the leave's deadline passed: ${l.detail}; the node goes on delivering and taking nothing`,
        );
      }
      await new Promise((r) => setTimeout(r, this.deps.pollMs ?? 200));
    }
  }

  private progress(intake: Intake, held: { spool: number; committing: number; pending: Record<string, number> }): string {
    if (this.intakeFailure) return `the intake could not leave: ${this.intakeFailure}`;
    if (!this.intakeLeft) {
      const step = intake.leaveProgress?.();
      if (step) return `the intake is still leaving: ${step}`;
      const source = intake.status().source as { state?: string; lastError?: string };
      const why = source.state === 'leaving' || source.state === 'connecting' || source.state === 'disconnected' ? `the subscriber is ${source.state}${source.lastError ? ` (${source.lastError})` : ''}` : 'closing';
      return `the intake is still leaving: ${why}`;
    }
    const sinks = Object.entries(held.pending).filter(([, n]) => n > 0).map(([sink, n]) => `${sink} ${n}`);
    return `${held.spool} messages in the spool still to deliver${sinks.length > 0 ? ` (${sinks.join(', ')})` : ''}`;
  }
}

const LEFT: Record<Intake['mode'], string> = {
  external: 'unsubscribed and the broker told to discard the session',
  embedded: "the node's broker closed and its publishers disconnected",
  mosquitto:
    "the node's Mosquitto closed its public listeners (its publishers disconnected), handed the node everything it held for the node's session, discarded the session and was stopped",
};

function leftDetail(mode: Intake['mode']): string {
  const intake = LEFT[mode];
  return `${intake}; the spool is empty (dead letters stay); the node takes nothing until it is stopped (SIGTERM)`;
}
