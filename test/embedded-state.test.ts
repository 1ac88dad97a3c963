/**
 * The embedded broker's state in DATA_DIR/broker/state.db survives the node's SIGKILL: retained messages,
 * persistent sessions with their subscriptions and queued QoS 1 messages (MQTT 3.1.1 and 5), and the will of a
 * client connected at the crash. Also the per-session queue limit, and session expiry across a restart. Real node
 * processes (compiled), real MQTT.js clients, the file sink.
 */
import Database from 'better-sqlite3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { readFileSink } from './helpers/file-output.js';
import { startNode, type NodeProcess } from './helpers/node-process.js';
import { waitFor } from './helpers/ports.js';

const clients: MqttClient[] = [];
const nodes: NodeProcess[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
});
afterAll(async () => {
  await Promise.all(nodes.map((n) => n.kill().catch(() => undefined)));
});

interface Connected {
  client: MqttClient;
  connack: IConnackPacket;
  messages: Array<{ topic: string; payload: string; retain: boolean }>;
}

async function connect(port: number, opts: IClientOptions): Promise<Connected> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, connectTimeout: 5_000, ...opts });
  clients.push(client);
  const messages: Connected['messages'] = [];
  // Registered before the CONNACK: a resumed session's queued messages follow it at once.
  client.on('message', (topic, payload, packet) => messages.push({ topic, payload: payload.toString(), retain: packet.retain }));
  const connack = await new Promise<IConnackPacket>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  return { client, connack, messages };
}

async function start(dataDir: string, env: Record<string, string> = {}): Promise<NodeProcess> {
  const node = await startNode({ MQTT_BROKER_MODE: 'embedded', FILE_SINK: 'on', ...env }, { dataDir });
  nodes.push(node);
  await node.waitReady();
  return node;
}

describe('embedded broker state across a SIGKILL', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'embedded-state-'));
  afterAll(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  it('keeps retained messages, persistent sessions with their queued QoS 1 messages (3.1.1 and 5), and fires a will of a client connected at the crash', async () => {
    let node = await start(dataDir, { MQTT_MAX_QUEUED_MESSAGES: '5' });
    // Two persistent subscribers subscribe, then go away.
    const s311 = await connect(node.mqttPort, { clientId: 'scada-311', clean: false, protocolVersion: 4 });
    await s311.client.subscribeAsync('plant/#', { qos: 1 });
    const s5 = await connect(node.mqttPort, { clientId: 'scada-5', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } });
    await s5.client.subscribeAsync('plant/#', { qos: 1 });
    await Promise.all([s311.client.endAsync(), s5.client.endAsync()]);
    // A client with a will stays connected through the crash.
    const willing = await connect(node.mqttPort, {
      clientId: 'edge-7',
      protocolVersion: 4,
      will: { topic: 'plant/edge-7/status', payload: Buffer.from('offline'), qos: 1, retain: false },
    });
    const pub = await connect(node.mqttPort, { clientId: 'pub', protocolVersion: 5 });
    await pub.client.publishAsync('plant/line-1/temp', '21.5', { qos: 1, retain: true });
    for (let i = 0; i < 7; i++) await pub.client.publishAsync('plant/line-1/count', String(i), { qos: 1 });
    // Five queued per session (MQTT_MAX_QUEUED_MESSAGES), the rest counted; the retained one came first. (Aedes
    // queues a message for the sessions after its PUBACK.)
    await waitFor(async () => (await node.metric('mqtt_ingest_broker_queued_dropped_total')) === 6, 5_000, '6 messages not queued');
    expect(await node.metric('mqtt_ingest_broker_sessions')).toBe(2);
    expect(await node.metric('mqtt_ingest_broker_queued_messages')).toBe(10);
    await node.kill();
    willing.client.stream.destroy();

    node = await start(dataDir, { MQTT_MAX_QUEUED_MESSAGES: '5' });
    // The will of the client that was connected at the crash: stored in the spool like any message.
    await waitFor(() => readFileSink(path.join(dataDir, 'out')).some((r) => r.topic === 'plant/edge-7/status'), 10_000, 'the will in the file sink');
    const late = await connect(node.mqttPort, { clientId: 'late', protocolVersion: 5 });
    await late.client.subscribeAsync('plant/line-1/temp', { qos: 1 });
    await waitFor(() => late.messages.length > 0, 5_000, 'the retained message');
    expect(late.messages).toEqual([{ topic: 'plant/line-1/temp', payload: '21.5', retain: true }]);

    const back311 = await connect(node.mqttPort, { clientId: 'scada-311', clean: false, protocolVersion: 4 });
    const back5 = await connect(node.mqttPort, { clientId: 'scada-5', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } });
    expect([back311.connack.sessionPresent, back5.connack.sessionPresent]).toEqual([true, true]);
    const expected = ['21.5', '0', '1', '2', '3'];
    await waitFor(() => back311.messages.length >= 5 && back5.messages.length >= 5, 5_000, 'the queued messages');
    expect(back311.messages.map((m) => m.payload)).toEqual(expected);
    expect(back5.messages.map((m) => m.payload)).toEqual(expected);
    // The subscriptions came back too: a new message reaches both, the will (published after the restart) as well.
    await pub.client.endAsync(true).catch(() => undefined);
    const pub2 = await connect(node.mqttPort, { clientId: 'pub2', protocolVersion: 4 });
    await pub2.client.publishAsync('plant/line-1/count', 'after', { qos: 1 });
    await waitFor(() => back311.messages.some((m) => m.payload === 'after') && back5.messages.some((m) => m.payload === 'after'), 5_000, 'a new message');
    expect(await node.metric('mqtt_ingest_broker_queued_messages')).toBe(0);
    await node.stop();
  });

  it('ends an MQTT 5 session whose Session Expiry Interval passed while the node was down; one connected at the crash is kept', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'embedded-expiry-'));
    try {
      let node = await start(dir);
      const short = await connect(node.mqttPort, { clientId: 'short', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 2 } });
      await short.client.subscribeAsync('plant/#', { qos: 1 });
      const long = await connect(node.mqttPort, { clientId: 'long', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } });
      await long.client.subscribeAsync('plant/#', { qos: 1 });
      await Promise.all([short.client.endAsync(), long.client.endAsync()]);
      // The broker has seen both disconnects (their sessions' expiry starts there).
      await waitFor(async () => (await node.metric('mqtt_ingest_broker_clients_connected')) === 0, 5_000, 'both disconnected');
      // Connected at the crash: its disconnect is never seen, so its session lasts MQTT_MAX_SESSION_EXPIRY_SECONDS from the next start.
      const crashed = await connect(node.mqttPort, { clientId: 'crashed', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 2 } });
      await crashed.client.subscribeAsync('plant/#', { qos: 1 });
      await node.kill();
      crashed.client.stream.destroy();
      await new Promise((r) => setTimeout(r, 2_500));
      node = await start(dir);
      const db = new Database(path.join(dir, 'broker', 'state.db'), { readonly: true });
      const expiresAt = db.prepare("SELECT expires_at FROM session_expiry WHERE client_id = 'crashed'").pluck().get() as number;
      db.close();
      expect(expiresAt - Date.now()).toBeGreaterThan(1_209_600_000 - 60_000);
      const shortBack = await connect(node.mqttPort, { clientId: 'short', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 2 } });
      const longBack = await connect(node.mqttPort, { clientId: 'long', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } });
      const crashedBack = await connect(node.mqttPort, { clientId: 'crashed', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 2 } });
      expect([shortBack.connack.sessionPresent, longBack.connack.sessionPresent, crashedBack.connack.sessionPresent]).toEqual([false, true, true]);
      await node.stop();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('sets a damaged state file aside and starts with an empty one, saying so: the spool and intake do not depend on it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'embedded-bad-state-'));
    try {
      fs.mkdirSync(path.join(dir, 'broker'));
      const file = path.join(dir, 'broker', 'state.db');
      fs.writeFileSync(file, 'not a database, just text '.repeat(200));
      const node = await start(dir);
      // Readiness can answer before the log line has come through the pipe: wait for it.
      const line = await waitFor(() => node.logObjects().find((l) => l.code === 'BROKER_STATE_DAMAGED'), 10_000, 'BROKER_STATE_DAMAGED in the log');
      expect(line).toMatchObject({ file });
      expect(String(line?.setAside)).toMatch(/state\.db\.damaged-/);
      expect(fs.readFileSync(String(line?.setAside), 'utf8')).toContain('not a database');
      const pub = await connect(node.mqttPort, { clientId: 'pub', protocolVersion: 4 });
      await pub.client.publishAsync('plant/x', 'y', { qos: 1, retain: true });
      expect(await node.metric('mqtt_ingest_broker_sessions')).toBe(0);
      await node.stop();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
