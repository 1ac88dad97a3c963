/**
 * `mqtt-ingest leave` in the mosquitto broker mode (docs/operations.md, "Scaling down: mqtt-ingest leave"): the
 * node's Mosquitto restarts with its loopback listener only, the subscriber takes everything Mosquitto acknowledged
 * to the publishers and still holds, the session is discarded and Mosquitto stopped. The compiled node runs as a
 * child process with the file sink; Mosquitto is the real one; messages are counted in the file sink by sequence
 * number. A node SIGSTOPped holds every commit while its Mosquitto goes on acknowledging and queueing
 * (test/broker-modes.test.ts does the same), which is what the leave must not lose.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { mosquittoPaths } from '../src/intake/mosquitto/mosquitto-conf.js';
import { pidAlive } from '../src/intake/mosquitto/process-utils.js';
import { AckedPublisher } from './helpers/acked-publisher.js';
import { hasMosquitto, mosquittoBin } from './helpers/mosquitto.js';
import { nextSave } from './helpers/mosquitto-db.js';
import { refusal } from './helpers/mqtt-clients.js';
import { baseEnv, runCli, startNode, type NodeProcess } from './helpers/node-process.js';
import { waitFor } from './helpers/ports.js';
import { SinkDirs } from './helpers/sink-dirs.js';
import { serviceAvailable } from './helpers/skip.js';

const run = serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto');
const LEFT = /^leave: left after \d+s: the node's Mosquitto closed its public listeners \(its publishers disconnected\), handed the node everything it held for the node's session, discarded the session and was stopped; the spool is empty/;

function mosquittoEnv(out: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    MQTT_BROKER_MODE: 'mosquitto',
    MOSQUITTO_BIN: mosquittoBin()!,
    MQTT_TOPICS: 'plant/#',
    FILE_SINK: 'on',
    FILE_SINK_DIR: out,
    RETRY_INITIAL_DELAY_MS: '100',
    RETRY_MAX_DELAY_MS: '500',
    ...extra,
  };
}

/** `mqtt-ingest leave` against the node on this host, as an operator runs it. */
function leaveCli(node: NodeProcess, args: string[] = [], timeoutMs = 120_000) {
  return runCli(['leave', ...args], baseEnv({ PORT: String(node.httpPort) }), timeoutMs);
}

/** What a database of Mosquitto 2.0 holds, by kind of record. */
interface DbRecords {
  messages: number;
  /** Messages queued or in flight for a session (one record per session and message). */
  clientMessages: number;
  subscriptions: number;
  sessions: number;
}

/**
 * Reads the records of a Mosquitto 2.0 database (persistence format 6, written at each save): after the magic, a
 * CRC and the format version, chunks of a 32-bit type and a 32-bit length, big-endian (Mosquitto's persist.h:
 * 2 a stored message, 3 a message of a session, 5 a subscription, 6 a session).
 */
function dbRecords(file: string): DbRecords {
  const d = fs.readFileSync(file);
  expect(d.subarray(0, 15).toString('latin1')).toBe('\x00\xb5\x00mosquitto db');
  expect(d.readUInt32BE(19)).toBe(6);
  const count: Record<number, number> = {};
  for (let off = 23; off < d.length; ) {
    const type = d.readUInt32BE(off);
    count[type] = (count[type] ?? 0) + 1;
    off += 8 + d.readUInt32BE(off + 4);
  }
  return { messages: count[2] ?? 0, clientMessages: count[3] ?? 0, subscriptions: count[5] ?? 0, sessions: count[6] ?? 0 };
}

function codes(node: NodeProcess): unknown[] {
  return node.logObjects().map((l) => l.code);
}

function brokerPid(node: NodeProcess): number | undefined {
  try {
    return Number(fs.readFileSync(mosquittoPaths(node.dataDir).pidFile, 'utf8'));
  } catch {
    return undefined;
  }
}

describe.runIf(run)('mqtt-ingest leave, mosquitto broker mode', () => {
  const outs = new SinkDirs();
  let node: NodeProcess | undefined;
  let pubs: AckedPublisher[] = [];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-leave-mosquitto-'));
  afterEach(async () => {
    await Promise.all(pubs.map((p) => p.end().catch(() => undefined)));
    pubs = [];
    // SIGKILL of the node's process group: its Mosquitto goes with it.
    await node?.kill();
    node = undefined;
    outs.remove();
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('mid-stream, after a freeze: every message Mosquitto acknowledged is in the sink, the public port refuses, nothing is left in Mosquitto', async () => {
    const out = outs.make();
    node = await startNode(mosquittoEnv(out.dir));
    await node.waitReady();
    const n = node;
    const url = `mqtt://127.0.0.1:${n.mqttPort}`;
    pubs = await Promise.all([1, 2].map((i) => AckedPublisher.connect(url, { first: i * 10_000_000 })));
    for (const p of pubs) p.flow(100);
    const acked = () => pubs.reduce((sum, p) => sum + p.acked.size, 0);
    await waitFor(async () => (await n.metric('mqtt_ingest_messages_received_total')) > 2000, 30_000, 'the node ingesting');

    // Frozen: Mosquitto goes on acknowledging and queues for the node's session what the node does not take.
    process.kill(n.proc.pid!, 'SIGSTOP');
    const db = mosquittoPaths(n.dataDir).db;
    const ackedAtFreeze = acked();
    await nextSave(db); // the next autosave holds what was queued by then
    const frozenCopy = path.join(tmp, 'frozen.db');
    fs.copyFileSync(db, frozenCopy);
    const queuedWhileFrozen = acked() - ackedAtFreeze;
    process.kill(n.proc.pid!, 'SIGCONT');

    const left = await leaveCli(n, ['--deadline', '90']);
    expect(left.code, left.stdout + left.stderr).toBe(0);
    expect(left.stdout).toMatch(LEFT);
    for (const p of pubs) p.stopFlow();

    // The publishers were disconnected and cannot come back to this node.
    expect(pubs.map((p) => p.client.connected)).toEqual([false, false]);
    expect(await refusal(url)).toMatch(/ECONNREFUSED/);
    const readiness = await n.readiness();
    expect(readiness.status).toBe(503);
    expect(readiness.body.leave).toMatchObject({ state: 'left', spoolMessages: 0 });
    expect(readiness.body.broker).toMatchObject({ mode: 'mosquitto', state: 'stopped', detail: expect.stringMatching(/^stopped by mqtt-ingest leave/) });
    expect(readiness.body.source).toMatchObject({ state: 'left' });
    expect(codes(n)).toEqual(expect.arrayContaining(['NODE_LEAVING', 'BROKER_LOOPBACK_ONLY', 'NODE_LEFT']));
    // Stopped once the session was drained and discarded.
    const loopbackPid = n.logObjects().find((l) => l.code === 'BROKER_LOOPBACK_ONLY')?.pid as number;
    expect(loopbackPid).toBeGreaterThan(0);
    expect(pidAlive(loopbackPid)).toBe(false);
    expect(brokerPid(n)).toBeUndefined();

    // Every message a publisher got a PUBACK for is in the file sink.
    const inSink = outs.stored();
    const lost = pubs.flatMap((p) => [...p.acked].filter((s) => !inSink.has(s)));
    expect(lost.slice(0, 20)).toEqual([]);
    // Mosquitto held a backlog for the node while it was frozen, and holds nothing after the leave.
    const frozen = dbRecords(frozenCopy);
    expect(frozen.clientMessages).toBeGreaterThan(1000);
    expect(dbRecords(db)).toEqual({ messages: 0, clientMessages: 0, subscriptions: 0, sessions: 0 });
    console.log(
      `leave, mosquitto: ${acked()} acknowledged (${queuedWhileFrozen} while frozen, ${frozen.clientMessages} in Mosquitto's database then), ${inSink.size} in the file sink; ${left.stdout.trim()}`,
    );
    expect(await n.stop()).toBe(0);
  }, 180_000);

  it('Mosquitto SIGKILLed during the leave comes back with the loopback listener only, and the leave completes without loss', async () => {
    // A blocked sink and a small spool hold the drain: Mosquitto keeps most of the backlog while it is killed.
    const out = outs.make(true);
    node = await startNode(mosquittoEnv(out.dir, { SPOOL_MAX_BYTES: '1MiB' }));
    await node.waitReady();
    const n = node;
    const url = `mqtt://127.0.0.1:${n.mqttPort}`;
    const pub = await AckedPublisher.connect(url, { first: 30_000_000 });
    pubs = [pub];
    const batch = await pub.publish(20_000, { timeoutMs: 60_000 });
    expect(pub.ackedIn(batch)).toBe(20_000);
    const firstPid = brokerPid(n)!;

    const leaving = leaveCli(n, ['--deadline', '120']);
    await waitFor(() => codes(n).includes('BROKER_LOOPBACK_ONLY'), 30_000, 'Mosquitto on the loopback listener only');
    expect(await refusal(url)).toMatch(/ECONNREFUSED/);
    await waitFor(
      async () => /^the intake is still leaving: taking what the node's Mosquitto \(loopback listener only\) still holds/.test(((await n.readiness()).body.leave as { detail: string }).detail),
      15_000,
      'the leave draining',
    );
    const loopbackPid = brokerPid(n)!;
    expect(loopbackPid).not.toBe(firstPid);
    process.kill(loopbackPid, 'SIGKILL');
    await waitFor(() => codes(n).includes('BROKER_DIED'), 10_000, 'the death noticed');
    const restarted = await waitFor(
      async () => {
        const b = (await n.readiness()).body.broker as { state: string; restarts: number; pid: number; detail: string };
        return b.state === 'up' && b.restarts === 1 ? b : undefined;
      },
      15_000,
      'Mosquitto restarted',
    );
    expect(restarted.pid).not.toBe(loopbackPid);
    expect(restarted.detail).toMatch(/^loopback listener only/);
    // The restart after the crash kept the leave's listeners: the publishers' port stays closed.
    expect(await refusal(url)).toMatch(/ECONNREFUSED/);
    expect(pub.client.connected).toBe(false);

    out.unblock();
    const left = await leaving;
    expect(left.code, left.stdout + left.stderr).toBe(0);
    expect(left.stdout).toMatch(LEFT);
    const inSink = outs.stored();
    const lost = [...pub.acked].filter((s) => !inSink.has(s));
    expect(lost.slice(0, 20)).toEqual([]);
    expect(dbRecords(mosquittoPaths(n.dataDir).db)).toEqual({ messages: 0, clientMessages: 0, subscriptions: 0, sessions: 0 });
    console.log(`leave, mosquitto killed during it: ${pub.acked.size} acknowledged, ${inSink.size} in the file sink; ${left.stdout.trim()}`);
    expect(await n.stop()).toBe(0);
  }, 240_000);

  it('with MQTT_SHARE_GROUP (other nodes subscribe to its Mosquitto) it refuses, naming why, and goes on taking messages', async () => {
    const out = outs.make();
    node = await startNode(mosquittoEnv(out.dir, { MQTT_SHARE_GROUP: 'ingest' }));
    await node.waitReady();
    const n = node;
    const refused = await leaveCli(n, [], 30_000);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toMatch(/^leave: refused by the node \(HTTP 409\): leave is not available in the mosquitto broker mode with MQTT_SHARE_GROUP: other nodes subscribe to this node's own Mosquitto/);
    expect((await n.readiness()).status).toBe(200);
    const pub = await AckedPublisher.connect(`mqtt://127.0.0.1:${n.mqttPort}`, { first: 40_000_000 });
    pubs = [pub];
    const batch = await pub.publish(20);
    await waitFor(() => [...outs.stored()].filter((s) => s >= batch.from && s < batch.to).length === 20, 15_000, '20 messages in the file sink');
  }, 60_000);
});
