import { Backoff } from '../../core/backoff.js';
import { sleep } from '../../core/clock.js';
import { withCode } from '../../core/errors.js';
import { redactUrl } from '../../core/redact.js';
import type { Logger } from '../../core/logger.js';
import type { Metrics } from '../../core/metrics.js';
import type { SpoolWriter } from '../../spool/group-commit.js';
import { PublishError, type PublishOptions } from '../intake.js';
import { Connection, type ConnectionEvent, type ConnectionOptions } from './connection.js';
import { OwnEchoes } from './outbound.js';
import { openTransport } from './transport.js';

/** The session settings are the connection's own (connection.ts); the rest is what the source adds. */
export interface MqttSourceOptions
  extends Pick<
    ConnectionOptions,
    'clientId' | 'username' | 'password' | 'topics' | 'protocolVersion' | 'sessionExpirySeconds' | 'keepaliveSeconds' | 'onCommitted'
  > {
  url: string;
  writer: SpoolWriter;
  logger: Logger;
  metrics: Metrics;
  reconnectBaseMs?: number;
  reconnectCapMs?: number;
  /** MQTT 5 Receive Maximum (default 10,000): the broker's in-flight window towards us. */
  receiveMaximum?: number;
  /** Stop reading the socket while this many messages wait for a commit (default 50,000)… */
  pauseAbove?: number;
  /** …or this many payload bytes (default 64 MiB): memory stays bounded whatever the message size. */
  pauseAboveBytes?: number;
  connectTimeoutMs?: number;
  /** Where the filters of the broker's session are remembered (the spool's meta table), to follow MQTT_TOPICS changes. */
  subscriptions?: { load(): string[] | undefined; save(topics: string[]): void; clear?(): void };
  /** How long the broker must stay quiet, once unsubscribed, before a leave disconnects (default 1000 ms). */
  leaveQuietMs?: number;
}

/** What a connection needs to take messages: the spool's group commit, back-pressure, and what follows a commit. */
export type IngestSide = Pick<MqttSourceOptions, 'writer' | 'logger' | 'metrics' | 'onCommitted' | 'pauseAbove' | 'pauseAboveBytes'>;

/**
 * The one way a subscriber connection takes messages (connection.ts): each socket read to the SpoolWriter, the
 * PUBACKs after the commit, the socket paused while too much waits, a failed commit counted and logged.
 */
export function ingestOptions(o: IngestSide): Pick<ConnectionOptions, 'submit' | 'waiting' | 'pauseAbove' | 'onCommitFailed' | 'onCommitted'> {
  return {
    submit: (m) => o.writer.submitMany(m),
    waiting: () => ({ messages: o.writer.waiting, bytes: o.writer.waitingBytes }),
    pauseAbove: { messages: o.pauseAbove ?? 50_000, bytes: o.pauseAboveBytes ?? 64 * 1024 * 1024 },
    onCommitFailed: (err) => {
      o.metrics.rejectedInbound.inc({ reason: 'commit_failed' });
      o.logger.error(withCode('SPOOL_COMMIT_FAILED', { err: err.message }), 'spool commit failed: dropping the connection so the broker redelivers the unacknowledged messages');
    },
    onCommitted: o.onCommitted,
  };
}

/**
 * Opens the transport and starts the session once it is open. `conn` is there at once (a leave can be asked before
 * CONNACK); `ended` resolves with the reason the connection ended, or rejects when the transport never opened.
 */
export function dial(url: URL, timeoutMs: number, options: ConnectionOptions): { conn: Connection; ended: Promise<string> } {
  const transport = openTransport(url, timeoutMs);
  const conn = new Connection(transport.stream, options);
  const ended = transport.ready.then(
    () => {
      conn.start(timeoutMs);
      return conn.done;
    },
    (err: unknown) => {
      transport.stream.destroy();
      throw err;
    },
  );
  return { conn, ended };
}

/** `leaving`: unsubscribing and draining what the broker still sends (leave()); `left`: the broker discarded the session. */
export type SourceState = 'connecting' | 'subscribed' | 'disconnected' | 'stopped' | 'leaving' | 'left';

/**
 * The subscriber for the mosquitto and external modes: a persistent session (clean start off, MQTT 5
 * session expiry), a stable client id, QoS 1 subscriptions, and each PUBACK only after the spool commit,
 * with many messages per commit (see connection.ts). Reconnects with the shared backoff.
 */
export class MqttSource {
  private state: SourceState = 'connecting';
  private lastError: string | undefined;
  private readonly backoff: Backoff;
  private connections = 0;
  private current: Connection | undefined;
  private stopped = false;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private subscribedOnce = false;
  /** The node's own publishes, across connections, so that their echoes are not stored. */
  private readonly echoes = new OwnEchoes();
  private leaveRequested = false;
  private onLeft!: () => void;
  private readonly left = new Promise<void>((resolve) => (this.onLeft = resolve));

  constructor(private readonly opts: MqttSourceOptions) {
    this.backoff = new Backoff({ baseMs: opts.reconnectBaseMs ?? 500, capMs: opts.reconnectCapMs ?? 30_000 });
  }

  start(): void {
    // run() catches what each connection throws; this is the last guard against an unhandled rejection.
    this.loop = this.run().catch((err: Error) => {
      this.lastError = err.message;
      this.setState('disconnected');
      this.opts.logger.error(withCode('SUBSCRIBER_LOOP_FAILED', { err: { message: err.message, stack: err.stack } }), 'subscriber loop failed; it no longer reconnects');
    });
  }

  private async run(): Promise<void> {
    const o = this.opts;
    const url = new URL(o.url);
    while (!this.stopped) {
      this.setState('connecting');
      const reason = await this.connectOnce(url).catch((err: Error) => err.message);
      if (this.stopped) break;
      if (this.current?.hasLeft) return this.afterLeave(url);
      this.lastError = reason;
      this.setState('disconnected');
      const delay = this.backoff.next();
      o.logger.warn(withCode('SUBSCRIBER_DISCONNECTED', { reason, url: redactUrl(o.url), retryInMs: delay }), 'subscriber disconnected; reconnecting');
      await sleep(delay, this.abort.signal);
    }
  }

  /**
   * The broker was told to discard the session. MQTT 3.1.1 has no session expiry: a connection with a clean session
   * makes the broker discard it. The filters remembered for the session go too, so that a later start subscribes afresh.
   */
  private async afterLeave(url: URL): Promise<void> {
    const o = this.opts;
    if (o.protocolVersion === 4) {
      const reason = await this.connectOnce(url, true).catch((err: Error) => err.message);
      if (!this.current?.hasLeft) {
        o.logger.warn(withCode('SUBSCRIBER_DISCONNECTED', { reason }), 'the clean-session connection that discards the session failed: the broker may keep it');
      }
    }
    o.subscriptions?.clear?.();
    this.stopped = true;
    this.setState('left');
    o.logger.info({ clientId: o.clientId, url: redactUrl(o.url) }, 'subscriber left the broker: unsubscribed, drained, session discarded');
    this.onLeft();
  }

  /** One connection's life; resolves with the reason it ended. */
  private async connectOnce(url: URL, forget = false): Promise<string> {
    const o = this.opts;
    const timeout = o.connectTimeoutMs ?? 10_000;
    const receiveMaximum = o.receiveMaximum ?? 10_000;
    // Receive Maximum bounds what the broker holds in flight towards us (MQTT 5); the same bound is assumed
    // of an MQTT 3.1.1 broker (spool/inbound-window.ts, DEFAULT_INFLIGHT_WINDOW).
    const epoch = o.writer.beginConnection(receiveMaximum);
    const { conn, ended } = dial(url, timeout, {
      ...ingestOptions(o),
      clientId: o.clientId,
      username: o.username,
      password: o.password,
      topics: o.topics,
      protocolVersion: o.protocolVersion,
      sessionExpirySeconds: o.sessionExpirySeconds,
      keepaliveSeconds: o.keepaliveSeconds,
      receiveMaximum,
      epoch,
      onEvent: (e) => this.onEvent(e),
      previousTopics: () => o.subscriptions?.load(),
      onSubscribed: (topics) => o.subscriptions?.save(topics),
      ownEcho: (topic, payload) => this.echoes.take(topic, payload),
      forget,
    });
    this.current = conn;
    if (this.leaveRequested) conn.leave(o.leaveQuietMs ?? 1000);
    try {
      return await ended;
    } finally {
      // The connection is closed: it writes nothing more, so where its PUBACKs stopped is final.
      o.writer.endConnection(epoch, conn.acksWrittenUpTo);
    }
  }

  private onEvent(e: ConnectionEvent): void {
    const o = this.opts;
    const log = o.logger;
    switch (e.type) {
      case 'connected':
        this.connections += 1;
        if (this.connections > 1) o.metrics.sourceReconnects.inc();
        this.backoff.reset();
        log.info({ sessionPresent: e.sessionPresent, clientId: o.clientId }, 'subscriber connected');
        if (!e.sessionPresent && this.subscribedOnce) {
          log.warn(
            withCode('SUBSCRIBER_SESSION_LOST', { clientId: o.clientId }),
            'the broker had no session for this client id: messages published while the node was away may not have been queued (broker restarted without persistence, or session expired)',
          );
        }
        return;
      case 'subscribed':
        this.subscribedOnce = true;
        if (e.granted.length > 0) log.info({ topics: o.topics }, 'subscribed');
        if (!this.leaveRequested) this.setState('subscribed');
        return;
      case 'downgraded':
        log.warn(withCode('SUBSCRIPTION_QOS0', { topics: e.topics }), 'broker granted QoS 0 only: those messages are not redelivered after a crash');
        return;
      case 'subscribe-refused':
        this.lastError = `broker refused subscriptions: ${e.topics.join(', ')}`;
        log.error(withCode('SUBSCRIPTION_REFUSED', { topics: e.topics }), 'broker refused some subscriptions (check the broker ACL for the subscriber)');
        return;
      case 'refused':
        log.error(withCode('SUBSCRIBER_REFUSED', { reason: e.reason, url: redactUrl(o.url) }), 'broker refused the subscriber connection');
        return;
      case 'server-disconnect':
      case 'protocol-error':
        log.warn(withCode('SUBSCRIBER_DISCONNECTED', { reason: e.reason }), 'subscriber connection ended by the broker');
        return;
    }
  }

  private setState(state: SourceState): void {
    this.state = state;
    this.opts.metrics.sourceConnected.set(state === 'subscribed' ? 1 : 0);
  }

  isReady(): boolean {
    return this.state === 'subscribed' && this.current?.isConnected === true;
  }

  status(): { state: SourceState; clientId: string; url: string; lastError?: string; connections: number } {
    const leaving = this.leaveRequested && this.state !== 'left' && this.state !== 'stopped';
    return { state: leaving ? 'leaving' : this.state, clientId: this.opts.clientId, url: redactUrl(this.opts.url), lastError: this.lastError, connections: this.connections };
  }

  /**
   * Publishes on the current connection (the node's own commands, outbound.ts). Refused while there is none: the
   * caller retries later; nothing waits here for the next connection.
   */
  async publish(topic: string, payload: Buffer, opts: PublishOptions): Promise<void> {
    const conn = this.current;
    if (this.stopped || !conn?.isConnected) {
      throw new PublishError('unavailable', `not published: the subscriber is ${this.state}${this.lastError ? ` (${this.lastError})` : ''}`);
    }
    const echo = this.echoes.remember(topic, payload);
    try {
      await conn.publish(topic, payload, opts);
    } catch (err) {
      // Not sent, or refused: no echo comes. One `lost` with the connection may have reached the broker: kept.
      if (!(err instanceof PublishError && err.reason === 'lost')) this.echoes.forget(echo);
      throw err;
    }
  }

  /**
   * Leaves the broker for good (connection.ts, leave()): unsubscribes every filter, takes what the broker still sends
   * until every message is committed and acknowledged, disconnects so that the broker discards the session, and does
   * not reconnect. While the broker cannot be reached it keeps reconnecting, and leaves once connected. Resolves
   * once left, or once stop() ends it first. Idempotent.
   */
  leave(): Promise<void> {
    if (!this.leaveRequested && !this.stopped) {
      this.leaveRequested = true;
      this.setState('leaving');
      this.current?.leave(this.opts.leaveQuietMs ?? 1000);
    }
    if (this.stopped && this.state !== 'left') this.onLeft();
    return this.left;
  }

  /** Disconnects; messages not yet committed stay unacknowledged and are redelivered later. */
  async stop(): Promise<void> {
    if (this.state === 'left') return;
    this.stopped = true;
    this.onLeft();
    this.setState('stopped');
    this.abort.abort();
    await this.current?.disconnect();
    await this.loop;
  }
}

