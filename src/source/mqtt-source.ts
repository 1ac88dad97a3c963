import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import { Backoff } from '../core/backoff.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../http/metrics.js';
import type { SpoolWriter } from '../spool/group-commit.js';

export interface MqttSourceOptions {
  url: string;
  clientId: string;
  username?: string;
  password?: string;
  topics: string[];
  protocolVersion: 4 | 5;
  sessionExpirySeconds: number;
  keepaliveSeconds: number;
  writer: SpoolWriter;
  logger: Logger;
  metrics: Metrics;
  /** Called after each commit, so the dispatcher leases new rows at once. */
  onCommitted: () => void;
  reconnectBaseMs?: number;
  reconnectCapMs?: number;
}

export type SourceState = 'connecting' | 'subscribed' | 'disconnected' | 'stopped';

/**
 * The subscriber for the mosquitto and external modes: a persistent session (clean start off, MQTT 5
 * session expiry), a stable client id, QoS 1 subscriptions, and the PUBACK only after the spool commit.
 *
 * MQTT-4.3.2: PUBACK only after the message is stored. MQTT.js sends the PUBACK for a QoS 1 message
 * once the `handleMessage` callback is called, and it handles incoming packets strictly one at a time,
 * so calling back after the commit makes the acknowledgement follow durability (one commit per message).
 * When the commit fails (spool closing at shutdown) the callback is never called: no PUBACK, and the
 * broker redelivers the message to the persistent session on the next connection.
 */
export class MqttSource {
  private client: MqttClient | undefined;
  private state: SourceState = 'connecting';
  private lastError: string | undefined;
  private readonly backoff: Backoff;
  private connections = 0;

  constructor(private readonly opts: MqttSourceOptions) {
    this.backoff = new Backoff({ baseMs: opts.reconnectBaseMs ?? 500, capMs: opts.reconnectCapMs ?? 30_000 });
  }

  start(): void {
    const o = this.opts;
    const options: IClientOptions = {
      clientId: o.clientId,
      clean: false,
      protocolVersion: o.protocolVersion,
      keepalive: o.keepaliveSeconds,
      username: o.username,
      password: o.password,
      reconnectPeriod: o.reconnectBaseMs ?? 500,
      connectTimeout: 10_000,
      // We subscribe ourselves, only when the broker has no session for us (see 'connect' below).
      resubscribe: false,
      properties: o.protocolVersion === 5 ? { sessionExpiryInterval: o.sessionExpirySeconds, receiveMaximum: 65_535 } : undefined,
    };
    const client = mqtt.connect(o.url, options);
    this.client = client;
    client.handleMessage = (packet: IPublishPacket, callback) => this.onPublish(packet, callback);
    // Runs before MQTT.js's own 'close' handler, which schedules the reconnect with options.reconnectPeriod:
    // this is how the reconnect delay follows our backoff instead of MQTT.js's fixed period.
    client.prependListener('close', () => {
      client.options.reconnectPeriod = this.backoff.next();
      if (this.state !== 'stopped') this.setState('disconnected');
    });
    client.on('connect', (connack) => {
      this.connections += 1;
      if (this.connections > 1) o.metrics.sourceReconnects.inc();
      this.backoff.reset();
      o.logger.info({ sessionPresent: connack.sessionPresent, clientId: o.clientId }, 'subscriber connected');
      if (connack.sessionPresent) this.setState('subscribed');
      else this.subscribe(client);
    });
    client.on('error', (err) => {
      this.lastError = err.message;
      o.logger.warn({ err: err.message, url: redactUrl(o.url) }, 'subscriber connection error');
    });
    client.on('offline', () => o.logger.debug('subscriber offline'));
  }

  private subscribe(client: MqttClient): void {
    const o = this.opts;
    // rh 1 (MQTT 5): retained messages only when the subscription is new, not on every re-subscribe.
    const subOpts = o.protocolVersion === 5 ? { qos: 1 as const, rh: 1 } : { qos: 1 as const };
    client.subscribe(o.topics, subOpts, (err, granted) => {
      if (err) {
        this.lastError = `subscribe failed: ${err.message}`;
        o.logger.error({ err: err.message, topics: o.topics }, 'subscribe failed');
        return;
      }
      const refused = (granted ?? []).filter((g) => g.qos !== 0 && g.qos !== 1 && g.qos !== 2);
      if (refused.length > 0) {
        this.lastError = `broker refused subscriptions: ${refused.map((g) => g.topic).join(', ')}`;
        o.logger.error({ refused }, 'broker refused some subscriptions');
        return;
      }
      const downgraded = (granted ?? []).filter((g) => g.qos === 0);
      if (downgraded.length > 0) o.logger.warn({ topics: downgraded.map((g) => g.topic) }, 'broker granted QoS 0 only: those messages are not redelivered after a crash');
      o.logger.info({ topics: o.topics }, 'subscribed');
      this.setState('subscribed');
    });
  }

  private onPublish(packet: IPublishPacket, callback: (err?: Error) => void): void {
    const o = this.opts;
    o.writer
      .submit({
        topic: packet.topic,
        payload: Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload),
        qos: packet.qos,
        retain: packet.retain,
        receivedAt: Date.now(),
        packetId: packet.qos > 0 ? packet.messageId : undefined,
        dup: packet.dup,
      })
      .then(
        () => {
          o.onCommitted();
          callback();
        },
        (err: Error) => {
          // Not stored, so not acknowledged: the broker keeps it for our session.
          o.logger.warn({ err: err.message, topic: packet.topic }, 'message not committed; left unacknowledged for redelivery');
        },
      );
  }

  private setState(state: SourceState): void {
    this.state = state;
    this.opts.metrics.sourceConnected.set(state === 'subscribed' ? 1 : 0);
  }

  isReady(): boolean {
    return this.state === 'subscribed' && this.client?.connected === true;
  }

  status(): { state: SourceState; clientId: string; url: string; lastError?: string; connections: number } {
    return { state: this.state, clientId: this.opts.clientId, url: redactUrl(this.opts.url), lastError: this.lastError, connections: this.connections };
  }

  /** Disconnects; messages not yet committed stay unacknowledged and are redelivered later. */
  async stop(): Promise<void> {
    this.setState('stopped');
    const client = this.client;
    if (!client) return;
    await new Promise<void>((resolve) => client.end(true, {}, () => resolve()));
  }
}

/** A broker URL without the password, for logs and status. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = 'redacted';
    return u.toString();
  } catch {
    return '[unparseable url]';
  }
}
