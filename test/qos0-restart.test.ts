/**
 * What happens to QoS 0 messages (Sparkplug B publishes births and data at QoS 0) published while the node is down,
 * measured per broker mode with the real node (SIGKILL), real Mosquitto and MQTT.js publishers, counted in the file
 * sink once the node is back. The numbers are those of docs/operations.md, "QoS 0 while the node restarts".
 *
 * Each run publishes 100 messages before the kill (all stored: the node works), GAP messages while the node is down,
 * and, where the node's absence could explain a zero, 100 after the restart.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { mosquittoPaths, renderMosquittoConf } from '../src/intake/mosquitto/mosquitto-conf.js';
import { canConnect, pidAlive, pollUntil } from '../src/intake/mosquitto/process-utils.js';
import { readFileSink } from './helpers/file-output.js';
import { sensorPayload, seqOf } from './helpers/load.js';
import { refusal } from './helpers/mqtt-clients.js';
import { hasMosquitto, mosquittoBin } from './helpers/mosquitto.js';
import { startNode, type NodeProcess } from './helpers/node-process.js';
import { freePort, waitFor } from './helpers/ports.js';
import { serviceAvailable } from './helpers/skip.js';

const haveMosquitto = serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto');

const GAP = 200;
const BEFORE = { from: 0, to: 100 };
const DURING = { from: 1000, to: 1000 + GAP };
const BUFFERED = { from: 2000, to: 2000 + GAP };
const AFTER = { from: 3000, to: 3100 };

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

/** The distinct sequence numbers the file sink holds in [from, to). */
function stored(node: NodeProcess, range: { from: number; to: number }): number {
  const seqs = readFileSink(path.join(node.dataDir, 'out')).map((r) => seqOf(r.payload));
  return new Set(seqs.filter((s) => s >= range.from && s < range.to)).size;
}

/**
 * A QoS 0 publisher. `buffers`: MQTT.js's default, it reconnects and keeps what is published while disconnected
 * (queueQoSZero) to send it once connected again; otherwise it neither reconnects nor keeps anything (as a device
 * that publishes only while connected).
 */
async function publisher(url: string, buffers: boolean): Promise<MqttClient> {
  const opts: IClientOptions = buffers
    ? { protocolVersion: 4, reconnectPeriod: 200, queueQoSZero: true }
    : { protocolVersion: 4, reconnectPeriod: 0, queueQoSZero: false };
  const c = await mqtt.connectAsync(url, { clean: true, connectTimeout: 5_000, ...opts });
  c.on('error', () => undefined);
  cleanups.push(() => c.endAsync(true));
  return c;
}

/**
 * Publishes [from, to) at QoS 0; resolves with how many the client sent. A client that does not buffer refuses each
 * at once while disconnected ("No connection to broker"); a buffering one calls back once it has sent them.
 */
async function publishQos0(c: MqttClient, range: { from: number; to: number }): Promise<number> {
  const sent = await Promise.all(
    Array.from(
      { length: range.to - range.from },
      (_, k) => new Promise<boolean>((resolve) => c.publish(`qos0/${k % 16}`, sensorPayload(range.from + k), { qos: 0 }, (err) => resolve(!err))),
    ),
  );
  return sent.filter(Boolean).length;
}

async function nodeUp(env: Record<string, string>, opts: { dataDir?: string; mqttPort?: number } = {}): Promise<NodeProcess> {
  const node = await startNode({ RETRY_INITIAL_DELAY_MS: '200', RETRY_MAX_DELAY_MS: '1000', ...env }, opts);
  cleanups.push(() => node.kill());
  await node.waitReady();
  return node;
}

/** The first node: 100 messages before the kill, all stored. */
async function firstNode(env: Record<string, string>, url: (n: NodeProcess) => string): Promise<{ node: NodeProcess; pub: MqttClient }> {
  const node = await nodeUp(env);
  const pub = await publisher(url(node), false);
  expect(await publishQos0(pub, BEFORE)).toBe(100);
  await waitFor(() => stored(node, BEFORE) === 100, 20_000, 'the 100 messages before the kill stored');
  return { node, pub };
}

const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('QoS 0 while the node restarts: embedded broker', () => {
  it('nothing listens while the node is down: a publisher that does not buffer loses all 200, one that buffers delivers all 200 after the restart', async () => {
    const env = { MQTT_BROKER_MODE: 'embedded' };
    const { node, pub } = await firstNode(env, (n) => `mqtt://127.0.0.1:${n.mqttPort}`);
    const url = `mqtt://127.0.0.1:${node.mqttPort}`;
    const buffering = await publisher(url, true);
    await node.kill();
    expect(await refusal(url)).toMatch(/ECONNREFUSED/);
    await waitFor(() => !pub.connected && !buffering.connected, 5_000, 'both publishers disconnected');
    expect(await publishQos0(pub, DURING)).toBe(0); // "No connection to broker": dropped by the client
    const kept = publishQos0(buffering, BUFFERED); // held by MQTT.js until it reconnects

    const second = await nodeUp(env, { dataDir: node.dataDir, mqttPort: node.mqttPort });
    expect(await kept).toBe(GAP);
    await waitFor(() => stored(second, BUFFERED) === GAP, 20_000, 'the buffered 200 stored');
    const after = await publisher(url, false);
    expect(await publishQos0(after, AFTER)).toBe(100);
    await waitFor(() => stored(second, AFTER) === 100, 20_000, 'the 100 after the restart stored');
    expect(stored(second, DURING)).toBe(0);
  });
});

describe.runIf(haveMosquitto)('QoS 0 while the node restarts: supervised Mosquitto', () => {
  const env = () => ({ MQTT_BROKER_MODE: 'mosquitto', MOSQUITTO_BIN: mosquittoBin()!, MQTT_CLIENT_ID: `qos0-mosquitto-${process.pid}` });

  it("the node alone SIGKILLed: its Mosquitto stays up, queues all 200 for the node's session, and the next node stores them", async () => {
    const { node, pub } = await firstNode(env(), (n) => `mqtt://127.0.0.1:${n.mqttPort}`);
    const brokerPid = Number(fs.readFileSync(mosquittoPaths(node.dataDir).pidFile, 'utf8'));
    cleanups.push(async () => pidAlive(brokerPid) && process.kill(brokerPid, 'SIGKILL'));
    await node.killNodeOnly();
    expect(pidAlive(brokerPid)).toBe(true);
    await settle(500); // Mosquitto sees the subscriber's socket closed: the session is offline
    expect(pub.connected).toBe(true);
    expect(await publishQos0(pub, DURING)).toBe(GAP);
    await settle(500);

    // The next node stops the leftover Mosquitto (SIGTERM: it saves its database) and starts its own on it.
    const second = await nodeUp(env(), { dataDir: node.dataDir, mqttPort: node.mqttPort });
    expect(pidAlive(brokerPid)).toBe(false);
    await waitFor(() => stored(second, DURING) === GAP, 20_000, 'the 200 published while the node was down stored');
    expect(stored(second, BEFORE)).toBe(100);
  });

  it('the node and its Mosquitto killed together (a container kill): nothing listens, and all 200 are lost unless the publisher buffers them', async () => {
    const { node, pub } = await firstNode(env(), (n) => `mqtt://127.0.0.1:${n.mqttPort}`);
    const url = `mqtt://127.0.0.1:${node.mqttPort}`;
    const buffering = await publisher(url, true);
    // Past one autosave (5 s), so the node's session is in Mosquitto's database when the SIGKILL comes.
    await settle(6_000);
    await node.kill();
    expect(await refusal(url)).toMatch(/ECONNREFUSED/);
    await waitFor(() => !pub.connected && !buffering.connected, 5_000, 'both publishers disconnected');
    expect(await publishQos0(pub, DURING)).toBe(0);
    const kept = publishQos0(buffering, BUFFERED);

    const second = await nodeUp(env(), { dataDir: node.dataDir, mqttPort: node.mqttPort });
    expect(await kept).toBe(GAP);
    // The buffering publisher may reconnect before the node's subscriber does: its session keeps them meanwhile.
    await waitFor(() => stored(second, BUFFERED) === GAP, 20_000, 'the buffered 200 stored');
    const after = await publisher(url, false);
    expect(await publishQos0(after, AFTER)).toBe(100);
    await waitFor(() => stored(second, AFTER) === 100, 20_000, 'the 100 after the restart stored');
    expect(stored(second, DURING)).toBe(0);
  });
});

/** A Mosquitto 2.0 of the test's own, with the conf the node renders and the given queue settings. */
async function externalBroker(conf: { queueQos0Messages: boolean; maxQueuedMessages?: number }): Promise<{ url: string; stop(): Promise<void> }> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-qos0-broker-'));
  const port = await freePort();
  const confPath = path.join(dataDir, 'broker.conf');
  fs.writeFileSync(confPath, renderMosquittoConf({ host: '127.0.0.1', port, dataDir, user: os.userInfo().username, ...conf }));
  const proc = spawn(mosquittoBin()!, ['-c', confPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  const closed = new Promise<void>((resolve) => proc.once('close', () => resolve()));
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await closed;
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  cleanups.push(stop);
  const up = await pollUntil(async () => proc.exitCode !== null || (await canConnect('127.0.0.1', port, 500)), 15_000);
  if (!up || proc.exitCode !== null) throw new Error(`the test broker did not start:\n${stderr}`);
  return { url: `mqtt://127.0.0.1:${port}`, stop };
}

describe.runIf(haveMosquitto)('QoS 0 while the node restarts: external broker', () => {
  /** The node SIGKILLed while its session on the broker stays; GAP messages published; then the node is back. */
  async function restartAcross(conf: { queueQos0Messages: boolean; maxQueuedMessages?: number }): Promise<{ during: number; after: number }> {
    const broker = await externalBroker(conf);
    const env = { MQTT_BROKER: broker.url, MQTT_CLIENT_ID: `qos0-external-${process.pid}` };
    const { node, pub } = await firstNode(env, () => broker.url);
    await node.kill();
    await settle(500); // the broker sees the node's socket closed: its session is offline
    expect(pub.connected).toBe(true);
    expect(await publishQos0(pub, DURING)).toBe(GAP);
    await settle(500);
    const second = await nodeUp(env, { dataDir: node.dataDir });
    expect(await publishQos0(pub, AFTER)).toBe(100);
    await waitFor(() => stored(second, AFTER) === 100, 20_000, 'the 100 after the restart stored');
    // What the broker queued for the session came before the messages published after the node was back.
    return { during: stored(second, DURING), after: stored(second, AFTER) };
  }

  it('with queue_qos0_messages true, all 200 published while the node was down are stored once it is back', async () => {
    expect(await restartAcross({ queueQos0Messages: true })).toEqual({ during: GAP, after: 100 });
  });

  it('with queue_qos0_messages false (Mosquitto\'s default), all 200 are lost', async () => {
    expect(await restartAcross({ queueQos0Messages: false })).toEqual({ during: 0, after: 100 });
  });

  it('max_queued_messages does not bound queued QoS 0 messages in Mosquitto 2.0.11: with 10, all 200 are kept', async () => {
    expect(await restartAcross({ queueQos0Messages: true, maxQueuedMessages: 10 })).toEqual({ during: GAP, after: 100 });
  });
});
