import { Aedes, type Client, type PublishPacket } from 'aedes';
import type { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { OWN_BROKER_MQTT_VERSIONS, PublishError, type BrokerStatus, type PublishOptions } from '../intake.js';
import { topicNameProblem } from '../../core/mqtt-topic.js';
import { BrokerError, withCode } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Metrics } from '../../core/metrics.js';
import type { SpoolWriter } from '../../spool/group-commit.js';
import { brokerMetrics, type BrokerMetrics, type RefusalReason, type RetainedRefusalReason } from '../broker-metrics.js';
import { InboundRejections, RateLimitedWarnings } from './inbound-rejections.js';
import { listenMqtt, listenMqtts, listenWebSocket, type Listener, type ListenerEvents, type TlsServerOptions } from '../security/listeners.js';
import { EmbeddedAuth, type ListenerKind } from './embedded-auth.js';
import { ListenerTls } from '../security/listener-tls.js';
import { GuardedStream, PartialPacketBudget, type StreamRefusal } from './guarded-stream.js';
import { DEFAULT_EMBEDDED_LIMITS, openPlaintext, type BrokerSecurity, type EmbeddedLimits } from '../security/policy.js';
import { limitRetained, RetainedLimits } from './retained-limits.js';
import { DurableBrokerState } from './broker-state.js';
import { answerRefused, isMqtt5, NOT_AUTHORIZED, publishProperties, QUOTA_EXCEEDED, refuseUnacknowledged, SPOOL_FULL_REASON } from './mqtt5.js';

export interface EmbeddedBrokerOptions {
  host: string;
  port: number;
  /** Listeners, users, ACL and limits. Omitted: one plaintext listener on host:port for anonymous clients. */
  security?: BrokerSecurity;
  /** MQTT_CLIENT_ID: no client may use the subscriber's id here (see embedded-auth.ts). */
  reservedClientId?: string;
  /** How long a connection may stay without CONNECT (Aedes's default, 30 s). */
  connectTimeoutMs?: number;
  writer: SpoolWriter;
  logger: Logger;
  metrics: Metrics;
  /** Called after each commit, so the dispatcher leases new rows at once. */
  onCommitted: () => void;
  /**
   * DATA_DIR/broker/state.db: sessions, queued and retained messages and wills survive a restart (broker-state.ts).
   * Omitted (in-process tests): Aedes's memory store.
   */
  stateFile?: string;
}

/** Parser errors of mqtt-packet and Aedes that mean a CONNECT with another protocol, not random bytes. */
const BAD_PROTOCOL = /Invalid protocolId|Invalid protocol version|unacceptable protocol version/i;
/** Aedes's words when it refuses a PUBLISH before our hooks (lib/handlers/publish.js); it then closes the connection. */
const INVALID_PUBLISH_TOPIC = /^(empty topic not allowed in PUBLISH|[#+] is not allowed in PUBLISH|topic has too many levels)$/;
/** Client input in log lines is cut to this length (a topic may be 64 KiB). */
const MAX_LOGGED_TOPIC = 200;


/**
 * The in-process broker (Aedes). Messages are taken in Aedes's `authorizePublish` hook, which runs
 * before Aedes writes the QoS 1 PUBACK (lib/handlers/publish.js: authorizePublish → enqueuePublish,
 * which writes the PUBACK and then publishes). Calling the hook back only after the spool commit makes
 * the publisher's PUBACK follow durability (MQTT-4.3.2), with no loopback subscription whose in-memory
 * queue would die with the process. Aedes dispatches all packets of a socket read chunk concurrently,
 * so the group commit takes many messages per transaction.
 *
 * Security (same files and meaning as the Mosquitto mode; see embedded-auth.ts): a plaintext, a TLS
 * and a WebSocket listener as configured, passwords, ACL, mTLS, a connection limit per listener, and SIGHUP
 * reloads. Limits that Aedes lacks, on what any client can make the node hold (docs/security.md): packet size, a
 * smaller size for the CONNECT, a budget and a stall timeout for incomplete packets, and the UTF-8 check of topics
 * on the raw bytes (packet-guard.ts); the count and bytes of retained messages (retained-limits.ts).
 */
export class EmbeddedBroker {
  readonly mode = 'embedded' as const;
  private aedes: Aedes | undefined;
  private listeners: Array<{ kind: ListenerKind; listener: Listener }> = [];
  private state: BrokerStatus['state'] = 'stopped';
  private auth: EmbeddedAuth | undefined;
  private readonly security: BrokerSecurity;
  private readonly m: BrokerMetrics;
  private readonly log: Logger;
  private readonly listenerTls: ListenerTls;
  private readonly rejections: InboundRejections;
  /** Errors handed to Aedes for a publish already counted and logged: its clientError event adds nothing. */
  private readonly counted = new WeakSet<Error>();
  private readonly limits: EmbeddedLimits;
  private readonly partial: PartialPacketBudget;
  private readonly retained: RetainedLimits;
  private readonly retainedWarnings: RateLimitedWarnings<RetainedRefusalReason>;
  private brokerState: DurableBrokerState | undefined;

  constructor(private readonly opts: EmbeddedBrokerOptions) {
    this.security = opts.security ?? openPlaintext(opts.host, opts.port);
    this.m = brokerMetrics(opts.metrics);
    this.log = opts.logger.child({ component: 'broker.embedded' });
    this.rejections = new InboundRejections({ metrics: opts.metrics, logger: this.log });
    this.limits = this.security.embeddedLimits ?? DEFAULT_EMBEDDED_LIMITS;
    this.partial = new PartialPacketBudget(this.limits.maxPartialBytes);
    this.retained = new RetainedLimits({ maxMessages: this.limits.maxRetainedMessages, maxBytes: this.limits.maxRetainedBytes });
    this.retainedWarnings = new RateLimitedWarnings({ logger: this.log, code: () => 'RETAINED_LIMIT_REACHED' });
    this.listenerTls = new ListenerTls({ tls: this.security.tls, what: 'embedded broker TLS', metrics: this.m, logger: this.log });
  }

  async start(): Promise<void> {
    const o = this.opts;
    const s = this.security;
    this.state = 'starting';
    const log = this.log;
    const auth = new EmbeddedAuth({ security: s, reservedClientId: o.reservedClientId ?? '', logger: log, metrics: o.metrics });
    this.auth = auth;
    const tls = this.listenerTls.read();
    const state = o.stateFile
      ? new DurableBrokerState({
          file: o.stateFile,
          limits: this.limits,
          retained: this.retained,
          metrics: this.m,
          logger: log,
          storeWill: (will) => new Promise((resolve, reject) => this.store(null, will, (err) => (err ? reject(err) : resolve()))),
        })
      : undefined;
    this.brokerState = state;
    this.aedes = await Aedes.createBroker({
      ...(state ? { persistence: state.store as never } : {}),
      // MQTT 5 sessions last at most this long (Aedes clamps the client's Session Expiry Interval and says so in the CONNACK).
      sessionExpiryIntervalLimit: this.limits.maxSessionExpirySeconds,
      connectTimeout: o.connectTimeoutMs ?? 30_000,
      // Advertised to MQTT 5 clients in the CONNACK; the packet guard enforces it first, on the raw bytes.
      maximumPacketSize: s.maxPacketBytes,
      authenticate: auth.authenticate,
      authorizeForward: auth.authorizeForward,
      // Aedes's own heartbeat and will sweeps publish on $SYS only; they never reach authorizePublish.
      // An error here answers an MQTT 5 publisher 0x87 and keeps it connected; an MQTT 3.1.1 one is disconnected (mqtt5.ts).
      authorizePublish: (client, packet, callback) => {
        const v5 = isMqtt5(client);
        if (packet.topic.startsWith('$SYS')) {
          const outcome = v5 ? 'answered 0x87 (not authorized)' : 'not acknowledged, the connection is closed';
          this.rejections.record('reserved_topic', this.who(client, packet), `publish to $SYS refused: ${outcome}`);
          return callback(this.countedError(new Error('$SYS topics are reserved')));
        }
        if (!auth.mayPublish(client, packet.topic)) {
          // MQTT 5 has a reason code for it (as Mosquitto answers); MQTT 3.1.1 has none but success.
          this.rejections.record('not_authorized', this.who(client, packet), `publish denied by the ACL: ${v5 ? 'answered 0x87' : 'acknowledged'} and dropped`);
          if (v5) return callback(this.countedError(new Error(NOT_AUTHORIZED)));
          auth.markDenied(packet);
          return callback(null);
        }
        // Back-pressure an MQTT 5 publisher can see: while the spool is full its QoS 1/2 publish is refused with
        // 0x97 at once (it decides when to send again) instead of waiting unacknowledged as a 3.1.1 one does.
        if (v5 && client && packet.qos > 0 && o.writer.wouldWait) {
          this.rejections.record('quota_exceeded', this.who(client, packet), 'spool full: an MQTT 5 publish answered 0x97 (quota exceeded), not stored');
          return answerRefused(client, packet, QUOTA_EXCEEDED, SPOOL_FULL_REASON, callback);
        }
        this.store(client, packet, callback);
      },
    });
    // Aedes emits 'error' on the broker itself when its persistence fails (clearing wills, enqueueing a
    // publish: aedes.js); an EventEmitter 'error' without a listener is thrown and would end the process.
    // Nothing acknowledged depends on it: messages are in the spool before their PUBACK. (Aedes's typings
    // list its other events only, hence the plain EventEmitter.)
    (this.aedes as EventEmitter).on('error', (err: Error) => log.error(withCode('BROKER_ERROR', { err: err.message }), 'embedded broker error'));
    limitRetained(this.aedes, { limits: this.limits, retained: this.retained, metrics: this.m, warnings: this.retainedWarnings });
    this.m.partialPacketBytesNow = () => this.partial.bytes;
    this.m.retainedMessages.set(this.retained.messages);
    this.m.retainedBytes.set(this.retained.bytes);
    if (this.limits.maxPartialBytes < s.maxPacketBytes) {
      log.warn(
        withCode('CONFIG_WARNING', { maxPartialBytes: this.limits.maxPartialBytes, maxPacketBytes: s.maxPacketBytes }),
        'MQTT_MAX_PARTIAL_BYTES is below MQTT_MAX_PACKET_BYTES: a packet larger than the budget that arrives in pieces is refused',
      );
    }
    this.aedes.on('clientError', (client, err) => this.onClientError(client, err));
    this.aedes.on('connectionError', (client, err) => this.onClientError(client, err));
    this.aedes.on('connackSent', () => this.m.clientsConnected.set(this.aedes?.connectedClients ?? 0));
    this.aedes.on('clientDisconnect', () => this.m.clientsConnected.set(this.aedes?.connectedClients ?? 0));
    try {
      await state?.attach(this.aedes);
      await this.openListeners(tls);
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.state = 'up';
    o.metrics.brokerUp.set(1);
    log.info(withCode('BROKER_LISTENING', { listeners: this.listeners.map((l) => ({ kind: l.kind, port: l.listener.port })) }), 'embedded broker listening');
  }

  private store(client: Client | null, packet: PublishPacket, callback: (err?: Error | null) => void): void {
    const o = this.opts;
    const properties = publishProperties(packet);
    o.writer
      .submit({
        topic: packet.topic,
        payload: Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload),
        qos: packet.qos,
        retain: packet.retain,
        receivedAt: Date.now(),
        ...(properties ? { properties } : {}),
      })
      .then(
        () => {
          o.onCommitted();
          callback(null);
        },
        (err: Error) => {
          // Not stored: refuse, so no PUBACK is sent and the publisher retries on its next connection.
          this.rejections.record(
            'commit_failed',
            { err: err.message, ...this.who(client, packet) },
            'message not committed: not acknowledged, the connection is closed and the publisher resends it',
          );
          refuseUnacknowledged(client, this.countedError(err), callback);
        },
      );
  }

  private async openListeners(tls: TlsServerOptions | undefined): Promise<void> {
    const s = this.security;
    const events: ListenerEvents = { onRefused: (reason, detail) => this.refused(reason, detail) };
    const common = { host: s.host, maxConnections: s.maxConnections };
    if (s.plaintextPort !== undefined) {
      const l = await listenMqtt({ ...common, port: s.plaintextPort }, events, (socket) => this.accept(socket, 'mqtt', undefined));
      this.listeners.push({ kind: 'mqtt', listener: l });
    }
    if (s.tls && tls) {
      const l = await listenMqtts({ ...common, port: s.tls.port, tls }, events, (socket, cn) => this.accept(socket, 'mqtts', cn));
      this.listeners.push({ kind: 'mqtts', listener: l });
    }
    if (s.wsPort !== undefined) {
      const kind = tls ? 'wss' : 'ws';
      const ws = { ...common, port: s.wsPort, maxMessageBytes: s.maxPacketBytes, ...(tls ? { tls } : {}) };
      const l = await listenWebSocket(ws, events, (stream, cn) => this.accept(stream, kind, cn));
      this.listeners.push({ kind, listener: l });
    }
  }

  /** Hands a connection to Aedes through the packet guard, tagged with its listener for the auth hooks. */
  private accept(stream: Duplex, kind: ListenerKind, certCommonName: string | undefined): void {
    const aedes = this.aedes;
    if (!aedes || this.state === 'stopped') {
      stream.destroy();
      return;
    }
    let client: Client | undefined;
    const guarded = new GuardedStream(stream, {
      maxPacketBytes: this.security.maxPacketBytes,
      maxConnectBytes: this.limits.maxConnectBytes,
      budget: this.partial,
      stallMs: this.limits.partialPacketTimeoutMs,
      onRefused: (refusal) => this.onGuardRefused(refusal, client),
    });
    this.auth?.tag(guarded, { listener: kind, ...(certCommonName !== undefined ? { certCommonName } : {}) });
    client = aedes.handle(guarded);
  }

  /** Counts and logs a connection the packet guard stopped; the broker never received the packet. */
  private onGuardRefused(r: StreamRefusal, client: Client | undefined): void {
    const clientId = client?.id ?? undefined;
    switch (r.reason) {
      case 'packet_too_large':
        return this.refused('packet_too_large', `a packet of ${r.size} bytes (MQTT_MAX_PACKET_BYTES is ${r.limit})`, clientId);
      case 'connect_too_large':
        return this.refused('connect_too_large', `a first packet (CONNECT) of ${r.size} bytes (MQTT_MAX_CONNECT_BYTES is ${r.limit})`);
      case 'partial_packet_budget':
        return this.refused(
          'partial_packet_budget',
          `${r.bytes} bytes of an incomplete packet would take the bytes held for incomplete packets past MQTT_MAX_PARTIAL_BYTES (${r.limit})`,
          clientId,
        );
      case 'partial_packet_timeout':
        return this.refused(
          'partial_packet_timeout',
          `an incomplete packet (${r.bytes} bytes so far) received no byte for ${r.ms / 1000} s (MQTT_PARTIAL_PACKET_TIMEOUT_SECONDS)`,
          clientId,
        );
      case 'invalid_topic':
        return this.rejections.record(
          'invalid_topic',
          // The bytes as the parser would have decoded them (U+FFFD for what is not UTF-8), to find the device.
          { clientId, topic: r.topic.toString('utf8').slice(0, MAX_LOGGED_TOPIC), detail: `the topic ${r.problem}` },
          'publish refused (invalid topic): not acknowledged, the connection is closed',
        );
      case 'invalid_string':
        return this.refused('malformed', `the ${r.field} of a ${r.packet} ${r.problem}`, clientId);
    }
  }

  /** The publisher and topic of a refused message, for its log line. */
  private who(client: Client | null, packet: PublishPacket): { clientId: string | undefined; topic: string } {
    return { clientId: client?.id, topic: packet.topic.slice(0, MAX_LOGGED_TOPIC) };
  }

  /** Marks an error handed to Aedes for a publish already counted, so that onClientError skips it. */
  private countedError(err: Error): Error {
    this.counted.add(err);
    return err;
  }

  private onClientError(client: Client | null, err: Error): void {
    if (this.counted.has(err)) return;
    const message = err.message ?? '';
    // Aedes's keep-alive timer (1.5 × the keep-alive, MQTT-3.1.2-24) also ends incomplete packets: counted as such.
    const conn = client?.conn;
    if (message === 'keep alive timeout' && conn instanceof GuardedStream && conn.partialBytes > 0) {
      return this.refused(
        'partial_packet_timeout',
        `no complete packet within 1.5 × the keep-alive, with ${conn.partialBytes} bytes of an incomplete one`,
        client?.id,
      );
    }
    if (INVALID_PUBLISH_TOPIC.test(message)) {
      this.rejections.record('invalid_topic', { clientId: client?.id, detail: message }, 'publish refused (invalid topic): not acknowledged, the connection is closed');
      return;
    }
    const code = (err as NodeJS.ErrnoException).code;
    // Socket errors of a client that went away (ECONNRESET, EPIPE) and our own destroy are not refusals.
    if (code && /^E[A-Z]+$/.test(code)) return this.log.debug({ clientId: client?.id, err: message }, 'client connection error');
    if (client?.connected) return this.log.debug({ clientId: client.id, err: message }, 'client error');
    if (message === 'connect did not arrive in time') this.refused('connect_timeout', message);
    else if (BAD_PROTOCOL.test(message)) this.refused('bad_protocol', message);
    else if ((err as { errorCode?: number }).errorCode !== undefined) return; // a refused CONNECT: authenticate() counted it
    // MQTT 5 enhanced authentication (AUTH), which the node does not offer: Aedes answers CONNACK 0x8C.
    else if ((err as { reasonCode?: number }).reasonCode === 0x8c) this.refused('not_authorized', message);
    else this.refused('malformed', message);
  }

  private refused(reason: RefusalReason, detail: string, clientId?: string): void {
    this.m.refused(reason);
    this.log.info(withCode('CLIENT_REFUSED', { reason, detail, ...(clientId ? { clientId } : {}) }), 'connection refused');
  }

  /** Re-reads the password file, ACL file and certificates (SIGHUP); connected clients stay unless their credentials no longer pass. */
  async reload(): Promise<void> {
    if (!this.aedes || !this.auth) return;
    try {
      const dropped = this.auth.reload(this.aedes);
      const tls = this.listenerTls.read();
      if (tls) for (const { listener } of this.listeners) listener.setTls?.(tls);
      this.m.reloads.inc({ result: 'ok' });
      this.log.info(withCode('BROKER_RELOADED', { disconnected: dropped }), 'reloaded the password file, ACL file and certificates');
    } catch (err) {
      this.m.reloads.inc({ result: 'failed' });
      this.log.error(withCode('BROKER_RELOAD_FAILED', { err: (err as Error).message }), 'reload failed; the previous users, ACL and certificates stay in force');
      // A refused reload has one code, whichever check refused it (password file, ACL file, certificates).
      throw err instanceof BrokerError && err.code === 'BROKER_RELOAD_FAILED' ? err : new BrokerError('BROKER_RELOAD_FAILED', (err as Error).message, { cause: err });
    }
  }

  /**
   * Publishes as the broker itself (the node's Sparkplug commands): Aedes hands it to every matching subscription,
   * each through authorizeForward (the subscriber's ACL `read`), and queues a QoS 1 one for offline persistent
   * sessions. It does not pass authorizePublish, where messages are taken into the spool: a command from the node is
   * not a message to it, and is not stored. Resolves once Aedes has handed it on, not after the subscribers'
   * PUBACKs (Aedes resends to them itself).
   */
  publish(topic: string, payload: Buffer, opts: PublishOptions): Promise<void> {
    const aedes = this.aedes;
    if (!aedes || !this.isUp()) return Promise.reject(new PublishError('unavailable', `not published: the embedded broker is ${this.state}`));
    const problem = topicNameProblem(topic);
    if (problem) return Promise.reject(new PublishError('refused', `not published: the topic ${problem}`));
    const packet = { cmd: 'publish' as const, topic, payload, qos: opts.qos, retain: opts.retain ?? false, dup: false };
    return new Promise((resolve, reject) => {
      aedes.publish(packet, (err) => (err ? reject(new PublishError('refused', `not published: ${err.message}`)) : resolve()));
    });
  }

  /** The port of a listener (MQTT_PORT, or the one the OS chose for port 0 in tests). */
  get port(): number {
    return this.portOf('mqtt') ?? this.opts.port;
  }

  portOf(kind: ListenerKind): number | undefined {
    return this.listeners.find((l) => l.kind === kind)?.listener.port;
  }

  /** Stops accepting connections and disconnects clients (their unacknowledged messages are resent later). */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    this.opts.metrics.brokerUp.set(0);
    this.listenerTls.stop();
    const aedes = this.aedes;
    // Aedes first: it disconnects the clients, which lets the listeners' close() finish.
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
    await Promise.all(this.listeners.map(({ listener }) => listener.close()));
    // Aedes's close leaves its persistence open.
    await this.brokerState?.close().catch((err: Error) => this.log.error(withCode('BROKER_ERROR', { err: err.message }), 'embedded broker state: could not close its file'));
    this.brokerState = undefined;
  }

  isUp(): boolean {
    return this.state === 'up' && this.listeners.length > 0;
  }

  status(): BrokerStatus {
    const where = this.listeners.map(({ kind, listener }) => `${kind} ${this.security.host}:${listener.port}`).join(', ');
    return { mode: 'embedded', state: this.state, restarts: 0, detail: `listening on ${where}`, mqttVersions: OWN_BROKER_MQTT_VERSIONS };
  }
}
