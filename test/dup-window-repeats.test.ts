import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { startNode, type NodeProcess } from './helpers/node-process.js';
import { hasMosquitto, startMosquitto, type TestMosquitto } from './helpers/mosquitto.js';
import { serviceAvailable } from './helpers/skip.js';
import { readFileSink } from './helpers/file-output.js';
import { waitFor } from './helpers/ports.js';
import { sameDigestPayload, seqOfSameDigest } from './helpers/crc-forge.js';
import { publishRange } from './helpers/load.js';

const run = serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto mosquitto-clients');

/** One topic, so that every message has the same inbound-window digest (topic CRC, payload CRC, length). */
const TOPIC = 'plant/relay-7/state';
/** Mosquitto numbers a client's messages 1..65,535 and wraps: past this, every packet id has been used before. */
const WRAP = 66_000;
/** Messages per paced burst; the node is SIGKILLed in the middle of each. */
const BURST = 8_000;
const RATE = 6_000;

/** How often each sequence number was written by the file sink. */
function sinkCounts(dataDir: string): Map<number, number> {
  const counts = new Map<number, number>();
  for (const r of readFileSink(path.join(dataDir, 'out'))) {
    const seq = seqOfSameDigest(Buffer.from(r.payload, r.payload_encoding === 'base64' ? 'base64' : 'utf8'));
    counts.set(seq, (counts.get(seq) ?? 0) + 1);
  }
  return counts;
}

describe.runIf(run)('repeated payloads across packet-id wraps and SIGKILLs (inbound window)', () => {
  let broker: TestMosquitto;
  beforeAll(async () => {
    broker = await startMosquitto({ persistence: true });
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it('every message the broker acknowledged to the publisher reaches the file sink, although all share one digest', async () => {
    const env = { MQTT_BROKER: broker.url, MQTT_CLIENT_ID: 'ingest-repeats', MQTT_TOPICS: 'plant/#', FILE_SINK: 'on' };
    let node: NodeProcess = await startNode(env);
    const dataDir = node.dataDir;
    try {
      await node.waitReady();
      // Past the wrap: from here on, each packet id the broker uses was last used for another message with
      // the same digest, which is what made the old window take a new message for a redelivery.
      const stream = { topic: () => TOPIC, payload: sameDigestPayload, window: 1000 };
      let published = await publishRange(broker.url, 0, WRAP, stream);
      await waitFor(async () => (await node.metric('mqtt_ingest_messages_received_total')) >= WRAP, 60_000, `${WRAP} messages received`);

      // SIGKILL the node in the middle of a paced burst, three times; the fourth time Mosquitto is restarted
      // (it saves its database at SIGTERM) while the node is down, so it resends from what it saved.
      for (let round = 0; round < 4; round++) {
        const before = await node.metric('mqtt_ingest_messages_received_total');
        const burst = publishRange(broker.url, published, published + BURST, { ...stream, ratePerSec: RATE });
        await waitFor(
          async () => (await node.metric('mqtt_ingest_messages_received_total')) > before + 1500 + round * 900,
          30_000,
          'messages flowing',
        );
        await node.kill();
        published += await burst;
        if (round === 3) await broker.restart();
        node = await startNode(env, { dataDir });
        await node.waitReady();
      }
      expect(published).toBe(WRAP + 4 * BURST);

      const counts = await waitFor(
        () => {
          const c = sinkCounts(dataDir);
          return c.size >= published ? c : undefined;
        },
        90_000,
        `all ${published} messages in the file sink`,
      ).catch(() => sinkCounts(dataDir));
      const missing: number[] = [];
      for (let i = 0; i < published; i++) if (!counts.has(i)) missing.push(i);
      expect(missing).toEqual([]);
      let records = 0;
      for (const n of counts.values()) records += n;
      console.log(
        `repeated payloads: ${published} published, ${records} records in the file sink (${records - published} duplicates), ` +
          `${await node.metric('mqtt_ingest_duplicates_skipped_total')} redeliveries skipped by the last node`,
      );
    } finally {
      await node.kill();
    }
  });
});
