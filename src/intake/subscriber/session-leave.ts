import { monotonicMs } from '../../core/clock.js';

/** Where a leave is: the UNSUBSCRIBE not sent yet, sent, answered (the broker's window draining), done. */
type LeavePhase = 'waiting' | 'unsubscribing' | 'draining' | 'left';

/** What a leave needs of its connection (connection.ts). */
export interface LeavingConnection {
  /** Nothing more arrives after this long without a PUBLISH once the filters are unsubscribed. */
  quietMs: number;
  /** Every message received is committed and its acknowledgement written; the socket is being read. */
  settled(): boolean;
  /** Sends the UNSUBSCRIBE of every filter; false when the session's packet id is still in use (sent later). */
  unsubscribe(): boolean;
  /** DISCONNECT so that the broker discards the session, then close. */
  disconnect(): void;
}

/**
 * Leaving the broker for good on one connection (`mqtt-ingest leave`, docs/operations.md): UNSUBSCRIBE every
 * filter, so that the broker hands the group's messages to the other members; go on taking what it still sends
 * (its in-flight window, what it had queued for this session) until every message received is committed and
 * acknowledged and nothing has come for `quietMs`; then DISCONNECT so that the broker discards the session.
 */
export class SessionLeave {
  private phase: LeavePhase = 'waiting';
  private timer: NodeJS.Timeout | undefined;
  /** When the last PUBLISH came, the UNSUBACK, or the connection was last seen unsettled (monotonic ms). */
  private lastArrival = 0;

  constructor(private readonly c: LeavingConnection) {}

  get left(): boolean {
    return this.phase === 'left';
  }

  /** The session is up (CONNACK): a session the broker kept is unsubscribed; without one there is nothing to drain. */
  up(sessionPresent: boolean): void {
    if (sessionPresent) this.sendUnsubscribe();
    else this.leaveNow();
  }

  /** Sends the UNSUBSCRIBE if it has not gone yet (again after the session's previous UNSUBACK). */
  sendUnsubscribe(): void {
    if (this.phase === 'waiting' && this.c.unsubscribe()) this.phase = 'unsubscribing';
  }

  arrived(): void {
    this.lastArrival = monotonicMs();
  }

  /** The broker answered the session's UNSUBSCRIBE (packet id 2): the leave's own, or the one it waited for. */
  unsubacked(): void {
    if (this.phase === 'waiting') return this.sendUnsubscribe();
    if (this.phase !== 'unsubscribing') return;
    this.phase = 'draining';
    this.lastArrival = monotonicMs();
    this.timer = setInterval(() => {
      // Quiet counts from when everything is acknowledged: the broker sends more of the session's queue only as its
      // in-flight window frees, so a commit that took longer than quietMs (a full spool, a slow disk) must not pass
      // for silence while the rest of the queue waits for those PUBACKs; discarding the session would drop it.
      if (!this.c.settled()) this.lastArrival = monotonicMs();
      else if (monotonicMs() - this.lastArrival >= this.c.quietMs) this.leaveNow();
    }, 50);
  }

  leaveNow(): void {
    this.close();
    this.phase = 'left';
    this.c.disconnect();
  }

  close(): void {
    clearInterval(this.timer);
  }
}
