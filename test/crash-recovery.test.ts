import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNode } from './helpers/node-process.js';
import { createTopicAndSubscription, hasPubSubEmulator, startPubSubEmulator, type PubSubEmulator } from './helpers/pubsub-emulator.js';
import { hasMosquitto, startMosquitto, type TestMosquitto } from './helpers/mosquitto.js';
import { serviceAvailable } from './helpers/skip.js';
import { publishRange, pullUntilUnique, seqOf } from './helpers/load.js';
import { waitFor } from './helpers/ports.js';

const run =
  serviceAvailable('Pub/Sub emulator', hasPubSubEmulator(), 'install the Google Cloud CLI and its pubsub-emulator component') &&
  serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto mosquitto-clients');

describe.runIf(run)('external broker: crashes and offline sessions lose nothing', () => {
  let emu: PubSubEmulator;
  let broker: TestMosquitto;
  beforeAll(async () => {
    [emu, broker] = await Promise.all([startPubSubEmulator(), startMosquitto({ persistence: true })]);
  });
  afterAll(async () => {
    await Promise.all([emu?.stop(), broker?.stop()]);
  });

  const nodeEnv = (topic: string, clientId: string) => ({
    MQTT_BROKER: broker.url,
    MQTT_CLIENT_ID: clientId,
    MQTT_TOPICS: 'plant/#',
    GCP_PROJECT_ID: emu.projectId,
    PUBSUB_TOPIC: topic,
    PUBSUB_EMULATOR_HOST: emu.host,
  });

  it('SIGKILL in the middle of a 50,000-message stream, then restart: nothing is missing in Pub/Sub', async () => {
    await createTopicAndSubscription(emu.host, emu.projectId, 'crash', 'crash-check');
    const env = nodeEnv('crash', 'ingest-crash-test');
    const first = await startNode(env);
    await first.waitReady();
    let killed: Promise<void> | undefined;
    await publishRange(broker.url, 0, 50_000, {
      onProgress: (acked) => {
        if (acked === 20_000) killed = first.kill();
      },
    });
    await killed;
    expect(first.proc.signalCode).toBe('SIGKILL');
    const second = await startNode(env, { dataDir: first.dataDir });
    try {
      await second.waitReady();
      const received = await pullUntilUnique(emu.host, emu.projectId, 'crash-check', 50_000, (r) => seqOf(r.data), 180_000);
      const seqs = new Set(received.map((r) => seqOf(r.data)));
      const missing = [];
      for (let i = 0; i < 50_000; i++) if (!seqs.has(i)) missing.push(i);
      expect(missing).toEqual([]);
      const byId = new Map<string, number>();
      for (const r of received) byId.set(r.attributes.message_id, (byId.get(r.attributes.message_id) ?? 0) + 1);
      const sharedIds = [...byId.values()].filter((n) => n > 1).length;
      console.log(
        `crash test: ${received.length} received for 50,000 published; ${received.length - seqs.size} duplicates, ` +
          `${sharedIds} message_ids seen more than once (retries of ours, de-duplicable downstream)`,
      );
    } finally {
      await second.kill();
    }
  });

  it('10,000 messages published while the node is stopped all arrive when it starts', async () => {
    await createTopicAndSubscription(emu.host, emu.projectId, 'offline', 'offline-check');
    const env = nodeEnv('offline', 'ingest-offline-test');
    const first = await startNode(env);
    await first.waitReady();
    expect(await first.stop()).toBe(0);
    await publishRange(broker.url, 0, 10_000);
    const second = await startNode(env, { dataDir: first.dataDir });
    try {
      await second.waitReady();
      const received = await pullUntilUnique(emu.host, emu.projectId, 'offline-check', 10_000, (r) => seqOf(r.data), 90_000);
      expect(new Set(received.map((r) => seqOf(r.data))).size).toBe(10_000);
      await waitFor(async () => (await second.metric('mqtt_ingest_spool_messages')) === 0, 20_000, 'spool drained');
    } finally {
      await second.kill();
    }
  });
});
