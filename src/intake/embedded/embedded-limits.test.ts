import net from 'node:net';
import { Writable } from 'node:stream';
import mqtt, { type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/logger.js';
import { Metrics } from '../../core/metrics.js';
import type { SpoolWriter } from '../../spool/group-commit.js';
import { EmbeddedBroker } from './embedded-broker.js';
import { DEFAULT_EMBEDDED_LIMITS, openPlaintext, type EmbeddedLimits } from '../security/policy.js';

const brokers: EmbeddedBroker[] = [];
const clients: MqttClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await Promise.all(brokers.splice(0).map((b) => b.stop()));
});

const stored = { submit: async () => ({ seq: 1, messageId: '01JABCDEFGHJKMNPQRSTV00001', duplicate: false }) } as unknown as SpoolWriter;

async function broker(limits: Partial<EmbeddedLimits>) {
  const metrics = new Metrics({ defaultMetrics: false });
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const security = { ...openPlaintext('127.0.0.1', 0), embeddedLimits: { ...DEFAULT_EMBEDDED_LIMITS, ...limits } };
  const b = new EmbeddedBroker({ host: '127.0.0.1', port: 0, security, writer: stored, logger: createLogger('debug', sink), metrics, onCommitted: () => undefined });
  brokers.push(b);
  await b.start();
  const value = async (name: string, labels: Record<string, string> = {}) => {
    const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
    const v = metric?.values.find((x) => Object.entries(labels).every(([k, want]) => x.labels[k] === want));
    return v?.value ?? 0;
  };
  return { b, value, lines };
}

describe('embedded broker limits', () => {
  it('does not keep a retained will over the count limit, and keeps one within it', async () => {
    const { b, value } = await broker({ maxRetainedMessages: 1 });
    const url = `mqtt://127.0.0.1:${b.port}`;
    const will = (topic: string) => ({ topic, payload: Buffer.from('gone'), qos: 1 as const, retain: true });
    for (const topic of ['will/1', 'will/2']) {
      const c = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, will: will(topic) });
      c.stream.destroy(); // no DISCONNECT: the broker publishes the will
    }
    await expect.poll(() => value('mqtt_ingest_broker_retained_refused_total', { reason: 'max_messages' })).toBe(1);
    expect(await value('mqtt_ingest_broker_retained_messages')).toBe(1);
  });

  it('counts an incomplete packet ended by the keep-alive (1.5 × it) as partial_packet_timeout, not a plain disconnect', async () => {
    const { b, value, lines } = await broker({ partialPacketTimeoutMs: 60_000 });
    const socket = net.connect({ host: '127.0.0.1', port: b.port });
    socket.on('error', () => undefined);
    await new Promise((r) => socket.once('connect', r));
    socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'ka', clean: true, keepalive: 1 }));
    socket.write(Buffer.from([0x30, 0x80, 0x01, 0x00, 0x01, 0x74])); // a PUBLISH of 128 bytes, 3 of its body sent
    socket.resume(); // read (and drop) the CONNACK, so that the broker's close arrives
    await new Promise((r) => socket.once('close', r));
    await expect.poll(() => value('mqtt_ingest_broker_connections_refused_total', { reason: 'partial_packet_timeout' })).toBe(1);
    expect(lines).toContainEqual(expect.objectContaining({ reason: 'partial_packet_timeout', clientId: 'ka' }));
  });
});
