import { afterEach, describe, expect, it } from 'vitest';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { baseEnv, runCli, startNode, type NodeProcess } from './helpers/node-process.js';
import { hasMosquitto, startMosquitto, type TestMosquitto } from './helpers/mosquitto.js';
import { serviceAvailable } from './helpers/skip.js';
import { readFileSink } from './helpers/file-output.js';
import { publishRange, sensorPayload, seqOf } from './helpers/load.js';
import { freePort, waitFor } from './helpers/ports.js';
import { blockFileSink } from './helpers/disk.js';
import { refusal } from './helpers/mqtt-clients.js';
import Database from 'better-sqlite3';
import { isLoopbackPeer } from '../src/http/server.js';
import { parseDeadline } from '../src/cli/leave.js';

const run = serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto mosquitto-clients');

/** A non-loopback address of this host, to ask POST /leave from; undefined when it has none. */
const outsideAddress = Object.values(os.networkInterfaces())
  .flat()
  .find((a) => a && !a.internal && a.family === 'IPv4')?.address;

function memberEnv(broker: TestMosquitto, clientId: string): Record<string, string> {
  return { MQTT_BROKER_MODE: 'external', MQTT_BROKER: broker.url, MQTT_TOPICS: 'plant/#', MQTT_SHARE_GROUP: 'ingest', MQTT_CLIENT_ID: clientId, FILE_SINK: 'on' };
}

function sinkSeqs(node: { dataDir: string }): number[] {
  return readFileSink(path.join(node.dataDir, 'out')).map((r) => seqOf(r.payload));
}

async function waitForUnion(nodes: NodeProcess[], total: number, timeoutMs: number): Promise<number[][]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const perSink = nodes.map(sinkSeqs);
    if (new Set(perSink.flat()).size >= total || Date.now() > deadline) return perSink;
    await new Promise((r) => setTimeout(r, 500));
  }
}

function missing(perSink: number[][], total: number): number[] {
  const union = new Set(perSink.flat());
  const out: number[] = [];
  for (let i = 0; i < total && out.length < 20; i++) if (!union.has(i)) out.push(i);
  return out;
}

/** `mqtt-ingest leave` against the node on this host, as an operator runs it. */
function leaveCli(node: NodeProcess, args: string[] = [], timeoutMs = 60_000) {
  return runCli(['leave', ...args], baseEnv({ PORT: String(node.httpPort) }), timeoutMs);
}

/** Whether the broker holds a session for `clientId`: an MQTT 5 CONNACK's Session Present, to a clean start off. */
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

/** The filters the node's spool remembers for its session (read once the node has stopped). */
function rememberedFilters(dataDir: string): string[] {
  const db = new Database(path.join(dataDir, 'spool', 'spool.db'), { readonly: true });
  try {
    const rows = db.prepare("SELECT value FROM meta WHERE key LIKE 'subscriptions %'").all() as Array<{ value: string }>;
    return rows.flatMap((r) => JSON.parse(r.value) as string[]);
  } finally {
    db.close();
  }
}

describe('POST /leave: who may ask', () => {
  it('reads --deadline as seconds or with s, m, h, from 1 s to a day', () => {
    expect([parseDeadline('600'), parseDeadline('90s'), parseDeadline('10m'), parseDeadline('1h')]).toEqual([600, 90, 600, 3600]);
    for (const bad of ['0', '25h', 'soon', '-5', '1.5m']) expect(parseDeadline(bad), bad).toMatch(/^--deadline must be/);
  });

  it('takes loopback peers only', () => {
    for (const a of ['127.0.0.1', '::1', '::ffff:127.0.0.1']) expect(isLoopbackPeer(a), a).toBe(true);
    for (const a of ['10.0.0.7', '::ffff:10.0.0.7', '127.0.0.2', 'fd00::2', undefined]) expect(isLoopbackPeer(a), String(a)).toBe(false);
  });

  it('answers GET /leave 405, a peer from another address 403, and a node out of reach makes the CLI exit 1 saying so', async () => {
    const node = await startNode({ FILE_SINK: 'on' });
    try {
      await node.waitReady();
      const get = await fetch(`http://127.0.0.1:${node.httpPort}/leave`);
      expect(get.status).toBe(405);
      expect(get.headers.get('allow')).toBe('POST');
      if (outsideAddress) {
        const outside = await fetch(`http://${outsideAddress}:${node.httpPort}/leave`, { method: 'POST' });
        expect(outside.status).toBe(403);
        expect(((await outside.json()) as { error: string }).error).toContain(`not from ${outsideAddress}`);
      } else {
        console.log('no non-loopback address on this host: the 403 is checked by the address test only');
      }
      const bad = await fetch(`http://127.0.0.1:${node.httpPort}/leave?deadlineSeconds=soon`, { method: 'POST' });
      expect(bad.status).toBe(400);
      // None of it started a leave.
      expect((await node.readiness()).status).toBe(200);
    } finally {
      await node.kill();
    }
    const nobody = await runCli(['leave', '--port', String(await freePort())], baseEnv(), 30_000);
    expect(nobody.code).toBe(1);
    expect(nobody.stdout).toMatch(/cannot reach the node at 127\.0\.0\.1:\d+ within 15 s/);
  }, 60_000);
});

describe.runIf(run)('mqtt-ingest leave', () => {
  let broker: TestMosquitto | undefined;
  let nodes: NodeProcess[] = [];
  afterEach(async () => {
    await Promise.all(nodes.map((n) => n.kill()));
    nodes = [];
    await broker?.stop();
    broker = undefined;
  });

  it('one of three nodes sharing a broker leaves mid-stream: nothing missing, the other two take its share', async () => {
    const total = 30_000;
    broker = await startMosquitto({ persistence: true });
    const b = broker;
    const ids = ['la', 'lb', 'lc'].map((id) => `ingest-leave-${id}-${process.pid}`);
    nodes = await Promise.all(ids.map((id) => startNode(memberEnv(b, id))));
    await Promise.all(nodes.map((n) => n.waitReady()));
    const leaver = nodes[1]!;

    // Three publishers at 700/s each: about 14 s of publishing, the leave in the middle of it.
    const per = total / 3;
    const publishing = Promise.all([0, 1, 2].map((p) => publishRange(b.url, p * per, (p + 1) * per, { clientId: `leave-pub-${p}-${process.pid}`, ratePerSec: 700 })));
    await waitFor(async () => (await leaver.metric('mqtt_ingest_messages_received_total')) > 2000, 30_000, 'the leaving node ingesting');
    const receivedAtAsk = await leaver.metric('mqtt_ingest_messages_received_total');
    const left = await leaveCli(leaver, ['--deadline', '60']);
    const receivedAtLeft = await leaver.metric('mqtt_ingest_messages_received_total');
    expect(left.code, left.stdout + left.stderr).toBe(0);
    expect(left.stdout).toMatch(/^leave: left after \d+s: unsubscribed and the broker told to discard the session; the spool is empty/);
    const readiness = await leaver.readiness();
    expect(readiness.status).toBe(503);
    expect(readiness.body.leave).toMatchObject({ state: 'left', spoolMessages: 0 });
    expect((readiness.body.spool as { messages: number }).messages).toBe(0);
    expect(leaver.logObjects().map((l) => l.code)).toEqual(expect.arrayContaining(['NODE_LEAVING', 'NODE_LEFT']));
    expect(await brokerHasSession(b.url, ids[1]!)).toBe(false);

    expect((await publishing).reduce((x, y) => x + y, 0)).toBe(total);
    const perSink = await waitForUnion(nodes, total, 60_000);
    expect(missing(perSink, total)).toEqual([]);
    // Nothing more reached it after the leave: the broker no longer counts it in the group.
    expect(await leaver.metric('mqtt_ingest_messages_received_total')).toBe(receivedAtLeft);
    const shares = perSink.map((s) => new Set(s).size);
    console.log(`leave mid-stream: shares ${shares.join(' / ')} of ${total}; ${perSink.flat().length - new Set(perSink.flat()).size} duplicates; ${receivedAtLeft - receivedAtAsk} taken by the leaving node while it left; ${left.stdout.trim()}`);
    expect(shares[1]!).toBeLessThan(total / 3);
    // Everything it did not take, the other two did (each more than a third, with its share).
    expect(shares[0]! + shares[2]!).toBeGreaterThanOrEqual(total - shares[1]!);
    for (const i of [0, 2]) expect(shares[i]!, `node ${i}'s share`).toBeGreaterThan(total / 3);
    expect(await leaver.stop()).toBe(0);
    // The session's filters are forgotten with it: a later start on this disk subscribes afresh.
    expect(rememberedFilters(leaver.dataDir)).toEqual([]);
    // A member that only stopped remembers them (its session stays at the broker).
    expect(await nodes[0]!.stop()).toBe(0);
    expect(rememberedFilters(nodes[0]!.dataDir)).toEqual(['$share/ingest/plant/#']);
  }, 180_000);

  it('MQTT 3.1.1: a clean-session connection makes the broker discard the session, which a SIGTERM leaves', async () => {
    broker = await startMosquitto({ persistence: true });
    const b = broker;
    const env = (id: string) => ({ ...memberEnv(b, id), MQTT_PROTOCOL_VERSION: '4' });
    const [stays, leaves] = await Promise.all([startNode(env(`ingest-v4-stays-${process.pid}`)), startNode(env(`ingest-v4-leaves-${process.pid}`))]);
    nodes = [stays!, leaves!];
    await Promise.all(nodes.map((n) => n.waitReady()));
    expect(await publishRange(b.url, 0, 200)).toBe(200);
    const left = await leaveCli(leaves!, ['--deadline', '30']);
    expect(left.code, left.stdout + left.stderr).toBe(0);
    expect(await brokerHasSession(b.url, `ingest-v4-leaves-${process.pid}`)).toBe(false);
    expect(await stays!.stop()).toBe(0);
    expect(await brokerHasSession(b.url, `ingest-v4-stays-${process.pid}`)).toBe(true);
    const perSink = await waitForUnion(nodes, 200, 15_000);
    expect(missing(perSink, 200)).toEqual([]);
    expect(await leaves!.stop()).toBe(0);
  }, 60_000);

  it('embedded mode: the publisher is cut off, cannot come back, and every message it had a PUBACK for is in the sink', async () => {
    const node = await startNode({ MQTT_BROKER_MODE: 'embedded', FILE_SINK: 'on' });
    nodes = [node];
    await node.waitReady();
    const url = `mqtt://127.0.0.1:${node.mqttPort}`;
    const acked = new Set<number>();
    let closes = 0;
    const client: MqttClient = await mqtt.connectAsync(url, { clientId: `leave-embedded-${process.pid}`, protocolVersion: 4, clean: true, reconnectPeriod: 100 });
    client.on('close', () => (closes += 1));
    let seq = 0;
    const timer = setInterval(() => {
      for (let i = 0; i < 20; i++) {
        const s = seq++;
        client.publish(`plant/line/${s % 8}`, sensorPayload(s), { qos: 1 }, (err) => err || acked.add(s));
      }
    }, 5);
    try {
      await waitFor(() => acked.size > 2000, 30_000, '2000 messages acknowledged');
      const left = await leaveCli(node, ['--deadline', '30']);
      expect(left.code, left.stdout + left.stderr).toBe(0);
      expect(left.stdout).toMatch(/^leave: left after \d+s: the node's broker closed and its publishers disconnected; the spool is empty/);
      expect(closes).toBeGreaterThan(0);
      expect(client.connected).toBe(false);
      expect(await refusal(url)).toMatch(/ECONNREFUSED/);
    } finally {
      clearInterval(timer);
      client.end(true);
    }
    const inSink = new Set(sinkSeqs(node));
    const lost = [...acked].filter((s) => !inSink.has(s));
    console.log(`leave, embedded: ${acked.size} acknowledged of ${seq} sent, ${inSink.size} in the file sink`);
    expect(lost).toEqual([]);
    expect(await node.stop()).toBe(0);
  }, 90_000);

  it('a sink that cannot deliver: the deadline passes and the CLI exits 1 naming what is left; a second leave finishes once it delivers', async () => {
    const node = await startNode({ MQTT_BROKER_MODE: 'embedded', FILE_SINK: 'on' });
    nodes = [node];
    await node.waitReady();
    const unblock = blockFileSink(path.join(node.dataDir, 'out'));
    expect(await publishRange(`mqtt://127.0.0.1:${node.mqttPort}`, 0, 50)).toBe(50);
    const late = await leaveCli(node, ['--deadline', '3']);
    expect(late.code).toBe(1);
    expect(late.stdout).toMatch(/^leave: the deadline \(.+\) passed after \d+s: 50 messages left in the spool; 50 messages in the spool still to deliver \(file 50\)/);
    expect(node.logObjects().find((l) => l.code === 'NODE_LEAVE_DEADLINE_PASSED')).toMatchObject({ spoolMessages: 50 });
    unblock();
    const again = await leaveCli(node, ['--deadline', '60']);
    expect(again.code, again.stdout).toBe(0);
    expect(new Set(sinkSeqs(node)).size).toBe(50);
    expect(await node.stop()).toBe(0);
  }, 120_000);
});
