import type { Aedes, Client, PublishPacket } from 'aedes';
import fs from 'node:fs';
import { withCode } from '../../core/errors.js';
import type { IngestError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { BrokerMetrics } from '../broker-metrics.js';
import { RateLimitedWarnings } from './inbound-rejections.js';
import { BrokerStore, type AnyPacket } from './broker-store/broker-store.js';
import type { RetainedLimits } from './retained-limits.js';
import type { EmbeddedLimits } from '../security/policy.js';

/** How often disconnected sessions are checked for their expiry (they also are at each start). */
const EXPIRY_SWEEP_MS = 30_000;
/** MQTT 5's Session Expiry Interval that means "never" (§3.1.2.11.2). */
const NEVER_EXPIRES = 0xffffffff;
/** Client input in log lines is cut to this length. */
const MAX_LOGGED = 200;

/** What the broker's state needs of the broker around it. */
export interface BrokerStateOptions {
  /** DATA_DIR/broker/state.db. */
  file: string;
  limits: EmbeddedLimits;
  retained: RetainedLimits;
  metrics: BrokerMetrics;
  logger: Logger;
  /** Takes a will of a previous run into the spool, as authorizePublish takes a client's message. */
  storeWill: (packet: PublishPacket) => Promise<void>;
}

type SessionClient = Client & { clean?: boolean; version?: number; sessionExpiryInterval?: number };

/**
 * The embedded broker's state on disk (broker-store/, one SQLite file beside the spool): what makes sessions, queued
 * messages, retained messages and wills survive a restart, and what Aedes 2.0.0-beta.1 leaves out around its
 * persistence:
 * - a damaged file is set aside (`state.db.damaged-<time>`) and the broker starts empty, said at error level: the
 *   spool and the intake do not depend on it, other subscribers' sessions do;
 * - the retained limits (retained-limits.ts) count what the file holds at start, and a message over a lowered limit
 *   is deleted;
 * - wills of clients connected when the previous run ended (a crash: a clean stop publishes them) are taken into the
 *   spool and published at start (Aedes would do so only at its first will sweep, minutes later);
 * - a clean session's incoming QoS 2 packets are deleted when it disconnects (Aedes 1.2.0 does, 2.0.0-beta.1 not);
 * - a disconnected persistent session ends after its expiry also across restarts: MQTT 5's Session Expiry Interval
 *   (Aedes clamps it to MQTT_MAX_SESSION_EXPIRY_SECONDS, and keeps its timer in memory only), and for MQTT 3.1.1, which
 *   has none, MQTT_MAX_SESSION_EXPIRY_SECONDS, as Mosquitto's persistent_client_expiration;
 * - a message not queued for a full session queue (MQTT_MAX_QUEUED_MESSAGES) is counted and logged.
 */
export class DurableBrokerState {
  readonly store: BrokerStore;
  private readonly log: Logger;
  private readonly warnings: RateLimitedWarnings<'queue_full'>;
  private sweepTimer: NodeJS.Timeout | undefined;
  private aedes: Aedes | undefined;

  constructor(private readonly o: BrokerStateOptions) {
    this.log = o.logger;
    this.warnings = new RateLimitedWarnings({ logger: o.logger, code: () => 'BROKER_QUEUE_FULL' });
    this.store = this.open();
    for (const [topic, bytes] of this.store.retainedSizes()) {
      if (o.retained.admit(topic, bytes).keep) continue;
      // Kept by a run with higher limits: over the limits now, so not kept (as a new one would not be).
      void this.store.storeRetained({ cmd: 'publish', topic, payload: Buffer.alloc(0), qos: 0, retain: true, dup: false } as AnyPacket);
    }
    o.metrics.retainedMessages.set(o.retained.messages);
    o.metrics.retainedBytes.set(o.retained.bytes);
    o.metrics.stateNow = () => {
      const s = this.store.stats();
      return { sessions: s.sessions, queuedMessages: s.queuedMessages, bytes: s.fileBytes };
    };
  }

  private open(): BrokerStore {
    const o = this.o;
    const opts = { file: o.file, maxQueuedPerClient: o.limits.maxQueuedMessages, onQueueDropped: (id: string, n: number) => this.dropped(id, n) };
    try {
      return new BrokerStore(opts);
    } catch (err) {
      if ((err as IngestError).code !== 'BROKER_STATE_DAMAGED') throw err;
      const setAside = `${o.file}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      fs.renameSync(o.file, setAside);
      for (const suffix of ['-wal', '-shm']) fs.rmSync(o.file + suffix, { force: true });
      this.log.error(
        withCode('BROKER_STATE_DAMAGED', { file: o.file, setAside, err: (err as Error).message }),
        "the embedded broker's state file could not be read: set aside, the broker starts with no sessions, queued or retained messages",
      );
      return new BrokerStore(opts);
    }
  }

  /** Once Aedes exists, before the listeners open: expired sessions end, the previous run's wills are published. */
  async attach(aedes: Aedes): Promise<void> {
    this.aedes = aedes;
    // Sessions connected when the previous run crashed: their disconnect (and MQTT 5 interval) was never seen. They
    // end after the longest any session may last, counted from this start: never before their time, and never kept
    // for good.
    const until = Date.now() + this.o.limits.maxSessionExpirySeconds * 1000;
    for (const clientId of this.store.sessionsWithoutExpiry()) this.store.noteSessionEnd(clientId, until);
    aedes.on('client', (client) => this.store.noteSessionResumed(client.id));
    aedes.on('clientDisconnect', (client) => this.disconnected(client as SessionClient));
    await this.sweep();
    await this.previousWills(aedes);
    this.sweepTimer = setInterval(() => void this.sweep(), EXPIRY_SWEEP_MS);
    this.sweepTimer.unref();
  }

  /** Also for each client Aedes's close disconnects: their sessions' expiry starts with the stop. */
  private disconnected(client: SessionClient): void {
    if (client.clean) {
      void this.store.cleanIncoming(client).catch((err: Error) => this.failed('clean a session', err));
      return;
    }
    const limit = this.o.limits.maxSessionExpirySeconds;
    // MQTT 5: the client's interval, which Aedes already clamped to the limit; MQTT 3.1.1: the limit.
    const seconds = client.version === 5 ? (client.sessionExpiryInterval ?? 0) : limit;
    if (seconds >= NEVER_EXPIRES) return;
    this.store.noteSessionEnd(client.id, Date.now() + seconds * 1000);
  }

  /** Ends the sessions whose expiry passed and whose client is not connected. */
  private async sweep(): Promise<void> {
    try {
      for (const clientId of this.store.expiredSessions(Date.now())) {
        if ((this.aedes as unknown as { clients?: Record<string, unknown> } | undefined)?.clients?.[clientId]) {
          this.store.noteSessionResumed(clientId);
          continue;
        }
        const subscriptions = (await this.store.subscriptionsByClient({ id: clientId })).length;
        this.store.wipeSession(clientId);
        // Aedes's own timer may have ended it already in this run: said once, by whichever found it whole.
        if (subscriptions > 0) {
          this.log.info(withCode('BROKER_SESSION_EXPIRED', { clientId: clientId.slice(0, MAX_LOGGED), subscriptions }), 'a disconnected persistent session expired');
        }
      }
    } catch (err) {
      this.failed('end expired sessions', err as Error);
    }
  }

  /** Wills left by a previous run (another broker id): its clients' connections ended with it. */
  private async previousWills(aedes: Aedes): Promise<void> {
    const wills: AnyPacket[] = [];
    for await (const will of this.store.streamWill({ [aedes.id]: Date.now() })) wills.push(will as AnyPacket);
    for (const will of wills) {
      const packet = will as unknown as PublishPacket & { clientId?: string };
      try {
        await this.o.storeWill(packet);
        await new Promise<void>((resolve) => aedes.publish(packet, () => resolve()));
        await this.store.delWill({ id: packet.clientId ?? '' });
      } catch (err) {
        // Left in the file: Aedes's will sweep tries it again.
        this.failed('publish a will of the previous run', err as Error);
      }
    }
    if (wills.length > 0) this.log.info({ wills: wills.length }, 'published the wills of clients connected when the previous run ended');
  }

  private dropped(clientId: string, count: number): void {
    this.o.metrics.queuedDropped.inc(count);
    this.warnings.warn(
      'queue_full',
      { clientId: clientId.slice(0, MAX_LOGGED), dropped: count, maxQueuedMessages: this.o.limits.maxQueuedMessages },
      'a persistent session\'s queue is full (MQTT_MAX_QUEUED_MESSAGES): messages not queued for it (they are in the spool)',
    );
  }

  private failed(what: string, err: Error): void {
    this.log.error(withCode('BROKER_ERROR', { err: err.message }), `embedded broker state: could not ${what}`);
  }

  /** After Aedes's close (which does not close its persistence). */
  async close(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.o.metrics.stateNow = () => undefined;
    await this.store.destroy();
  }
}
