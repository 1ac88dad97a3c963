import { Aedes } from 'aedes';
import net from 'node:net';
import type { Broker, BrokerStatus } from './broker.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../http/metrics.js';
import type { SpoolWriter } from '../spool/group-commit.js';
import { BrokerError } from '../core/errors.js';

export interface EmbeddedBrokerOptions {
  host: string;
  port: number;
  writer: SpoolWriter;
  logger: Logger;
  metrics: Metrics;
  /** Called after each commit, so the dispatcher leases new rows at once. */
  onCommitted: () => void;
}

/**
 * The in-process broker (Aedes). Messages are taken in Aedes's `authorizePublish` hook, which runs
 * before Aedes writes the QoS 1 PUBACK (lib/handlers/publish.js: authorizePublish → enqueuePublish,
 * which writes the PUBACK and then publishes). Calling the hook back only after the spool commit makes
 * the publisher's PUBACK follow durability (MQTT-4.3.2), with no loopback subscription whose in-memory
 * queue would die with the process. Aedes dispatches all packets of a socket read chunk concurrently,
 * so the group commit takes many messages per transaction.
 */
export class EmbeddedBroker implements Broker {
  readonly mode = 'embedded' as const;
  private aedes: Aedes | undefined;
  private server: net.Server | undefined;
  private state: BrokerStatus['state'] = 'stopped';

  constructor(private readonly opts: EmbeddedBrokerOptions) {}

  async start(): Promise<void> {
    const o = this.opts;
    this.state = 'starting';
    const log = o.logger.child({ component: 'broker.embedded' });
    this.aedes = await Aedes.createBroker({
      // Aedes's own heartbeat and will sweeps publish on $SYS only; they never reach authorizePublish.
      authorizePublish: (client, packet, callback) => {
        if (packet.topic.startsWith('$SYS')) return callback(new Error('$SYS topics are reserved'));
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
              log.warn({ err: err.message, clientId: client?.id, topic: packet.topic }, 'message not committed; publisher not acknowledged');
              callback(err);
            },
          );
      },
    });
    this.aedes.on('clientError', (client, err) => log.debug({ clientId: client?.id, err: err.message }, 'client error'));
    this.aedes.on('connectionError', (client, err) => log.debug({ err: err.message }, 'connection error'));
    const server = net.createServer(this.aedes.handle);
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) =>
        reject(new BrokerError('BROKER_START_FAILED', `embedded broker cannot listen on ${o.host}:${o.port}: ${err.message}`, { cause: err })),
      );
      server.listen(o.port, o.host, () => resolve());
    });
    this.state = 'up';
    o.metrics.brokerUp.set(1);
    log.info({ host: o.host, port: this.port }, 'embedded broker listening');
  }

  /** The port actually bound (MQTT_PORT, or the one the OS chose for port 0 in tests). */
  get port(): number {
    const addr = this.server?.address();
    return addr && typeof addr === 'object' ? addr.port : this.opts.port;
  }

  /** Stops accepting connections and disconnects clients (their unacknowledged messages are resent later). */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    this.opts.metrics.brokerUp.set(0);
    const server = this.server;
    const aedes = this.aedes;
    // Aedes first: it disconnects the clients, which lets server.close() (waiting for them) finish.
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  isUp(): boolean {
    return this.state === 'up' && this.server?.listening === true;
  }

  status(): BrokerStatus {
    return { mode: 'embedded', state: this.state, restarts: 0, detail: `listening on ${this.opts.host}:${this.port}` };
  }

  subscriberUrl(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }
}
