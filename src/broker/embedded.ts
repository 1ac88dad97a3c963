import { Aedes, type Client, type PublishPacket } from 'aedes';
import type { Duplex } from 'node:stream';
import type { Broker, BrokerStatus } from './broker.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../http/metrics.js';
import type { SpoolWriter } from '../spool/group-commit.js';
import { brokerMetrics, type BrokerMetrics, type RefusalReason } from './broker-metrics.js';
import { InboundRejections } from './inbound-rejections.js';
import { listenMqtt, listenMqtts, listenWebSocket, type Listener, type ListenerEvents, type TlsServerOptions } from './listeners.js';
import { EmbeddedAuth, type ListenerKind } from './security/embedded-auth.js';
import { ListenerTls } from './security/listener-tls.js';
import { GuardedStream } from './security/packet-guard.js';
import { openPlaintext, type BrokerSecurity } from './security/policy.js';

export interface EmbeddedBrokerOptions {
  host: string;
  port: number;
  /** Listeners, users, ACL and limits. Omitted: one plaintext listener on host:port for anonymous clients. */
  security?: BrokerSecurity;
  /** MQTT_CLIENT_ID: no client may use the subscriber's id here (see security/embedded-auth.ts). */
  reservedClientId?: string;
  /** How long a connection may stay without CONNECT (Aedes's default, 30 s). */
  connectTimeoutMs?: number;
  writer: SpoolWriter;
  logger: Logger;
  metrics: Metrics;
  /** Called after each commit, so the dispatcher leases new rows at once. */
  onCommitted: () => void;
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
 * Security (same files and meaning as the Mosquitto mode; see security/embedded-auth.ts): a plaintext, a TLS
 * and a WebSocket listener as configured, passwords, ACL, mTLS, a packet size limit that Aedes lacks
 * (security/packet-guard.ts), a connection limit per listener, and SIGHUP reloads.
 */
export class EmbeddedBroker implements Broker {
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

  constructor(private readonly opts: EmbeddedBrokerOptions) {
    this.security = opts.security ?? openPlaintext(opts.host, opts.port);
    this.m = brokerMetrics(opts.metrics);
    this.log = opts.logger.child({ component: 'broker.embedded' });
    this.rejections = new InboundRejections({ metrics: opts.metrics, logger: this.log });
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
    this.aedes = await Aedes.createBroker({
      connectTimeout: o.connectTimeoutMs ?? 30_000,
      authenticate: auth.authenticate,
      authorizeForward: auth.authorizeForward,
      // Aedes's own heartbeat and will sweeps publish on $SYS only; they never reach authorizePublish.
      authorizePublish: (client, packet, callback) => {
        if (packet.topic.startsWith('$SYS')) {
          this.rejections.record('reserved_topic', this.who(client, packet), 'publish to $SYS refused: not acknowledged, the connection is closed');
          return callback(this.countedError(new Error('$SYS topics are reserved')));
        }
        if (!auth.mayPublish(client, packet.topic)) {
          this.rejections.record('not_authorized', this.who(client, packet), 'publish denied by the ACL: acknowledged and dropped');
          auth.markDenied(packet);
          return callback(null);
        }
        this.store(client, packet, callback);
      },
    });
    this.aedes.on('clientError', (client, err) => this.onClientError(client, err));
    this.aedes.on('connectionError', (client, err) => this.onClientError(client, err));
    this.aedes.on('connackSent', () => this.m.clientsConnected.set(this.aedes?.connectedClients ?? 0));
    this.aedes.on('clientDisconnect', () => this.m.clientsConnected.set(this.aedes?.connectedClients ?? 0));
    try {
      await this.openListeners(tls);
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.state = 'up';
    o.metrics.brokerUp.set(1);
    log.info({ listeners: this.listeners.map((l) => ({ kind: l.kind, port: l.listener.port })) }, 'embedded broker listening');
  }

  private store(client: Client | null, packet: PublishPacket, callback: (err?: Error | null) => void): void {
    const o = this.opts;
    o.writer
      .submit({
        topic: packet.topic,
        payload: Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload),
        qos: packet.qos,
        retain: packet.retain,
        receivedAt: Date.now(),
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
          callback(this.countedError(err));
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
      const l = await listenWebSocket({ ...common, port: s.wsPort, ...(tls ? { tls } : {}) }, events, (stream, cn) => this.accept(stream, kind, cn));
      this.listeners.push({ kind, listener: l });
    }
  }

  /** Hands a connection to Aedes through the packet size guard, tagged with its listener for the auth hooks. */
  private accept(stream: Duplex, kind: ListenerKind, certCommonName: string | undefined): void {
    const aedes = this.aedes;
    if (!aedes || this.state === 'stopped') {
      stream.destroy();
      return;
    }
    const max = this.security.maxPacketBytes;
    const guarded = new GuardedStream(stream, max, (size) =>
      this.refused('packet_too_large', `a packet of ${size} bytes (MQTT_MAX_PACKET_BYTES is ${max})`),
    );
    this.auth?.tag(guarded, { listener: kind, ...(certCommonName !== undefined ? { certCommonName } : {}) });
    aedes.handle(guarded);
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
    else this.refused('malformed', message);
  }

  private refused(reason: RefusalReason, detail: string): void {
    this.m.refused(reason);
    this.log.info({ reason, detail }, 'connection refused');
  }

  /** Re-reads the password file, ACL file and certificates (SIGHUP); connected clients stay unless their credentials no longer pass. */
  async reload(): Promise<void> {
    if (!this.aedes || !this.auth) return;
    try {
      const dropped = this.auth.reload(this.aedes);
      const tls = this.listenerTls.read();
      if (tls) for (const { listener } of this.listeners) listener.setTls?.(tls);
      this.m.reloads.inc({ result: 'ok' });
      this.log.info({ disconnected: dropped }, 'reloaded the password file, ACL file and certificates');
    } catch (err) {
      this.m.reloads.inc({ result: 'failed' });
      this.log.error({ err: (err as Error).message }, 'reload failed; the previous users, ACL and certificates stay in force');
      throw err;
    }
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
  }

  isUp(): boolean {
    return this.state === 'up' && this.listeners.length > 0;
  }

  status(): BrokerStatus {
    const where = this.listeners.map(({ kind, listener }) => `${kind} ${this.security.host}:${listener.port}`).join(', ');
    return { mode: 'embedded', state: this.state, restarts: 0, detail: `listening on ${where}` };
  }

  subscriberUrl(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }
}
