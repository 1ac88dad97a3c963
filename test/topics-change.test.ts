import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import mqtt from 'mqtt';
import Database from 'better-sqlite3';
import { startNode, type NodeProcess } from './helpers/node-process.js';
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

/** The `subscriptions …` keys of the spool's meta table (read once the node has stopped). */
function subscriptionKeys(dataDir: string): Array<{ key: string; value: string }> {
  const db = new Database(path.join(dataDir, 'spool', 'spool.db'), { readonly: true });
  try {
    return db.prepare("SELECT key, value FROM meta WHERE key LIKE 'subscriptions %' ORDER BY key").all() as Array<{ key: string; value: string }>;
  } finally {
    db.close();
  }
}

/**
 * The filters a session was last subscribed to belong to that broker session: a node that restarts with fewer
 * filters must find them, in both subscriber modes, and unsubscribe the removed ones.
 */
describe.runIf(run)('the remembered subscriptions follow the broker session across restarts', () => {
  let external: TestMosquitto;
  beforeAll(async () => {
    external = await startMosquitto({ persistence: true });
  });
  afterAll(async () => {
    await external?.stop();
  });

  const modes = [
    {
      name: 'its own Mosquitto',
      env: () => ({ MQTT_BROKER_MODE: 'mosquitto' }),
      publishUrl: (node: NodeProcess) => `mqtt://127.0.0.1:${node.mqttPort}`,
      // The secret suffix of the subscriber's client id (src/intake/mosquitto/internal-credential.ts).
      secrets: (dataDir: string) => [readFileSync(path.join(dataDir, 'mosquitto', 'subscriber-id'), 'utf8').trim()],
    },
    {
      name: 'an external broker',
      env: () => ({ MQTT_BROKER: external.url }),
      publishUrl: () => external.url,
      secrets: () => [],
    },
  ];

  for (const mode of modes) {
    it(`with ${mode.name}: a filter removed from MQTT_TOPICS no longer ingests, and one key is kept`, async () => {
      const base = { ...mode.env(), MQTT_CLIENT_ID: 'ingest-session-topics', FILE_SINK: 'on' };
      const first = await startNode({ ...base, MQTT_TOPICS: 'a/#,b/#' });
      const { dataDir, mqttPort } = first;
      const payloads = () => readFileSink(path.join(dataDir, 'out')).map((r) => r.payload);
      try {
        await first.waitReady();
        await publish(mode.publishUrl(first), 'b/1', 'b1');
        await waitFor(() => payloads().includes('b1'), 10_000, 'b1 stored');
      } finally {
        expect(await first.stop()).toBe(0);
      }
      expect(subscriptionKeys(dataDir)).toHaveLength(1);
      const second = await startNode({ ...base, MQTT_TOPICS: 'a/#' }, { dataDir, mqttPort });
      try {
        await second.waitReady();
        // Published in this order by one client: a2 arrives after bx would have.
        await publish(mode.publishUrl(second), 'b/x', 'bx');
        await publish(mode.publishUrl(second), 'a/2', 'a2');
        await waitFor(() => payloads().includes('a2'), 10_000, 'a2 stored');
        expect(payloads()).not.toContain('bx');
      } finally {
        expect(await second.stop()).toBe(0);
      }
      const keys = subscriptionKeys(dataDir);
      expect(keys).toHaveLength(1);
      expect(JSON.parse(keys[0]!.value)).toEqual(['a/#']);
      for (const secret of mode.secrets(dataDir)) expect(keys[0]!.key).not.toContain(secret);
    });
  }
});

describe.runIf(run)('an upgraded node still knows the filters it remembered under the old key', () => {
  let external: TestMosquitto;
  beforeAll(async () => {
    external = await startMosquitto({ persistence: true });
  });
  afterAll(async () => {
    await external?.stop();
  });

  it('reads `subscriptions <broker URL, password "redacted">` once, then keeps the session key only', async () => {
    // The test broker takes any user name and password (it has no password file).
    const url = `mqtt://ingest:s3cret@127.0.0.1:${external.port}`;
    const base = { MQTT_BROKER: url, MQTT_CLIENT_ID: 'ingest-upgraded', FILE_SINK: 'on' };
    const first = await startNode({ ...base, MQTT_TOPICS: 'a/#,b/#' });
    const { dataDir } = first;
    const payloads = () => readFileSink(path.join(dataDir, 'out')).map((r) => r.payload);
    try {
      await first.waitReady();
    } finally {
      expect(await first.stop()).toBe(0);
    }
    // What a node before the session key wrote: the subscriber URL through new URL(), password replaced.
    const legacy = new URL(url);
    legacy.password = 'redacted';
    const db = new Database(path.join(dataDir, 'spool', 'spool.db'));
    try {
      db.prepare("DELETE FROM meta WHERE key LIKE 'subscriptions %'").run();
      db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run(`subscriptions ${legacy.toString()}`, JSON.stringify(['a/#', 'b/#']));
    } finally {
      db.close();
    }
    const second = await startNode({ ...base, MQTT_TOPICS: 'a/#' }, { dataDir });
    try {
      await second.waitReady();
      await publish(external.url, 'b/x', 'bx');
      await publish(external.url, 'a/2', 'a2');
      await waitFor(() => payloads().includes('a2'), 10_000, 'a2 stored');
      expect(payloads()).not.toContain('bx');
    } finally {
      expect(await second.stop()).toBe(0);
    }
    const keys = subscriptionKeys(dataDir).map((k) => k.key);
    expect(keys.filter((k) => k.includes('s3cret'))).toEqual([]);
    expect(keys.filter((k) => k !== `subscriptions ${legacy.toString()}`)).toHaveLength(1);
  });
});
