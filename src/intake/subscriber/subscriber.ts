import { subscribedFilters } from '../config.js';
import { PublishError, type IntakeDeps, type PublishOptions } from '../intake.js';
import { MqttSource } from './mqtt-source.js';
import { SessionHandover } from './session-handover.js';
import { otherSessions, subscriptionMemory, subscriptionsKey } from './subscription-memory.js';

/** The broker session the subscriber joins. */
export interface SubscriberSession {
  url: string;
  username: string | undefined;
  password: string | undefined;
  clientId: string;
  /**
   * `clientId` is MQTT_CLIENT_ID plus a secret suffix (mosquitto/internal-credential.ts): the suffix stays out
   * of the log, the readiness JSON and the meta table.
   */
  secretClientId: boolean;
  /** Who the broker is, stable across restarts and without credentials (subscription-memory.ts). */
  broker: string;
  /** Where an older node kept the session's filters, read once when the session key holds none. */
  legacyKey?: string;
}

/**
 * The node's subscriber in the mosquitto and external modes, built from the configuration: MQTT_TOPICS (shared
 * subscriptions of MQTT_SHARE_GROUP when it is set) on a persistent session, each PUBACK after the spool commit
 * (mqtt-source.ts), the session's filters remembered in the spool's meta table under the broker's identity and the
 * client id.
 */
export class Subscriber {
  private source: MqttSource | undefined;
  private handover: SessionHandover | undefined;
  private secret = false;
  private stopped = false;

  constructor(private readonly deps: IntakeDeps) {}

  /** Connects (and keeps reconnecting) once the broker accepts connections. Does nothing after stop(). */
  start(session: SubscriberSession): void {
    if (this.stopped || this.source) return;
    const { config: c, logger, metrics, writer, meta, onCommitted } = this.deps;
    const memory = subscriptionMemory(meta, subscriptionsKey(session.broker, c.MQTT_CLIENT_ID), session.legacyKey);
    const log = session.secretClientId
      ? logger.child(
          { component: 'source' },
          { redact: { paths: ['clientId', 'password', '*.password'], censor: (v: unknown) => (typeof v === 'string' && v.startsWith(c.MQTT_CLIENT_ID) ? this.shownClientId() : '[redacted]') } },
        )
      : logger.child({ component: 'source' });
    this.source = new MqttSource({
      url: session.url,
      clientId: session.clientId,
      username: session.username,
      password: session.password,
      // With MQTT_SHARE_GROUP, `$share/<group>/<filter>`: the memory then holds those, so a changed group is an
      // old filter to unsubscribe and a new one to subscribe, like any change of MQTT_TOPICS.
      topics: subscribedFilters(c.MQTT_TOPICS, c.MQTT_SHARE_GROUP),
      protocolVersion: c.MQTT_PROTOCOL_VERSION,
      sessionExpirySeconds: c.MQTT_SESSION_EXPIRY_SECONDS,
      keepaliveSeconds: c.MQTT_KEEPALIVE_SECONDS,
      writer,
      subscriptions: memory,
      logger: log,
      metrics,
      onCommitted,
      reconnectBaseMs: Math.min(c.RETRY_INITIAL_DELAY_MS, 1000),
      reconnectCapMs: c.RETRY_MAX_DELAY_MS,
    });
    this.secret = session.secretClientId;
    this.source.start();
    this.handOver(session, log);
  }

  /**
   * The sessions this DATA_DIR's node held on the same broker under an earlier MQTT_CLIENT_ID (a changed value, or
   * the default derived from another host name) are taken over and ended (session-handover.ts). This runs beside
   * the node's own subscription, which starts first and never waits for it: readiness comes as soon as the node's
   * session is subscribed, however long the old one takes to drain. Both take messages into the one spool; the old
   * session's filters are unsubscribed at once, so it receives only what was already queued or in flight for it.
   */
  private handOver(session: SubscriberSession, logger: IntakeDeps['logger']): void {
    const { config: c, metrics, writer, meta, onCommitted } = this.deps;
    const old = otherSessions(meta, session.broker, c.MQTT_CLIENT_ID);
    if (old.length === 0) return;
    // On the own Mosquitto the broker knows the session with the secret suffix, which stays the same per DATA_DIR.
    const suffix = session.secretClientId ? session.clientId.slice(c.MQTT_CLIENT_ID.length) : '';
    this.handover = new SessionHandover(
      {
        url: session.url,
        username: session.username,
        password: session.password,
        protocolVersion: c.MQTT_PROTOCOL_VERSION,
        sessionExpirySeconds: c.MQTT_SESSION_EXPIRY_SECONDS,
        keepaliveSeconds: c.MQTT_KEEPALIVE_SECONDS,
        writer,
        logger,
        metrics,
        onCommitted,
      },
      old.map((o) => ({ clientId: o.clientId, wireClientId: `${o.clientId}${suffix}`, filters: o.filters, forget: () => meta.deleteMeta(o.key) })),
    );
    this.handover.start();
  }

  private shownClientId(): string {
    return `${this.deps.config.MQTT_CLIENT_ID}-[redacted]`;
  }

  /** Subscribed on a live connection. */
  isReady(): boolean {
    return this.source?.isReady() ?? false;
  }

  /** Connected and subscribed, whatever the socket does this instant: the external broker's 'up'. */
  isSubscribed(): boolean {
    return this.source?.status().state === 'subscribed';
  }

  /** Why it takes no messages, when it takes none. */
  notReadyReason(): string | undefined {
    if (this.isReady()) return undefined;
    const s = this.source?.status();
    if (!s) return 'the subscriber has not started';
    return `the subscriber is ${s.state}${s.lastError ? `: ${s.lastError}` : ''}`;
  }

  /** `components.source` of the readiness JSON, without the secret part of the client id. */
  status(): Record<string, unknown> {
    const status = this.source?.status();
    if (!status) return { state: 'starting' };
    return this.secret ? { ...status, clientId: this.shownClientId() } : status;
  }

  /** The node's own publish on the subscriber's session (mqtt-source.ts); refused while it is not connected. */
  publish(topic: string, payload: Buffer, opts: PublishOptions): Promise<void> {
    if (!this.source) return Promise.reject(new PublishError('unavailable', 'not published: the subscriber has not started'));
    return this.source.publish(topic, payload, opts);
  }

  /**
   * Leaves the broker for good (mqtt-source.ts): unsubscribes, drains what it has in flight and what the broker
   * still sends, disconnects so that the broker discards the session, and never reconnects. Idempotent.
   */
  leave(): Promise<void> {
    if (!this.source) {
      this.stopped = true;
      return Promise.resolve();
    }
    // A node that leaves for good hands its old sessions over first, or nobody ever would.
    return Promise.all([this.source.leave(), this.handover?.finished()]).then(() => undefined);
  }

  /** Disconnects; messages not yet committed stay unacknowledged at the broker. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([this.source?.stop(), this.handover?.stop()]);
  }
}
