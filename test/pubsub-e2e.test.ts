import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { startNode, type NodeProcess } from './helpers/node-process.js';
import { createTopicAndSubscription, hasPubSubEmulator, startPubSubEmulator, type PubSubEmulator } from './helpers/pubsub-emulator.js';
import { hasMosquitto } from './helpers/mosquitto.js';
import { serviceAvailable } from './helpers/skip.js';
import { publishRange, pullUntilUnique, sensorPayload, seqOf } from './helpers/load.js';
import { startTcpProxy } from './helpers/tcp-proxy.js';
import { waitFor } from './helpers/ports.js';

const run =
  serviceAvailable('Pub/Sub emulator', hasPubSubEmulator(), 'install the Google Cloud CLI and its pubsub-emulator component') &&
  serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto mosquitto-clients');

describe.runIf(run)('mosquitto mode → Pub/Sub emulator', () => {
  let emu: PubSubEmulator;
  beforeAll(async () => {
    emu = await startPubSubEmulator();
  });
  afterAll(async () => {
    await emu?.stop();
  });

  it('delivers 20,000 messages with unchanged bytes and exactly the contract attributes, binary included', async () => {
    await createTopicAndSubscription(emu.host, emu.projectId, 'readings', 'readings-check');
    const node = await startNode({
      MQTT_BROKER_MODE: 'mosquitto',
      GCP_PROJECT_ID: emu.projectId,
      PUBSUB_TOPIC: 'readings',
      PUBSUB_EMULATOR_HOST: emu.host,
    });
    try {
      await node.waitReady();
      const url = `mqtt://127.0.0.1:${node.mqttPort}`;
      await publishRange(url, 0, 20_000);
      const binary = Buffer.from([0x00, 0xff, 0xfe, 0x80, 0xc3, 0x28, 0x0a]);
      const client = await mqtt.connectAsync(url, { protocolVersion: 4 });
      await client.publishAsync('plant/pit-north/raw', binary, { qos: 1, retain: false });
      await client.endAsync();

      const received = await pullUntilUnique(emu.host, emu.projectId, 'readings-check', 20_001, (r) => r.attributes.message_id, 120_000);
      const seqs = new Set<number>();
      let binarySeen = 0;
      for (const r of received) {
        expect(Object.keys(r.attributes).sort()).toEqual(['message_id', 'mqtt_qos', 'mqtt_retain', 'mqtt_topic', 'received_at']);
        expect(r.attributes.mqtt_qos).toBe('1');
        expect(r.attributes.mqtt_retain).toBe('false');
        expect(r.attributes.received_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        expect(r.attributes.message_id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
        if (r.attributes.mqtt_topic === 'plant/pit-north/raw') {
          expect(r.data.equals(binary)).toBe(true);
          binarySeen += 1;
          continue;
        }
        const seq = seqOf(r.data);
        expect(r.data.toString()).toBe(sensorPayload(seq));
        expect(r.attributes.mqtt_topic).toBe(`plant/pit-north/pressure/${seq % 64}`);
        seqs.add(seq);
      }
      expect(binarySeen).toBeGreaterThanOrEqual(1);
      expect(seqs.size).toBe(20_000);
      expect(await node.metric('mqtt_ingest_messages_delivered_total', { sink: 'pubsub' })).toBeGreaterThanOrEqual(20_001);
    } finally {
      await node.kill();
    }
  });

  it('keeps ingesting and stays ready while Pub/Sub is unreachable for 20 s, then delivers everything', async () => {
    await createTopicAndSubscription(emu.host, emu.projectId, 'outage', 'outage-check');
    const [host, port] = emu.host.split(':');
    const proxy = await startTcpProxy(host, Number(port));
    const node = await startNode({
      MQTT_BROKER_MODE: 'embedded',
      GCP_PROJECT_ID: emu.projectId,
      PUBSUB_TOPIC: 'outage',
      PUBSUB_EMULATOR_HOST: `127.0.0.1:${proxy.port}`,
      RETRY_INITIAL_DELAY_MS: '200',
      RETRY_MAX_DELAY_MS: '2000',
    });
    try {
      await node.waitReady();
      const url = `mqtt://127.0.0.1:${node.mqttPort}`;
      await publishRange(url, 0, 500);
      await pullUntilUnique(emu.host, emu.projectId, 'outage-check', 500, (r) => seqOf(r.data), 30_000);

      proxy.cut();
      const cutAt = Date.now();
      await publishRange(url, 500, 2500);
      await waitFor(async () => (await node.metric('mqtt_ingest_spool_messages')) > 0, 10_000, 'spool depth > 0');
      while (Date.now() - cutAt < 20_000) {
        const r = await node.readiness();
        expect(r.status).toBe(200);
        await new Promise((res) => setTimeout(res, 1000));
      }
      const during = await node.readiness();
      expect(during.status).toBe(200);
      expect((during.body.sinks as Record<string, { state: string }>).pubsub.state).not.toBe('ok');
      expect(await node.metric('mqtt_ingest_spool_messages')).toBeGreaterThan(0);
      expect(await node.metric('mqtt_ingest_delivery_failures_total', { sink: 'pubsub' })).toBeGreaterThan(0);

      await proxy.restore();
      const received = await pullUntilUnique(emu.host, emu.projectId, 'outage-check', 2000, (r) => seqOf(r.data), 60_000);
      const seqs = new Set(received.map((r) => seqOf(r.data)));
      for (let i = 500; i < 2500; i++) expect(seqs.has(i)).toBe(true);
      await waitFor(async () => (await node.metric('mqtt_ingest_spool_messages')) === 0, 20_000, 'spool drained');
    } finally {
      await node.kill();
      await proxy.close();
    }
  });

  it('with PUBSUB_ORDERING_KEY=mqtt_topic each MQTT topic arrives in the order received, across an outage', async () => {
    await createTopicAndSubscription(emu.host, emu.projectId, 'ordered', 'ordered-check', { ordered: true });
    const [host, port] = emu.host.split(':');
    const proxy = await startTcpProxy(host, Number(port));
    const node = await startNode({
      MQTT_BROKER_MODE: 'embedded',
      GCP_PROJECT_ID: emu.projectId,
      PUBSUB_TOPIC: 'ordered',
      PUBSUB_EMULATOR_HOST: `127.0.0.1:${proxy.port}`,
      PUBSUB_ORDERING_KEY: 'mqtt_topic',
      PUBSUB_BATCH_MAX_MESSAGES: '100',
      RETRY_INITIAL_DELAY_MS: '200',
      RETRY_MAX_DELAY_MS: '1000',
    });
    const topic = (i: number) => `plant/pit-north/pressure/${i % 8}`;
    try {
      await node.waitReady();
      const url = `mqtt://127.0.0.1:${node.mqttPort}`;
      await publishRange(url, 0, 1000, { topic });
      proxy.cut(); // publishes fail while more messages arrive, then the failed ones go first
      await publishRange(url, 1000, 2000, { topic });
      await waitFor(async () => (await node.metric('mqtt_ingest_delivery_failures_total', { sink: 'pubsub' })) > 0, 20_000, 'a failed publish');
      await publishRange(url, 2000, 3000, { topic });
      await proxy.restore();

      const received = await pullUntilUnique(emu.host, emu.projectId, 'ordered-check', 3000, (r) => seqOf(r.data), 90_000);
      const firstSeen = new Set<number>();
      const byKey = new Map<string, number[]>();
      for (const r of received) {
        const seq = seqOf(r.data);
        expect(r.orderingKey).toBe(topic(seq));
        if (firstSeen.has(seq)) continue; // a retried publish that had reached Pub/Sub: same message_id
        firstSeen.add(seq);
        byKey.set(r.orderingKey, [...(byKey.get(r.orderingKey) ?? []), seq]);
      }
      expect(firstSeen.size).toBe(3000);
      for (const [key, seqs] of byKey) expect(seqs, key).toEqual([...seqs].sort((a, b) => a - b));
    } finally {
      await node.kill();
      await proxy.close();
    }
  });
});
