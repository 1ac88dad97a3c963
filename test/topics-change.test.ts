import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import mqtt from 'mqtt';
import { startNode } from './helpers/node-process.js';
import { hasMosquitto, startMosquitto, type TestMosquitto } from './helpers/mosquitto.js';
import { serviceAvailable } from './helpers/skip.js';
import { readFileSink } from './helpers/file-output.js';
import { waitFor } from './helpers/ports.js';

const run = serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto mosquitto-clients');

async function publish(url: string, topic: string, payload: string): Promise<void> {
  const c = await mqtt.connectAsync(url, { protocolVersion: 4 });
  await c.publishAsync(topic, payload, { qos: 1 });
  await c.endAsync();
}

describe.runIf(run)('MQTT_TOPICS changes on a persistent session', () => {
  let broker: TestMosquitto;
  beforeAll(async () => {
    broker = await startMosquitto({ persistence: true });
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it('subscribes added filters and unsubscribes removed ones, although the broker kept the session', async () => {
    const base = { MQTT_BROKER: broker.url, MQTT_CLIENT_ID: 'ingest-topics-change', FILE_SINK: 'on' };
    const first = await startNode({ ...base, MQTT_TOPICS: 'site/a/#' });
    const dataDir = first.dataDir;
    const topics = () => readFileSink(path.join(dataDir, 'out')).map((r) => r.payload);
    try {
      await first.waitReady();
      await publish(broker.url, 'site/a/1', 'a1');
      await waitFor(() => topics().includes('a1'), 10_000, 'a1 stored');
    } finally {
      expect(await first.stop()).toBe(0);
    }
    const second = await startNode({ ...base, MQTT_TOPICS: 'site/a/#,site/b/#' }, { dataDir });
    try {
      await second.waitReady();
      await publish(broker.url, 'site/b/1', 'b1');
      await waitFor(() => topics().includes('b1'), 10_000, 'b1 stored after adding site/b/#');
    } finally {
      expect(await second.stop()).toBe(0);
    }
    const third = await startNode({ ...base, MQTT_TOPICS: 'site/b/#' }, { dataDir });
    try {
      await third.waitReady();
      await publish(broker.url, 'site/a/2', 'a2');
      await publish(broker.url, 'site/b/2', 'b2');
      await waitFor(() => topics().includes('b2'), 10_000, 'b2 stored');
      expect(topics()).not.toContain('a2');
    } finally {
      await third.kill();
    }
  });
});
