import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { startNode, type NodeProcess } from './helpers/node-process.js';
import { hasMosquitto, startMosquitto, type TestMosquitto } from './helpers/mosquitto.js';
import { serviceAvailable } from './helpers/skip.js';
import { publishRange, seqOf } from './helpers/load.js';
import { readFileSink } from './helpers/file-output.js';
import { waitFor } from './helpers/ports.js';

const run = serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto mosquitto-clients');

describe.runIf(run)('repeated SIGKILL during group commits under load', () => {
  let broker: TestMosquitto;
  beforeAll(async () => {
    broker = await startMosquitto({ persistence: true });
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it('loses nothing: what was acknowledged survived, what was not was redelivered', async () => {
    const stop = new AbortController();
    const env = { MQTT_BROKER: broker.url, MQTT_CLIENT_ID: 'ingest-sigkill-loop', MQTT_TOPICS: 'plant/#', FILE_SINK: 'on' };
    let node: NodeProcess = await startNode(env);
    const dataDir = node.dataDir;
    await node.waitReady();
    // A paced stream that goes on until the last kill, so that every kill lands while messages flow.
    const publishing = publishRange(broker.url, 0, 10_000_000, { window: 1000, ratePerSec: 8000, signal: stop.signal });
    let kills = 0;
    for (let i = 0; i < 5; i++) {
      // Kill while messages are flowing: after this node has committed some, at a varying moment.
      const before = await node.metric('mqtt_ingest_messages_received_total');
      await waitFor(async () => (await node.metric('mqtt_ingest_messages_received_total')) > before + 2000 + i * 700, 30_000, 'messages flowing');
      await node.kill();
      kills += 1;
      node = await startNode(env, { dataDir });
      await node.waitReady();
    }
    // Some more traffic for the last node, then stop publishing.
    const before = await node.metric('mqtt_ingest_messages_received_total');
    await waitFor(async () => (await node.metric('mqtt_ingest_messages_received_total')) > before + 2000, 30_000, 'messages flowing');
    stop.abort();
    const total = await publishing;
    expect(total).toBeGreaterThan(15_000);
    try {
      const records = await waitFor(
        () => {
          const r = readFileSink(path.join(dataDir, 'out'));
          return new Set(r.map((x) => seqOf(x.payload))).size >= total ? r : undefined;
        },
        60_000,
        `all ${total} messages in the file sink`,
      );
      const seqs = new Set(records.map((x) => seqOf(x.payload)));
      expect(seqs.size).toBe(total);
      expect(kills).toBe(5);
      console.log(`sigkill loop: ${kills} kills, ${records.length} records for ${total} messages (${records.length - total} duplicates)`);
    } finally {
      await node.kill();
    }
  });
});
