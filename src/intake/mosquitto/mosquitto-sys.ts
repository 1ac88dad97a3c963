import { randomBytes } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from '../../core/logger.js';
import { withCode } from '../../core/errors.js';
import type { BrokerMetrics } from '../broker-metrics.js';

/**
 * Reads Mosquitto's $SYS counters (published every sys_interval seconds) into the node's metrics, through the
 * internal loopback listener with the internal user. A clean session with a random id per start: nothing is
 * queued for it, and no one can guess the id to take it over. MQTT.js reconnects after a broker restart.
 *
 * `$SYS/broker/publish/messages/dropped` counts QoS 1/2 messages Mosquitto dropped for a client whose queue
 * was full (max_queued_messages, max_queued_bytes); with the node's subscriber that is data loss, so each
 * increase is logged as a warning. The counters restart from 0 with the broker.
 */
const TOPICS: Record<string, (m: BrokerMetrics, v: number) => void> = {
  '$SYS/broker/clients/connected': (m, v) => m.clientsConnected.set(v),
  '$SYS/broker/publish/messages/dropped': (m, v) => m.messagesDropped.set(v),
  '$SYS/broker/store/messages/count': (m, v) => m.storeMessages.set(v),
  '$SYS/broker/store/messages/bytes': (m, v) => m.storeBytes.set(v),
  '$SYS/broker/messages/received': (m, v) => m.messagesReceived.set(v),
  '$SYS/broker/messages/sent': (m, v) => m.messagesSent.set(v),
};
const DROPPED = '$SYS/broker/publish/messages/dropped';

export class MosquittoSys {
  private client: MqttClient | undefined;
  private lastDropped = 0;

  constructor(
    private readonly opts: { url: string; username: string; password: string; metrics: BrokerMetrics; logger: Logger },
  ) {}

  start(): void {
    const o = this.opts;
    const client = mqtt.connect(o.url, {
      clientId: `mqtt-ingest-sys-${randomBytes(12).toString('base64url')}`,
      username: o.username,
      password: o.password,
      clean: true,
      protocolVersion: 4,
      reconnectPeriod: 1_000,
      connectTimeout: 10_000,
    });
    this.client = client;
    client.on('connect', () => {
      client.subscribe(Object.keys(TOPICS), { qos: 0 }, (err) => {
        if (err) o.logger.warn(withCode('BROKER_METRICS_STALE', { err: err.message }), 'cannot subscribe to $SYS; broker metrics stay stale');
      });
    });
    client.on('message', (topic, payload) => this.onMessage(topic, payload.toString('utf8')));
    // Connection errors repeat while the broker restarts; the broker's own state is reported elsewhere.
    client.on('error', (err) => o.logger.debug({ err: err.message }, '$SYS reader connection error'));
  }

  private onMessage(topic: string, text: string): void {
    const value = Number(text);
    const set = TOPICS[topic];
    if (!set || !Number.isFinite(value)) return;
    set(this.opts.metrics, value);
    if (topic !== DROPPED) return;
    // A smaller value means the broker restarted and its counter began again.
    if (value < this.lastDropped) this.lastDropped = 0;
    if (value > this.lastDropped) {
      this.opts.logger.warn(
        withCode('BROKER_MESSAGES_DROPPED', { dropped: value - this.lastDropped, droppedSinceBrokerStart: value }),
        'mosquitto dropped messages for full client queues (max_queued_messages); a dropped message for the node\'s subscriber is lost',
      );
    }
    this.lastDropped = value;
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client) await client.endAsync(true);
  }
}
