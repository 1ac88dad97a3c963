/**
 * Raw-socket bad input against every listener of a running node (plaintext MQTT, MQTT over TLS, secure
 * WebSockets): garbage, a CONNECT with a bad protocol name, an over-limit packet, connections that never send
 * CONNECT, and 1,000 idle connections. The node must stay ready, keep ingesting from good clients, and count
 * each refusal in mqtt_ingest_broker_connections_refused_total{reason}. Shared by one test file per broker
 * mode, so the two modes' timeouts (30 s embedded, 90 s Mosquitto) run in parallel. The raw-socket pieces
 * serve the intake contract too (test/contract/intake-contract.ts).
 */
import net from 'node:net';
import tls from 'node:tls';
import fs from 'node:fs';
import path from 'node:path';
import mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, expect, it } from 'vitest';
import WebSocket, { createWebSocketStream } from 'ws';
import type { Duplex } from 'node:stream';
import { makePki, type TestPki } from './certs.js';
import { readFileSink } from './file-output.js';
import { publishRange, sensorPayload, seqOf } from './load.js';
import { connect, tlsFiles } from './mqtt-clients.js';
import { startNode, type NodeProcess } from './node-process.js';
import { freePort, waitFor } from './ports.js';

export type ListenerName = 'mqtt' | 'mqtts' | 'wss';
const LISTENERS: ListenerName[] = ['mqtt', 'mqtts', 'wss'];
const MAX_PACKET = 64 * 1024;

/** Bytes no MQTT broker takes: an HTTP request. */
export const GARBAGE = 'GET / HTTP/1.1\r\nHost: mqtt-ingest\r\n\r\n';

const connectPacket = (clientId: string) =>
  mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: true, keepalive: 30 });
export const badProtocolPacket = () => {
  // mqtt-packet only writes "MQTT" or "MQIsdp": write a good CONNECT and change the protocol name's bytes.
  const packet = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'bad-proto', clean: true, keepalive: 30 });
  packet.write('MQXX', packet.indexOf('MQTT'));
  return packet;
};
const oversizePublish = () => mqttPacket.generate({ cmd: 'publish', topic: 'big', payload: Buffer.alloc(MAX_PACKET + 1000), qos: 0, retain: false, dup: false });

export interface BadInputContext {
  node: NodeProcess;
  pki: TestPki;
  ports: Record<ListenerName, number>;
  sockets: Set<Duplex>;
}

/** Opens a raw byte stream to a listener: TCP, TLS (after the handshake) or a WebSocket with the "mqtt" subprotocol. */
export async function open(ctx: BadInputContext, listener: ListenerName): Promise<Duplex> {
  const port = ctx.ports[listener];
  const ca = fs.readFileSync(ctx.pki.caCert);
  const stream = await new Promise<Duplex>((resolve, reject) => {
    if (listener === 'mqtt') {
      openTcp(port).then(resolve, reject);
    } else if (listener === 'mqtts') {
      const s = tls.connect({ host: '127.0.0.1', port, ca }, () => resolve(s));
      s.once('error', reject);
    } else {
      const ws = new WebSocket(`wss://127.0.0.1:${port}/mqtt`, ['mqtt'], { ca });
      ws.once('open', () => resolve(createWebSocketStream(ws)));
      ws.once('error', reject);
    }
  });
  stream.on('error', () => undefined); // a refused connection may end with a reset
  ctx.sockets.add(stream);
  stream.once('close', () => ctx.sockets.delete(stream));
  return stream;
}

/** A plain TCP connection to 127.0.0.1:port; a refused connection may end with a reset, which is ignored. */
export function openTcp(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.off('error', reject);
      s.on('error', () => undefined);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/**
 * Resolves when the broker ends the stream (true) or after timeoutMs (false). A WebSocket stream only ends
 * its readable side when the server closes, so the end of either kind counts.
 */
export function closedByBroker(stream: Duplex, timeoutMs: number): Promise<boolean> {
  if (stream.destroyed || stream.readableEnded) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      resolve(true);
    };
    const timer = setTimeout(() => {
      stream.removeListener('close', done).removeListener('end', done);
      resolve(false);
    }, Math.max(0, timeoutMs));
    stream.once('close', done).once('end', done);
    stream.resume(); // read and drop whatever the broker answers, so that its end arrives
  });
}

async function refusals(node: NodeProcess, reason: string): Promise<number> {
  return node.metric('mqtt_ingest_broker_connections_refused_total', { reason });
}

/**
 * The suite for one mode. `connectTimeoutMs` is how long the broker waits for a CONNECT: Aedes's 30 s, or
 * Mosquitto 2.0.11's fixed 1.5 × 60 s.
 */
export function badInputSuite(mode: 'embedded' | 'mosquitto', connectTimeoutMs: number): void {
  const ctx = { sockets: new Set<Duplex>() } as BadInputContext;
  const idle: Duplex[] = [];
  const kinds: string[] = [];
  let idleOpenedAt = 0;

  beforeAll(async () => {
    ctx.pki = makePki();
    const ports = { mqtt: 0, mqtts: await freePort(), wss: await freePort() };
    ctx.node = await startNode({
      MQTT_BROKER_MODE: mode,
      MQTT_TLS_PORT: String(ports.mqtts),
      MQTT_TLS_CERT: ctx.pki.serverCert,
      MQTT_TLS_KEY: ctx.pki.serverKey,
      MQTT_WS_PORT: String(ports.wss),
      MQTT_MAX_PACKET_BYTES: String(MAX_PACKET),
      LOG_LEVEL: 'warn', // 1,000 refused connections would otherwise log 1,000 lines
    });
    ports.mqtt = ctx.node.mqttPort;
    ctx.ports = ports;
    await ctx.node.waitReady();
    // Opened first: their CONNECT timeout runs while the other checks do.
    idleOpenedAt = Date.now();
    for (const listener of LISTENERS) {
      idle.push(await open(ctx, listener));
      kinds.push(listener);
    }
    // In groups of 50: Mosquitto listens with a backlog of 100, and while it is busy a larger burst overflows
    // the kernel's accept queue; those connections stay half-open on the client only, where no broker can close them.
    const counts = { mqtt: 800, mqtts: 100, wss: 100 };
    for (const listener of LISTENERS) {
      for (let n = 0; n < counts[listener]; n += 50) {
        const opened = await Promise.all(Array.from({ length: 50 }, () => open(ctx, listener)));
        idle.push(...opened);
        kinds.push(...opened.map(() => listener));
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }, 120_000);

  afterAll(async () => {
    for (const s of ctx.sockets) s.destroy();
    await ctx.node?.stop(); // SIGTERM: a SIGKILLed node cannot stop its Mosquitto child
    ctx.pki?.cleanup();
  });

  it('holds 1,003 connections that sent no CONNECT and stays ready, ingesting from good clients', async () => {
    expect(idle).toHaveLength(1003);
    expect(idle.filter((s) => s.destroyed)).toEqual([]);
    expect((await ctx.node.readiness()).status).toBe(200);
    await publishRange(`mqtt://127.0.0.1:${ctx.ports.mqtt}`, 0, 500);
    await waitFor(() => readFileSink(path.join(ctx.node.dataDir, 'out')).length >= 500, 20_000, '500 messages in the file sink');
  });

  for (const listener of LISTENERS) {
    it(`${listener}: closes a connection that sends garbage, and counts it`, async () => {
      const before = await refusals(ctx.node, 'malformed');
      const s = await open(ctx, listener);
      s.write(GARBAGE);
      expect(await closedByBroker(s, 10_000)).toBe(true);
      await waitFor(async () => (await refusals(ctx.node, 'malformed')) === before + 1, 10_000, 'malformed counted once');
    });

    it(`${listener}: refuses a CONNECT with a bad protocol name, and counts it`, async () => {
      const before = await refusals(ctx.node, 'bad_protocol');
      const s = await open(ctx, listener);
      s.write(badProtocolPacket());
      expect(await closedByBroker(s, 10_000)).toBe(true);
      await waitFor(async () => (await refusals(ctx.node, 'bad_protocol')) === before + 1, 10_000, 'bad_protocol counted once');
    });

    it(`${listener}: disconnects a client sending a packet over MQTT_MAX_PACKET_BYTES, and counts it`, async () => {
      const before = await refusals(ctx.node, 'packet_too_large');
      const s = await open(ctx, listener);
      s.write(connectPacket(`big-${listener}`));
      s.write(oversizePublish());
      expect(await closedByBroker(s, 10_000)).toBe(true);
      await waitFor(async () => (await refusals(ctx.node, 'packet_too_large')) === before + 1, 10_000, 'packet_too_large counted once');
    });
  }

  it('keeps ingesting over TLS and stays ready after the bad input', async () => {
    const first = readFileSink(path.join(ctx.node.dataDir, 'out')).length;
    expect(first).toBeGreaterThanOrEqual(500);
    const client = await connect(`mqtts://127.0.0.1:${ctx.ports.mqtts}`, tlsFiles({ ca: ctx.pki.caCert }));
    await Promise.all(Array.from({ length: 200 }, (_, i) => client.publishAsync(`plant/tls/${i}`, sensorPayload(500 + i), { qos: 1 })));
    await client.endAsync();
    const seqs = await waitFor(() => {
      const s = new Set(readFileSink(path.join(ctx.node.dataDir, 'out')).map((r) => seqOf(r.payload)));
      return s.size >= 700 ? s : undefined;
    }, 20_000, '700 messages in the file sink');
    expect(seqs.size).toBe(700);
    expect((await ctx.node.readiness()).status).toBe(200);
  });

  it('closes every connection that sent no CONNECT once the broker gives up on it, and counts each', async () => {
    const remaining = connectTimeoutMs - (Date.now() - idleOpenedAt);
    const closed = await Promise.all(idle.map((s) => closedByBroker(s, remaining + 60_000)));
    const stillOpen: Record<string, number> = {};
    closed.forEach((c, i) => {
      if (!c) stillOpen[kinds[i]!] = (stillOpen[kinds[i]!] ?? 0) + 1;
    });
    const timeouts = await refusals(ctx.node, 'connect_timeout');
    expect(stillOpen, `still open ${Date.now() - idleOpenedAt} ms after opening; ${timeouts} timeouts counted`).toEqual({});
    await waitFor(async () => (await refusals(ctx.node, 'connect_timeout')) >= 1003, 15_000, '1,003 connect timeouts counted');
    expect((await ctx.node.readiness()).status).toBe(200);
    expect(ctx.node.proc.exitCode).toBeNull();
  }, 300_000);
}
