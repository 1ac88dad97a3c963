import { monotonicMs } from '../../core/clock.js';
import { withCode } from '../../core/errors.js';
import type { Connection, ConnectionOptions } from './connection.js';
import { dial, ingestOptions, type IngestSide } from './mqtt-source.js';

const STOPPED = 'the node stopped before the session was handed over';

/** The broker's connection and the session settings of the node's subscriber, which the old session is taken with. */
export interface HandoverOptions
  extends IngestSide,
    Pick<ConnectionOptions, 'username' | 'password' | 'protocolVersion' | 'sessionExpirySeconds' | 'keepaliveSeconds'> {
  url: string;
  receiveMaximum?: number;
  connectTimeoutMs?: number;
  /** How long the broker must stay quiet, once unsubscribed, before the session is ended (default 1000 ms). */
  quietMs?: number;
  /** The handover fails when this long passes without a CONNACK, a message or the end (default 30 s). */
  stallMs?: number;
}

/** A session the node held under another client id (subscription-memory.ts, otherSessions). */
export interface OldSession {
  /** As the memory names it and the log shows it: MQTT_CLIENT_ID as it was, never a secret suffix. */
  clientId: string;
  /** As the broker knows it (on the own Mosquitto, with the subscriber's secret suffix). */
  wireClientId: string;
  filters: string[];
  /** Deletes the memory's entry: the broker holds nothing for the session any more. */
  forget(): void;
}

/**
 * Takes over the sessions the node held on this broker under an earlier MQTT_CLIENT_ID, so that what the broker
 * queued for them (and, in a Mosquitto share group, keeps handing them) is not left to nobody. For each, one at a
 * time: connect with its client id and a clean start off, subscribe to nothing, take what the broker sends on the
 * node's one ingest path (commit, then PUBACK), UNSUBSCRIBE its filters, and once the broker has been quiet and
 * everything is committed and acknowledged, end the session as a leave does (session-leave.ts). A failure is
 * logged and leaves the memory's entry for the next start; the node's own subscription never waits for this.
 *
 * Its messages carry no connection epoch: the spool's window recognises redeliveries against the node's own
 * session's connections only (spool/inbound-window.ts), and this is another session. What the broker redelivers
 * here (sent to the old session but never acknowledged) is therefore stored again: duplicates, never gaps.
 */
export class SessionHandover {
  private conn: Connection | undefined;
  private stopped = false;
  private stalled: string | undefined;
  private stallTimer: NodeJS.Timeout | undefined;
  private done: Promise<void> = Promise.resolve();

  constructor(
    private readonly o: HandoverOptions,
    private readonly sessions: OldSession[],
  ) {}

  start(): void {
    this.done = this.run().catch((err: Error) => this.failed(undefined, err.message, 0));
  }

  /** Resolves once every session is handed over, has failed, or stop() ended the handover. */
  finished(): Promise<void> {
    return this.done;
  }

  private async run(): Promise<void> {
    for (const session of this.sessions) {
      if (this.stopped) return;
      await this.handOver(session);
    }
  }

  private async handOver(s: OldSession): Promise<void> {
    const started = monotonicMs();
    let messages = 0;
    const outcome = await this.connectOnce(s, false, (n) => (messages += n));
    if (!outcome.left) return this.failed(s, this.stopped ? STOPPED : outcome.reason, messages);
    // MQTT 3.1.1 has no session expiry: a connection with a clean session makes the broker discard the session.
    if (this.o.protocolVersion === 4) {
      if (this.stopped) return this.failed(s, STOPPED, messages);
      const clean = await this.connectOnce(s, true, () => undefined);
      if (!clean.left && this.stopped) return this.failed(s, STOPPED, messages);
      if (!clean.left) return this.failed(s, `the clean-session connection that discards the session failed: ${clean.reason}`, messages);
    }
    s.forget();
    this.o.logger.info(
      withCode('SESSION_HANDED_OVER', { oldClientId: s.clientId, messages, ms: Math.round(monotonicMs() - started) }),
      'took over the session of an earlier client id: its messages are stored, its filters unsubscribed, the session discarded',
    );
  }

  private failed(s: OldSession | undefined, reason: string, messages: number): void {
    this.o.logger.warn(
      withCode('SESSION_HANDOVER_FAILED', { oldClientId: s?.clientId, reason, messages }),
      'could not take over the session of an earlier client id; the next start tries again',
    );
  }

  /** One connection with the old client id: resolves with whether the session was ended (`left`), and why it closed. */
  private async connectOnce(s: OldSession, forget: boolean, taken: (n: number) => void): Promise<{ left: boolean; reason: string }> {
    const o = this.o;
    const timeout = o.connectTimeoutMs ?? 10_000;
    const ingest = ingestOptions(o);
    const { conn, ended } = dial(new URL(o.url), timeout, {
      ...ingest,
      submit: (m) => {
        this.progress();
        taken(m.length);
        return ingest.submit(m);
      },
      clientId: s.wireClientId,
      username: o.username,
      password: o.password,
      // Nothing is subscribed: the leave below unsubscribes the remembered filters as soon as the session is up.
      topics: [],
      protocolVersion: o.protocolVersion,
      sessionExpirySeconds: o.sessionExpirySeconds,
      keepaliveSeconds: o.keepaliveSeconds,
      receiveMaximum: o.receiveMaximum ?? 10_000,
      onEvent: (e) => {
        if (e.type === 'connected') this.progress();
      },
      previousTopics: () => s.filters,
      onSubscribed: () => undefined,
      forget,
    });
    this.conn = conn;
    this.stalled = undefined;
    if (!forget) conn.leave(o.quietMs ?? 1000);
    this.progress();
    try {
      const reason = await ended.catch((err: Error) => err.message);
      return { left: conn.hasLeft, reason: this.stalled ?? reason };
    } finally {
      clearTimeout(this.stallTimer);
      this.conn = undefined;
    }
  }

  /** Something moved: the stall deadline starts again. At the deadline the connection ends politely (the session stays). */
  private progress(): void {
    clearTimeout(this.stallTimer);
    const ms = this.o.stallMs ?? 30_000;
    this.stallTimer = setTimeout(() => {
      this.stalled = `no progress within ${ms} ms`;
      void this.conn?.disconnect();
    }, ms);
    this.stallTimer.unref();
  }

  /** Ends the handover: a connection still open disconnects, the session and the memory's entry stay for the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.conn?.disconnect();
    await this.done;
  }
}
