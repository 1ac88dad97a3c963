/**
 * The embedded broker's SQLite persistence (src/intake/embedded/broker-store/): aedes-persistence's abstract suite,
 * unchanged; the state found again by a new instance after a close and after a SIGKILL of the process that wrote it;
 * and the queue limit with a real Aedes and MQTT.js clients, across a restart of the broker.
 */
import assert from 'node:assert';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { BrokerStore } from '../src/intake/embedded/broker-store/broker-store.js';
import { ROOT } from './helpers/node-process.js';
import { waitFor } from './helpers/ports.js';

const require = createRequire(import.meta.url);
const ABSTRACT_FILE = require.resolve('aedes-persistence/abstract.js');
const abstractPersistence = require(ABSTRACT_FILE) as (opts: object) => void;
/** The tests abstract.js defines (aedes-persistence 10.3.1). */
const ABSTRACT_TESTS = 48;

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'broker-store-'));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const open: BrokerStore[] = [];
/** A store on a fresh file, or on `file`; closed after the test if the test did not. */
function store(file = path.join(tempDir(), 'broker.db'), opts: Partial<ConstructorParameters<typeof BrokerStore>[0]> = {}): BrokerStore {
  const s = new BrokerStore({ file, ...opts });
  open.push(s);
  return s;
}
/** Brokers and sockets a test started: stopped before the stores are closed. */
const stops: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
  for (const s of open.splice(0)) await s.destroy().catch(() => undefined);
});

describe("aedes-persistence's abstract suite", () => {
  const registered: string[] = [];
  const ran = new Set<string>();

  /** node:test's `test` as abstract.js uses it: t.plan counts the assertions, as node:test checks them. */
  function test(name: string, fn: (t: object) => Promise<void>): void {
    registered.push(name);
    it(name, async () => {
      let planned: number | undefined;
      let made = 0;
      const counted = new Proxy(assert, {
        get(target, key) {
          const member = Reflect.get(target, key) as unknown;
          if (typeof member !== 'function') return member;
          return (...args: unknown[]) => {
            made += 1;
            return (member as (...a: unknown[]) => unknown).apply(target, args);
          };
        },
      });
      const t = { plan: (n: number) => (planned = n), assert: counted, diagnostic: () => undefined };
      await fn(t);
      if (planned !== undefined) expect(made, `assertions made against t.plan(${planned})`).toBe(planned);
      ran.add(name);
    });
  }

  abstractPersistence({ test, testAsync: true, persistence: () => store() });

  it('registers and runs every test of abstract.js', () => {
    const defined = readFileSync(ABSTRACT_FILE, 'utf8').match(/^\s*test\('/gm) ?? [];
    expect(defined.length).toBe(ABSTRACT_TESTS);
    expect(registered.length).toBe(ABSTRACT_TESTS);
    expect(new Set(registered).size).toBe(ABSTRACT_TESTS);
    expect([...ran].sort()).toEqual([...registered].sort());
  });
});

/**
 * Writes a broker state and then closes the store (`close`) or SIGKILLs its own process (`kill`), as a node killed
 * mid-run: the compiled store (dist/, `npm run build`) in a process of its own.
 */
const WRITER = `
import { createRequire } from 'node:module';
const [moduleUrl, file, mode, rootPackage] = process.argv.slice(2);
const { BrokerStore } = await import(moduleUrl);
const Packet = createRequire(rootPackage)('aedes-packet');
const broker = { id: 'broker-A', counter: 0 };
const store = new BrokerStore({ file });
await store.setup(broker);
const props = { userProperties: { site: 'north', tags: ['a', 'b'] }, correlationData: Buffer.from([0, 1, 254, 255]), contentType: 'application/octet-stream', messageExpiryInterval: 60 };
await store.storeRetained({ cmd: 'publish', topic: 'plant/1/temp', payload: Buffer.from([0, 1, 2, 255]), qos: 1, retain: true, dup: false, properties: props, messageExpiry: 1900000000000, brokerId: 'broker-A', brokerCounter: 7 });
await store.storeRetained({ cmd: 'publish', topic: 'plant/2/temp', payload: Buffer.from('gone'), qos: 0, retain: true });
await store.storeRetained({ cmd: 'publish', topic: 'plant/2/temp', payload: Buffer.alloc(0), qos: 0, retain: true });
await store.storeRetained({ cmd: 'publish', topic: 'other', payload: Buffer.from('x'), qos: 0, retain: true });
await store.addSubscriptions({ id: 'dev-1' }, [
  { topic: 'plant/+/temp', qos: 1, rh: 0, rap: false, nl: false, subscriptionIdentifier: 7 },
  { topic: 'cmd/#', qos: 2, rh: 1, rap: true, nl: true },
  { topic: 'zero', qos: 0, rh: 0, rap: false, nl: false },
]);
for (let i = 1; i <= 4; i++) {
  const p = new Packet({ cmd: 'publish', topic: 'cmd/dev-1', payload: Buffer.from('m' + i), qos: i === 3 ? 2 : 1, retain: false, properties: props }, broker);
  await store.outgoingEnqueue({ clientId: 'dev-1' }, p);
  if (i < 4) {
    p.messageId = 100 + i;
    await store.outgoingUpdate({ id: 'dev-1' }, p);
  }
}
await store.outgoingUpdate({ id: 'dev-1' }, { cmd: 'pubrel', messageId: 103 });
await store.incomingStorePacket({ id: 'dev-1' }, { cmd: 'publish', topic: 'up', payload: Buffer.from('q2'), qos: 2, retain: false, dup: false, messageId: 9 });
await store.putWill({ id: 'dev-1' }, { topic: 'dev/1/status', payload: Buffer.from('offline'), qos: 1, retain: true, properties: { willDelayInterval: 5 } });
store.noteSessionEnd('dev-1', 5000);
store.noteSessionEnd('dev-2', 9000);
process.stdout.write('written\\n');
if (mode === 'kill') process.kill(process.pid, 'SIGKILL');
await store.destroy();
`;

const Packet = require('aedes-packet') as new (original: object) => object;
const PROPS = {
  userProperties: { site: 'north', tags: ['a', 'b'] },
  correlationData: Buffer.from([0, 1, 254, 255]),
  contentType: 'application/octet-stream',
  messageExpiryInterval: 60,
};

/** Runs WRITER on `file`; resolves with how it ended and what it printed. */
async function writeInChild(file: string, mode: 'close' | 'kill'): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }> {
  const compiled = path.join(ROOT, 'dist/src/intake/embedded/broker-store/broker-store.js');
  if (!existsSync(compiled)) throw new Error(`${compiled} is missing: run npm run build first`);
  const script = path.join(tempDir(), 'writer.mjs');
  writeFileSync(script, WRITER);
  const child = spawn(process.execPath, [script, new URL(`file://${compiled}`).href, file, mode, path.join(ROOT, 'package.json')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const [code, signal] = (await new Promise((resolve) => child.on('exit', (...a) => resolve(a)))) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  return { code, signal, out };
}

/** What WRITER stored, read by a new instance. */
async function expectWrittenState(s: BrokerStore): Promise<void> {
  await s.setup({ id: 'broker-B' });
  const retained = (await s.createRetainedStream('#').toArray()) as Array<Record<string, unknown>>;
  expect(retained.map((p) => p.topic)).toEqual(['other', 'plant/1/temp']);
  expect(retained[1]).toStrictEqual({
    cmd: 'publish', topic: 'plant/1/temp', payload: Buffer.from([0, 1, 2, 255]), qos: 1, retain: true, dup: false,
    properties: PROPS, messageExpiry: 1900000000000, brokerId: 'broker-A', brokerCounter: 7,
  });
  expect(await s.createRetainedStream('plant/+/temp').toArray()).toHaveLength(1);

  expect(await s.subscriptionsByClient({ id: 'dev-1' })).toStrictEqual([
    { topic: 'plant/+/temp', qos: 1, rh: 0, rap: false, nl: false, subscriptionIdentifier: 7 },
    { topic: 'cmd/#', qos: 2, rh: 1, rap: true, nl: true },
    { topic: 'zero', qos: 0, rh: 0, rap: false, nl: false },
  ]);
  expect(await s.subscriptionsByTopic('plant/9/temp')).toEqual([{ clientId: 'dev-1', topic: 'plant/+/temp', qos: 1, rh: 0, rap: false, nl: false }]);
  expect(await s.subscriptionsByTopic('cmd/a/b')).toEqual([{ clientId: 'dev-1', topic: 'cmd/#', qos: 2, rh: 1, rap: true, nl: true }]);
  expect(await s.subscriptionsByTopic('zero')).toEqual([]);
  expect(await s.countOffline()).toEqual({ subsCount: 2, clientsCount: 1 });

  const queue = (await s.outgoingStream({ id: 'dev-1' }).toArray()) as Array<Record<string, unknown>>;
  expect(queue.map((p) => p.messageId)).toEqual([101, 102, 103, undefined]);
  expect(queue[2]).toStrictEqual({ cmd: 'pubrel', messageId: 103 });
  for (const i of [0, 1, 3]) {
    expect(queue[i]).toBeInstanceOf(Packet);
    expect(queue[i]).toMatchObject({ topic: 'cmd/dev-1', payload: Buffer.from(`m${i + 1}`), brokerId: 'broker-A', brokerCounter: i + 1, properties: PROPS });
    expect(Buffer.isBuffer((queue[i]!.properties as typeof PROPS).correlationData)).toBe(true);
  }
  expect(await s.outgoingClearMessageId({ id: 'dev-1' }, { messageId: 102 })).toMatchObject({ payload: Buffer.from('m2') });
  expect(((await s.outgoingStream({ id: 'dev-1' }).toArray()) as Array<{ messageId?: number }>).map((p) => p.messageId)).toEqual([101, 103, undefined]);

  expect(await s.incomingGetPacket({ id: 'dev-1' }, { messageId: 9 })).toMatchObject({ topic: 'up', payload: Buffer.from('q2'), qos: 2, messageId: 9 });
  const will = { topic: 'dev/1/status', payload: Buffer.from('offline'), qos: 1, retain: true, properties: { willDelayInterval: 5 }, brokerId: 'broker-A', clientId: 'dev-1' };
  expect(await s.getWill({ id: 'dev-1' })).toStrictEqual(will);
  // The previous run's broker is not alive: its wills are due (Aedes publishes them).
  expect(await s.streamWill({ 'broker-B': Date.now() }).toArray()).toStrictEqual([will]);
  expect(await s.streamWill({ 'broker-A': Date.now() }).toArray()).toEqual([]);

  expect(s.expiredSessions(4_999)).toEqual([]);
  expect(s.expiredSessions(5_000)).toEqual(['dev-1']);
  expect(s.expiredSessions(10_000)).toEqual(['dev-1', 'dev-2']);
  expect(s.stats()).toMatchObject({ retainedMessages: 2, sessions: 1, queuedMessages: 3 });
}

describe('the state after a restart', () => {
  it('is found by a new instance after the writing one closed the file', async () => {
    const file = path.join(tempDir(), 'broker.db');
    const run = await writeInChild(file, 'close');
    expect(run, run.out).toMatchObject({ code: 0, signal: null });
    expect(existsSync(`${file}-wal`)).toBe(false);
    await expectWrittenState(store(file));
  });

  it('is found by a new instance after the writing process was SIGKILLed', async () => {
    const file = path.join(tempDir(), 'broker.db');
    const run = await writeInChild(file, 'kill');
    expect(run.signal, run.out).toBe('SIGKILL');
    expect(run.out).toBe('written\n');
    // Nothing was checkpointed: the state is in the write-ahead log only, which the next open recovers.
    expect(statSync(`${file}-wal`).size).toBeGreaterThan(0);
    await expectWrittenState(store(file));
  });
});

/** A real Aedes on the store, on a free port. */
async function brokerOn(s: BrokerStore): Promise<{ port: number; url: string; stop: () => Promise<void> }> {
  const aedes = await Aedes.createBroker({ persistence: s });
  const server = net.createServer((socket) => aedes.handle(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const stop = async (): Promise<void> => {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  stops.push(stop);
  return { port, url: `mqtt://127.0.0.1:${port}`, stop };
}

/** A persistent-session subscriber on a raw socket: it acknowledges a PUBLISH only when told (MQTT.js always does). */
async function holdingSubscriber(port: number, clientId: string, filter: string) {
  const socket = net.connect(port, '127.0.0.1');
  stops.push(async () => socket.destroy());
  await once(socket, 'connect');
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const packets: mqttPacket.Packet[] = [];
  parser.on('packet', (p) => packets.push(p));
  socket.on('data', (d: Buffer) => parser.parse(d));
  socket.on('error', () => undefined);
  let closed = false;
  socket.on('close', () => (closed = true));
  socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: false, keepalive: 0 }));
  await waitFor(() => packets.some((p) => p.cmd === 'connack'), 5_000, 'CONNACK');
  socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos: 1 }] }));
  await waitFor(() => packets.some((p) => p.cmd === 'suback'), 5_000, 'SUBACK');
  return {
    publishes: () => packets.filter((p): p is mqttPacket.IPublishPacket => p.cmd === 'publish'),
    ack: (messageId: number) => socket.write(mqttPacket.generate({ cmd: 'puback', messageId })),
    closed: () => closed,
  };
}

async function publishAll(url: string, topic: string, payloads: string[]): Promise<void> {
  const pub = await mqtt.connectAsync(url, { clientId: 'publisher', reconnectPeriod: 0 });
  stops.push(() => pub.endAsync(true));
  for (const payload of payloads) await pub.publishAsync(topic, payload, { qos: 1 });
  await pub.endAsync();
}

describe('the queue limit with Aedes', () => {
  it('keeps the first messages for an offline session, and its queue and subscription survive a restart of the broker', async () => {
    const file = path.join(tempDir(), 'broker.db');
    const drops: Array<[string, number]> = [];
    const s1 = store(file, { maxQueuedPerClient: 3, onQueueDropped: (c, n) => drops.push([c, n]) });
    const b1 = await brokerOn(s1);
    const sub1 = await mqtt.connectAsync(b1.url, { clientId: 'away', clean: false, reconnectPeriod: 0 });
    await sub1.subscribeAsync('q/#', { qos: 1 });
    await sub1.endAsync();
    await publishAll(b1.url, 'q/x', ['m0', 'm1', 'm2', 'm3', 'm4']);
    expect(drops).toEqual([['away', 1], ['away', 1]]);
    expect(s1.stats().queuedMessages).toBe(3);
    await b1.stop();
    await s1.destroy();

    const s2 = store(file, { maxQueuedPerClient: 3 });
    const b2 = await brokerOn(s2);
    const got: string[] = [];
    const sub2 = mqtt.connect(b2.url, { clientId: 'away', clean: false, reconnectPeriod: 0 });
    stops.push(() => sub2.endAsync(true));
    sub2.on('message', (_topic, payload) => got.push(payload.toString()));
    const connack = await new Promise<{ sessionPresent: boolean }>((resolve) => sub2.once('connect', resolve));
    expect(connack.sessionPresent).toBe(true);
    await waitFor(() => got.length === 3, 10_000, 'the queued messages');
    // The subscription came back from the file too: a new message reaches the session.
    await publishAll(b2.url, 'q/y', ['m5']);
    await waitFor(() => got.length === 4, 10_000, 'the new message');
    expect(got).toEqual(['m0', 'm1', 'm2', 'm5']);
    await waitFor(() => s2.stats().queuedMessages === 0, 10_000, 'the acknowledgements');
  });

  it('delivers the messages beyond it to a connected session without disconnecting it', async () => {
    const drops: Array<[string, number]> = [];
    const s = store(undefined, { maxQueuedPerClient: 2, onQueueDropped: (c, n) => drops.push([c, n]) });
    const b = await brokerOn(s);
    const sub = await holdingSubscriber(b.port, 'holder', 'q/#');
    await publishAll(b.url, 'q/x', ['m0', 'm1', 'm2', 'm3']);
    await waitFor(() => sub.publishes().length === 4, 10_000, 'four PUBLISH packets');
    expect(sub.publishes().map((p) => p.payload.toString())).toEqual(['m0', 'm1', 'm2', 'm3']);
    expect(drops).toEqual([['holder', 1], ['holder', 1]]);
    expect(s.stats().queuedMessages).toBe(2);
    for (const p of sub.publishes()) sub.ack(p.messageId!);
    await waitFor(() => s.stats().queuedMessages === 0, 10_000, 'the acknowledgements');
    await new Promise((r) => setTimeout(r, 200));
    expect(sub.closed()).toBe(false);
  });
});
