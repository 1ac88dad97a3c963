/**
 * MQTT 5 publishers on the embedded broker (Aedes 2), with real clients: MQTT.js 5 with protocolVersion 5,
 * mosquitto_pub -V mqttv5, and raw CONNECT packets where a client library would fill in what is tested (an
 * empty client id). The node runs as a child process with the file sink; the full spool is made in-process.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import mqtt, { type IConnackPacket, type MqttClient } from 'mqtt';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/core/logger.js';
import { Metrics } from '../src/core/metrics.js';
import { EmbeddedBroker } from '../src/intake/embedded/embedded-broker.js';
import { openPlaintext } from '../src/intake/security/policy.js';
import { SpoolWriter } from '../src/spool/group-commit.js';
import { Spool } from '../src/spool/spool.js';
import { readFileSink } from './helpers/file-output.js';
import { hasMosquitto } from './helpers/mosquitto.js';
import { startNode, type NodeProcess } from './helpers/node-process.js';
import { waitFor } from './helpers/ports.js';

const MAX_PACKET = 65_536;
/** Anonymous clients may write plant/#, nothing else. */
const ACL = 'topic write plant/#\ntopic read #\n';

interface SinkLine {
  topic: string;
  payload: string;
  qos: number;
  user_properties: Record<string, string | string[]> | null;
  content_type: string | null;
}

const clients: MqttClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
});

async function v5(url: string, opts: mqtt.IClientOptions = {}, messages?: string[]): Promise<{ client: MqttClient; connack: IConnackPacket }> {
  const client = mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5_000, ...opts });
  clients.push(client);
  // Before the CONNACK: a resumed session's queued messages follow it at once.
  if (messages) client.on('message', (_topic, payload) => messages.push(payload.toString()));
  const connack = await new Promise<IConnackPacket>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  return { client, connack };
}

/**
 * An MQTT 3.1.1 CONNECT with an empty client id, written byte by byte: mqtt-packet refuses to generate one with
 * clean session 0 (as MQTT.js fills in an id of its own).
 */
function emptyIdConnect311(clean: boolean): Buffer {
  return Buffer.from([0x10, 12, 0, 4, ...Buffer.from('MQTT'), 4, clean ? 0x02 : 0x00, 0, 30, 0, 0]);
}

/** Sends one CONNECT on a raw socket and returns the broker's answer, decoded with the same protocol. */
async function rawConnack(port: number, connect: Record<string, unknown> | Buffer, protocolVersion: 4 | 5): Promise<Packet> {
  const bytes = Buffer.isBuffer(connect)
    ? connect
    : mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion, keepalive: 30, ...connect } as Packet, { protocolVersion });
  const socket = net.connect(port, '127.0.0.1');
  try {
    const parser = mqttPacket.parser({ protocolVersion });
    const answer = new Promise<Packet>((resolve, reject) => {
      parser.on('packet', resolve);
      parser.on('error', reject);
      socket.on('data', (d) => parser.parse(d));
      socket.on('close', () => reject(new Error('closed without an answer')));
      setTimeout(() => reject(new Error('no answer within 5 s')), 5_000).unref();
    });
    socket.write(bytes);
    return await answer;
  } finally {
    socket.destroy();
  }
}

function mosquittoPub(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('mosquitto_pub', args, { timeout: 10_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
  });
}

describe('embedded broker, MQTT 5 publishers (node process)', () => {
  let node: NodeProcess;
  let url: string;
  const lines = (): SinkLine[] => readFileSink(path.join(node.dataDir, 'out')) as unknown as SinkLine[];
  const lineOf = (topic: string) => waitFor(() => lines().find((l) => l.topic === topic), 15_000, `the file line of ${topic}`);

  beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'embedded-mqtt5-'));
    const aclFile = path.join(dir, 'acl');
    fs.writeFileSync(aclFile, ACL);
    node = await startNode({ MQTT_BROKER_MODE: 'embedded', MQTT_ACL_FILE: aclFile, MQTT_MAX_PACKET_BYTES: String(MAX_PACKET), FILE_SINK: 'on' });
    await node.waitReady();
    url = `mqtt://127.0.0.1:${node.mqttPort}`;
  });
  afterAll(async () => {
    await node?.kill();
  });

  it('accepts an MQTT 5 CONNECT; the CONNACK advertises MQTT_MAX_PACKET_BYTES and no Receive Maximum', async () => {
    const { connack } = await v5(url, { clientId: 'v5-connect' });
    expect(connack.reasonCode).toBe(0);
    expect(connack.properties?.maximumPacketSize).toBe(MAX_PACKET);
    // The node does not bound a publisher's in-flight messages (the group commit takes them all): 65,535 applies.
    expect(connack.properties?.receiveMaximum).toBeUndefined();
    expect(connack.properties?.assignedClientIdentifier).toBeUndefined();
  });

  it('keeps user properties and the content type in the spool: the file sink writes them (MQTT.js and mosquitto_pub)', async () => {
    const { client } = await v5(url, { clientId: 'v5-props' });
    await client.publishAsync('plant/v5/a', '{"t":21.5}', {
      qos: 1,
      properties: { userProperties: { site: 'Zürich', tag: ['a', 'b'] }, contentType: 'application/json' },
    });
    await client.publishAsync('plant/v5/b', 'plain', { qos: 0, properties: { contentType: 'text/plain' } });
    await client.publishAsync('plant/v5/c', 'none', { qos: 1 });
    expect(await lineOf('plant/v5/a')).toMatchObject({ payload: '{"t":21.5}', qos: 1, user_properties: { site: 'Zürich', tag: ['a', 'b'] }, content_type: 'application/json' });
    expect(await lineOf('plant/v5/b')).toMatchObject({ qos: 0, user_properties: null, content_type: 'text/plain' });
    expect(await lineOf('plant/v5/c')).toMatchObject({ user_properties: null, content_type: null });

    if (!hasMosquitto()) return;
    const args = ['-V', 'mqttv5', '-h', '127.0.0.1', '-p', String(node.mqttPort), '-q', '1', '-t', 'plant/v5/mosquitto', '-m', 'from mosquitto_pub'];
    const r = await mosquittoPub([...args, '-D', 'publish', 'user-property', 'line', '7', '-D', 'publish', 'content-type', 'text/plain']);
    expect(r).toEqual({ code: 0, out: '' });
    expect(await lineOf('plant/v5/mosquitto')).toMatchObject({ payload: 'from mosquitto_pub', user_properties: { line: '7' }, content_type: 'text/plain' });
  });

  it('answers a publish the ACL denies with PUBACK 0x87, keeps the connection, and neither stores nor delivers it', async () => {
    const { client: sub } = await v5(url, { clientId: 'v5-acl-sub' });
    const delivered: string[] = [];
    sub.on('message', (topic) => delivered.push(topic));
    await sub.subscribeAsync('#', { qos: 1 });
    const { client } = await v5(url, { clientId: 'v5-acl' });
    const acks: Array<{ reasonCode?: number; reasonString?: string }> = [];
    client.on('packetreceive', (p) => {
      if (p.cmd === 'puback') acks.push({ reasonCode: p.reasonCode, reasonString: p.properties?.reasonString });
    });
    const denied = await client.publishAsync('secret/v5', 'no', { qos: 1 }).then(
      () => undefined,
      (err: Error & { code?: number }) => err,
    );
    expect(denied?.code).toBe(0x87);
    expect(acks).toEqual([{ reasonCode: 0x87, reasonString: 'not authorized' }]);
    // Still connected: the next publish, allowed, is taken.
    await client.publishAsync('plant/v5/after-denied', 'yes', { qos: 1 });
    expect(client.connected).toBe(true);
    await lineOf('plant/v5/after-denied');
    await waitFor(() => delivered.includes('plant/v5/after-denied'), 10_000, 'the allowed message delivered');
    expect(delivered).not.toContain('secret/v5');
    expect(lines().map((l) => l.topic)).not.toContain('secret/v5');
    expect(await node.metric('mqtt_ingest_messages_rejected_total', { reason: 'not_authorized' })).toBeGreaterThanOrEqual(1);

    if (!hasMosquitto()) return;
    const r = await mosquittoPub(['-V', 'mqttv5', '-h', '127.0.0.1', '-p', String(node.mqttPort), '-q', '1', '-t', 'secret/mosquitto', '-m', 'no']);
    expect(r.out).toMatch(/not authori[sz]ed/i);
  });

  it('keeps an MQTT 5 session for its Session Expiry Interval, with the messages queued meanwhile, then ends it', async () => {
    const session = { clientId: 'v5-session', clean: false, properties: { sessionExpiryInterval: 2 } };
    const first = await v5(url, session);
    expect(first.connack.sessionPresent).toBe(false);
    await first.client.subscribeAsync('plant/v5/session', { qos: 1 });
    await first.client.endAsync();
    const { client: pub } = await v5(url, { clientId: 'v5-session-pub' });
    await pub.publishAsync('plant/v5/session', 'queued', { qos: 1 });

    const received: string[] = [];
    const again = await v5(url, session, received);
    expect(again.connack.sessionPresent).toBe(true);
    await waitFor(() => received.length > 0, 10_000, 'the queued message');
    expect(received).toEqual(['queued']);
    await again.client.endAsync();

    await new Promise((r) => setTimeout(r, 3_000));
    const late = await v5(url, session);
    expect(late.connack.sessionPresent).toBe(false);
  }, 20_000);

  it('assigns a client identifier to an MQTT 5 client with an empty one', async () => {
    const connack = await rawConnack(node.mqttPort, { clientId: '', clean: true }, 5);
    expect(connack).toMatchObject({ cmd: 'connack', reasonCode: 0 });
    expect((connack as IConnackPacket).properties?.assignedClientIdentifier).toMatch(/^aedes_[0-9a-f-]{36}$/);
  });

  it('MQTT 3.1.1, empty client id: refused with 0x02 with clean session 0, accepted with clean session 1', async () => {
    expect(await rawConnack(node.mqttPort, emptyIdConnect311(false), 4)).toMatchObject({ cmd: 'connack', returnCode: 2 });
    expect(await rawConnack(node.mqttPort, emptyIdConnect311(true), 4)).toMatchObject({ cmd: 'connack', returnCode: 0, sessionPresent: false });
  });
});

/** A clean MQTT 3.1.1 session that publishes QoS 2 (id 1) and goes away before its PUBREL. */
async function abandonedQos2(port: number, payload: string): Promise<void> {
  const s = net.connect(port, '127.0.0.1');
  const pubrec = new Promise<void>((resolve) => s.on('data', (d) => d.includes(0x50) && resolve()));
  s.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'q2-abandoned', keepalive: 30 }));
  s.write(mqttPacket.generate({ cmd: 'publish', topic: 'plant/q2', payload, qos: 2, messageId: 1, retain: false, dup: false }));
  await pubrec;
  s.destroy();
  await new Promise((r) => setTimeout(r, 200));
}

describe('embedded broker, QoS 2 state of a clean session', () => {
  let node: NodeProcess;
  beforeAll(async () => {
    node = await startNode({ MQTT_BROKER_MODE: 'embedded', FILE_SINK: 'on' });
    await node.waitReady();
  });
  afterAll(async () => {
    await node?.kill();
  });

  // Aedes 2.0.0-beta.1 keeps the incoming QoS 2 entry of a clean session that ended before PUBREL (1.2.0 deletes it,
  // client.js cleanIncoming): the next clean session's message with the same packet id would be taken for a resend
  // and not forwarded. The node deletes it at the disconnect (broker-state.ts); the spool has both either way.
  it('forwards the next clean session\'s QoS 2 message that reuses the packet id', async () => {
    const received: string[] = [];
    const { client: sub } = await v5(`mqtt://127.0.0.1:${node.mqttPort}`, { clientId: 'q2-sub' }, received);
    await sub.subscribeAsync('plant/q2', { qos: 2 });
    await abandonedQos2(node.mqttPort, 'first');
    await abandonedQos2(node.mqttPort, 'second');
    const out = path.join(node.dataDir, 'out');
    await waitFor(() => readFileSink(out).filter((l) => l.topic === 'plant/q2').length === 2, 10_000, 'both messages in the spool');
    await waitFor(() => received.length === 2, 3_000, 'both forwarded').catch(() => undefined);
    expect(received).toEqual(['first', 'second']);
  });
});

describe('embedded broker, MQTT 5 publisher while the spool is full', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'embedded-mqtt5-full-'));
  const spool = Spool.open({ dir, sinks: ['file'], maxBytes: 4096, minFreeDiskBytes: 0 });
  const metrics = new Metrics({ defaultMetrics: false });
  const logger = createLogger('warn', new Writable({ write: (_c, _e, done) => done() }));
  const writer = new SpoolWriter(spool, { fullRetryMs: 50, metrics, logger });
  const broker = new EmbeddedBroker({
    host: '127.0.0.1',
    port: 0,
    security: openPlaintext('127.0.0.1', 0),
    writer,
    logger,
    metrics,
    onCommitted: () => undefined,
  });
  afterAll(async () => {
    await broker.stop();
    writer.close();
    spool.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('answers 0x97 (quota exceeded) with its reason while the spool is full, keeps the connection; a 3.1.1 message waits and is acknowledged once there is room', async () => {
    await broker.start();
    spool.append([{ topic: 'filler', payload: Buffer.alloc(8192), qos: 1, retain: false, receivedAt: Date.now() }]);
    expect(spool.isFull()).toBe(true);
    const { client } = await v5(`mqtt://127.0.0.1:${broker.port}`, { clientId: 'v5-full' });
    const acks: Array<{ code: number; reason: string | undefined }> = [];
    client.on('packetreceive', (p) => {
      if (p.cmd === 'puback') acks.push({ code: p.reasonCode ?? 0, reason: p.properties?.reasonString });
    });
    const refused = await client.publishAsync('plant/full', 'refused', { qos: 1 }).then(
      () => 'acknowledged',
      (err: Error & { code?: number }) => `refused ${err.code}`,
    );
    expect(refused).toBe('refused 151');
    expect(acks).toEqual([{ code: 0x97, reason: 'the node cannot store messages now (spool full): publish again later' }]);
    expect(client.connected).toBe(true);
    expect(await rejectedCount(metrics, 'quota_exceeded')).toBe(1);
    // MQTT 3.1.1 has no reason code: its message waits, unacknowledged, as before.
    const v311 = mqtt.connect(`mqtt://127.0.0.1:${broker.port}`, { protocolVersion: 4, clientId: 'v311-full', reconnectPeriod: 0 });
    clients.push(v311);
    await new Promise((resolve) => v311.once('connect', resolve));
    let v311Acked = false;
    const v311Waiting = v311.publishAsync('plant/full-311', 'waits', { qos: 1 }).then(() => (v311Acked = true));
    await new Promise((r) => setTimeout(r, 500));
    expect(v311Acked).toBe(false);
    spool.ack('file', spool.lease('file', 10));
    await v311Waiting;
    // Room again: the MQTT 5 publisher's next message is stored and acknowledged.
    await client.publishAsync('plant/full', 'stored', { qos: 1, properties: { contentType: 'text/plain' } });
    expect(acks.map((a) => a.code)).toEqual([0x97, 0]);
    const stored = spool.lease('file', 10).map((m) => [m.topic, m.payload.toString(), m.properties]);
    expect(stored).toEqual([
      ['plant/full-311', 'waits', undefined],
      ['plant/full', 'stored', { contentType: 'text/plain' }],
    ]);
  });

  it('answers 0x97 to a publish sent as soon as the CONNACK arrives, while Aedes still sends the session its queue', async () => {
    // Aedes handles packets from the CONNACK on, but calls the client connected only once the session's queue
    // is sent (lib/handlers/connect.js: doConnack, then emptyQueue): a publish in between once went unanswered.
    spool.ack('file', spool.lease('file', 1000));
    const url = `mqtt://127.0.0.1:${broker.port}`;
    const session = { clientId: 'v5-queued', clean: false, properties: { sessionExpiryInterval: 300 } };
    const { client: sub } = await v5(url, session);
    await sub.subscribeAsync('plant/queued/#', { qos: 1 });
    await sub.endAsync();
    const { client: pub } = await v5(url, { clientId: 'v5-queue-filler' });
    for (let i = 0; i < 100; i += 10) {
      await Promise.all(Array.from({ length: 10 }, (_, k) => pub.publishAsync(`plant/queued/${i + k}`, 'q', { qos: 1 })));
      spool.ack('file', spool.lease('file', 1000));
    }
    spool.append([{ topic: 'filler', payload: Buffer.alloc(8192), qos: 1, retain: false, receivedAt: Date.now() }]);
    expect(spool.isFull()).toBe(true);
    const opts = { protocolVersion: 5 } as const;
    const socket = net.connect(broker.port, '127.0.0.1');
    try {
      const parser = mqttPacket.parser(opts);
      const packets: Packet[] = [];
      parser.on('packet', (p) => {
        packets.push(p);
        if (p.cmd === 'connack') {
          socket.write(mqttPacket.generate({ cmd: 'publish', topic: 'plant/early', payload: Buffer.from('early'), qos: 1, messageId: 7, retain: false, dup: false } as Packet, opts));
        }
      });
      socket.on('data', (d) => parser.parse(d));
      socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, keepalive: 30, clientId: 'v5-queued', clean: false, properties: { sessionExpiryInterval: 300 } } as Packet, opts));
      await waitFor(() => packets.some((p) => p.cmd === 'puback'), 5_000, 'the PUBACK of the publish sent on the CONNACK');
      const puback = packets.find((p) => p.cmd === 'puback') as { messageId: number; reasonCode: number };
      expect([puback.messageId, puback.reasonCode]).toEqual([7, 0x97]);
      // It came while the queue was still being sent: the case this covers.
      expect(packets.filter((p) => p.cmd === 'publish').length).toBeGreaterThan(0);
      expect(socket.destroyed).toBe(false);
    } finally {
      socket.destroy();
    }
  });
});

describe('embedded broker, MQTT 5 publisher whose message cannot be committed', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'embedded-mqtt5-closed-'));
  const spool = Spool.open({ dir, sinks: ['file'], maxBytes: 1 << 20, minFreeDiskBytes: 0 });
  const metrics = new Metrics({ defaultMetrics: false });
  const logger = createLogger('warn', new Writable({ write: (_c, _e, done) => done() }));
  const writer = new SpoolWriter(spool, { metrics, logger });
  const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, security: openPlaintext('127.0.0.1', 0), writer, logger, metrics, onCommitted: () => undefined });
  afterAll(async () => {
    await broker.stop();
    spool.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('closes the connection without a PUBACK (not the 0x87 Aedes would answer), so the publisher resends it', async () => {
    await broker.start();
    writer.close(); // every submission now fails: SpoolClosedError, as at shutdown
    const { client } = await v5(`mqtt://127.0.0.1:${broker.port}`, { clientId: 'v5-not-committed' });
    const acks: number[] = [];
    client.on('packetreceive', (p) => {
      if (p.cmd === 'puback') acks.push(p.reasonCode ?? 0);
    });
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    void client.publishAsync('plant/not-committed', 'resend me', { qos: 1 }).catch(() => undefined);
    await Promise.race([closed, new Promise((_r, reject) => setTimeout(() => reject(new Error(`still connected after 10 s; PUBACKs: ${acks.join(',')}`)), 10_000))]);
    expect(acks).toEqual([]);
    expect(await rejectedCount(metrics, 'commit_failed')).toBe(1);
  });
});

async function rejectedCount(metrics: Metrics, reason: string): Promise<number> {
  return (await metrics.rejectedInbound.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
}
