/**
 * A node restarted on the same DATA_DIR with another MQTT_CLIENT_ID takes over the session it held under the old
 * one (src/intake/subscriber/session-handover.ts): what the broker queued for the old session is stored, its filters
 * are unsubscribed, and the broker discards it. Real nodes as child processes, a real Mosquitto, the file sink.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { mosquittoPaths } from '../src/intake/mosquitto/mosquitto-conf.js';
import { pidAlive } from '../src/intake/mosquitto/process-utils.js';
import { readFileSink } from './helpers/file-output.js';
import { publishRange, seqOf } from './helpers/load.js';
import { refusal } from './helpers/mqtt-clients.js';
import { hasMosquitto, startMosquitto, type TestMosquitto } from './helpers/mosquitto.js';
import { startNode, type NodeProcess } from './helpers/node-process.js';
import { waitFor } from './helpers/ports.js';
import { serviceAvailable } from './helpers/skip.js';

const run = serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto mosquitto-clients');

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function broker(): Promise<TestMosquitto> {
  const b = await startMosquitto({ persistence: true });
  cleanups.push(() => b.stop());
  return b;
}

async function node(env: Record<string, string>, opts: { dataDir?: string; mqttPort?: number } = {}): Promise<NodeProcess> {
  const n = await startNode(env, opts);
  cleanups.push(() => n.kill());
  return n;
}

function externalEnv(b: TestMosquitto, clientId: string, extra: Record<string, string> = {}): Record<string, string> {
  return { MQTT_BROKER_MODE: 'external', MQTT_BROKER: b.url, MQTT_TOPICS: 'plant/#', MQTT_CLIENT_ID: clientId, FILE_SINK: 'on', ...extra };
}

/** The distinct sequence numbers in [from, to) that the node's file sink holds. */
function stored(dataDir: string, from: number, to: number): number {
  const seqs = readFileSink(path.join(dataDir, 'out')).map((r) => seqOf(r.payload));
  return new Set(seqs.filter((s) => s >= from && s < to)).size;
}

function logged(n: NodeProcess, code: string): Record<string, unknown>[] {
  return n.logObjects().filter((l) => l.code === code);
}

/** The client ids of the `subscriptions <broker> <client id>` keys of the spool's meta table (read once the node has stopped). */
function rememberedClientIds(dataDir: string): string[] {
  const db = new Database(path.join(dataDir, 'spool', 'spool.db'), { readonly: true });
  try {
    const keys = db.prepare("SELECT key FROM meta WHERE key LIKE 'subscriptions %'").pluck().all() as string[];
    return keys.map((k) => k.split(' ').slice(2).join(' ')).sort();
  } finally {
    db.close();
  }
}

/**
 * Whether the broker holds a session for `clientId`: an MQTT 5 CONNACK's Session Present, to a clean start off. The
 * probe's session expires with its connection, so it leaves none behind.
 */
async function brokerHasSession(url: string, clientId: string): Promise<boolean> {
  const client = mqtt.connect(url, { clientId, protocolVersion: 5, clean: false, reconnectPeriod: 0, properties: { sessionExpiryInterval: 0 } });
  try {
    return await new Promise<boolean>((resolve, reject) => {
      client.once('connect', (connack) => resolve(connack.sessionPresent));
      client.once('error', reject);
    });
  } finally {
    await client.endAsync();
  }
}

/** A node on client id `clientId` subscribes its persistent session, then stops cleanly: the broker keeps the session. */
async function sessionLeftBehind(env: Record<string, string>, opts: { dataDir?: string; mqttPort?: number } = {}): Promise<string> {
  const first = await node(env, opts);
  await first.waitReady();
  expect(await first.stop()).toBe(0);
  return first.dataDir;
}

describe.runIf(run)('a changed MQTT_CLIENT_ID hands the old session over', () => {
  for (const version of ['5', '4'] as const) {
    it(`external mode, MQTT ${version === '5' ? '5' : '3.1.1'}: what was queued for the old client id is stored, and the old session is gone`, async () => {
      const b = await broker();
      const N = 300;
      const dataDir = await sessionLeftBehind(externalEnv(b, 'ingest-a', { MQTT_PROTOCOL_VERSION: version }));
      // Queued in session ingest-a, which nobody reads any more.
      expect(await publishRange(b.url, 0, N)).toBe(N);

      const started = Date.now();
      const second = await node(externalEnv(b, 'ingest-b', { MQTT_PROTOCOL_VERSION: version }), { dataDir });
      await second.waitReady();
      await waitFor(() => logged(second, 'SESSION_HANDED_OVER').length > 0, 30_000, 'SESSION_HANDED_OVER logged');
      await waitFor(() => stored(dataDir, 0, N) === N, 20_000, `all ${N} queued for ingest-a stored`);
      const [line] = logged(second, 'SESSION_HANDED_OVER');
      expect(line).toMatchObject({ oldClientId: 'ingest-a', messages: N });
      expect(line!.ms as number).toBeLessThan(Date.now() - started);
      expect(logged(second, 'SESSION_HANDOVER_FAILED')).toEqual([]);
      expect(await brokerHasSession(b.url, 'ingest-a')).toBe(false);

      // The node's own session goes on as usual.
      expect(await publishRange(b.url, N, N + 50)).toBe(50);
      await waitFor(() => stored(dataDir, N, N + 50) === 50, 10_000, 'messages published after the handover stored');
      expect(await second.stop()).toBe(0);
      expect(rememberedClientIds(dataDir)).toEqual(['ingest-b']);

      // Nothing is left to hand over at the next start.
      const third = await node(externalEnv(b, 'ingest-b', { MQTT_PROTOCOL_VERSION: version }), { dataDir });
      await third.waitReady();
      expect(await third.stop()).toBe(0);
      expect(logged(third, 'SESSION_HANDED_OVER')).toEqual([]);
    });
  }

  it('external mode with MQTT_SHARE_GROUP: the old member no longer gets a turn of the group', async () => {
    const b = await broker();
    const N = 200;
    const M = 400;
    const share = { MQTT_SHARE_GROUP: 'ingest' };
    const dataDir = await sessionLeftBehind(externalEnv(b, 'ingest-a', share));
    // ingest-a is the group's only member: Mosquitto queues every one of these for it.
    expect(await publishRange(b.url, 0, N)).toBe(N);

    const second = await node(externalEnv(b, 'ingest-b', share), { dataDir });
    await second.waitReady();
    await waitFor(() => logged(second, 'SESSION_HANDED_OVER').length > 0, 30_000, 'SESSION_HANDED_OVER logged');
    expect(logged(second, 'SESSION_HANDED_OVER')[0]).toMatchObject({ oldClientId: 'ingest-a', messages: N });

    // With ingest-a still a member, Mosquitto would queue every other one of these for it (eclipse/mosquitto#2662).
    expect(await publishRange(b.url, N, N + M)).toBe(M);
    await waitFor(() => stored(dataDir, 0, N + M) === N + M, 20_000, `all ${N + M} stored by ingest-b`);
    expect(await brokerHasSession(b.url, 'ingest-a')).toBe(false);
    expect(await second.stop()).toBe(0);
    expect(rememberedClientIds(dataDir)).toEqual(['ingest-b']);
  });

  it('a broker that refuses the old client id: the node is ready on the new one, logs SESSION_HANDOVER_FAILED, and tries again at the next start', async () => {
    const b = await broker();
    const N = 100;
    const dataDir = await sessionLeftBehind(externalEnv(b, 'ingest-a'));
    expect(await publishRange(b.url, 0, N)).toBe(N);

    // Mosquitto now lets in only client ids that start with `ingest-b` (reloaded on SIGHUP; its sessions stay).
    const conf = path.join(b.dataDir, 'mosquitto', 'test-mosquitto.conf');
    const original = fs.readFileSync(conf, 'utf8');
    fs.writeFileSync(conf, `${original}\nclientid_prefixes ingest-b\n`);
    b.proc.kill('SIGHUP');
    await waitFor(async () => (await refusal(b.url, { clientId: 'probe' })) !== 'connected', 10_000, 'the prefix in force');

    const second = await node(externalEnv(b, 'ingest-b'), { dataDir });
    await second.waitReady();
    await waitFor(() => logged(second, 'SESSION_HANDOVER_FAILED').length > 0, 30_000, 'SESSION_HANDOVER_FAILED logged');
    expect(logged(second, 'SESSION_HANDOVER_FAILED')[0]).toMatchObject({ oldClientId: 'ingest-a', messages: 0 });
    expect(String(logged(second, 'SESSION_HANDOVER_FAILED')[0]!.reason)).toMatch(/refused/);
    // Its own session takes messages all the same.
    expect(await publishRange(b.url, 1000, 1010, { clientId: 'ingest-b-publisher' })).toBe(10);
    await waitFor(() => stored(dataDir, 1000, 1010) === 10, 10_000, 'messages on the new session stored');
    expect((await second.readiness()).status).toBe(200);
    expect(stored(dataDir, 0, N)).toBe(0);
    expect(await second.stop()).toBe(0);
    expect(rememberedClientIds(dataDir)).toEqual(['ingest-a', 'ingest-b']);

    fs.writeFileSync(conf, original);
    b.proc.kill('SIGHUP');
    await waitFor(async () => (await refusal(b.url, { clientId: 'probe' })) === 'connected', 10_000, 'the prefix lifted');

    const third = await node(externalEnv(b, 'ingest-b'), { dataDir });
    await third.waitReady();
    await waitFor(() => logged(third, 'SESSION_HANDED_OVER').length > 0, 30_000, 'SESSION_HANDED_OVER logged at the next start');
    await waitFor(() => stored(dataDir, 0, N) === N, 20_000, `all ${N} queued for ingest-a stored`);
    // Still subscribed until then, the old session had queued the 10 published meanwhile too.
    expect(logged(third, 'SESSION_HANDED_OVER')[0]).toMatchObject({ oldClientId: 'ingest-a', messages: N + 10 });
    expect(await third.stop()).toBe(0);
    expect(rememberedClientIds(dataDir)).toEqual(['ingest-b']);
    expect(await brokerHasSession(b.url, 'ingest-a')).toBe(false);
  });

  it("mosquitto mode: what the node's own Mosquitto queued for the old client id (with its secret suffix) is stored", async () => {
    const env = (clientId: string) => ({ MQTT_BROKER_MODE: 'mosquitto', MQTT_TOPICS: 'plant/#', MQTT_CLIENT_ID: clientId, FILE_SINK: 'on' });
    const N = 200;
    const first = await node(env('ingest-a'));
    await first.waitReady();
    const { dataDir, mqttPort } = first;
    const secret = fs.readFileSync(path.join(dataDir, 'mosquitto', 'subscriber-id'), 'utf8').trim();
    const brokerPid = Number(fs.readFileSync(mosquittoPaths(dataDir).pidFile, 'utf8'));
    cleanups.push(async () => pidAlive(brokerPid) && process.kill(brokerPid, 'SIGKILL'));
    // The node alone is killed: its Mosquitto stays up and queues for the subscriber's session.
    await first.killNodeOnly();
    await new Promise((r) => setTimeout(r, 500));
    expect(await publishRange(`mqtt://127.0.0.1:${mqttPort}`, 0, N)).toBe(N);

    // The next node stops the leftover Mosquitto (SIGTERM: it saves its database) and starts its own on it.
    const second = await node(env('ingest-b'), { dataDir, mqttPort });
    await second.waitReady();
    await waitFor(() => logged(second, 'SESSION_HANDED_OVER').length > 0, 30_000, 'SESSION_HANDED_OVER logged');
    await waitFor(() => stored(dataDir, 0, N) === N, 20_000, `all ${N} queued for ingest-a stored`);
    expect(logged(second, 'SESSION_HANDED_OVER')[0]).toMatchObject({ oldClientId: 'ingest-a', messages: N });
    expect(second.logs.filter((l) => l.includes(secret))).toEqual([]);
    expect(await second.stop()).toBe(0);
    expect(rememberedClientIds(dataDir)).toEqual(['ingest-b']);
  });
});
