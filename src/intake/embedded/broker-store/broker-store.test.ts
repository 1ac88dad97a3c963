import Database from 'better-sqlite3';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { BrokerError } from '../../../core/errors.js';
import { BrokerStore, type BrokerStoreOptions } from './broker-store.js';
import { decodePacket, encodePacket, Packet } from './packet-codec.js';
import { literalPrefix } from './retained.js';

const require = createRequire(import.meta.url);
/** aedes-persistence's memory store: the reference the retained lookup is compared with. */
const MemoryPersistence = require('aedes-persistence/asyncPersistence.js') as new () => BrokerStore;

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
function newFile(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'broker-store-unit-'));
  dirs.push(dir);
  return path.join(dir, 'state', 'broker.db');
}

const open: BrokerStore[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.destroy().catch(() => undefined);
});
async function store(file: string, opts: Partial<BrokerStoreOptions> = {}): Promise<BrokerStore> {
  const s = new BrokerStore({ file, ...opts });
  open.push(s);
  await s.setup({ id: 'broker-1' });
  return s;
}
async function reopen(s: BrokerStore, file: string, opts: Partial<BrokerStoreOptions> = {}): Promise<BrokerStore> {
  await s.destroy();
  return store(file, opts);
}

const broker = { id: 'broker-1', counter: 0 };
const publish = (payload: string, topic = 't') => new Packet({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: false }, broker);
const payloads = async (s: BrokerStore, clientId: string) =>
  ((await s.outgoingStream({ id: clientId }).toArray()) as Array<{ payload: Buffer }>).map((p) => p.payload.toString());

describe('the per-client queue limit', () => {
  it('does not queue a message for a full queue and reports it once per enqueue and client', async () => {
    const file = newFile();
    const drops: Array<[string, number]> = [];
    const onQueueDropped = (c: string, n: number) => drops.push([c, n]);
    let s = await store(file, { maxQueuedPerClient: 2, onQueueDropped });
    for (const m of ['a1', 'a2', 'a3']) await s.outgoingEnqueue({ clientId: 'A' }, publish(m));
    expect(drops).toEqual([['A', 1]]);
    await s.outgoingEnqueueCombi([{ clientId: 'A' }, { clientId: 'B' }, { clientId: 'A' }], publish('x'));
    expect(drops).toEqual([['A', 1], ['A', 2]]);
    expect(await payloads(s, 'A')).toEqual(['a1', 'a2']);
    expect(await payloads(s, 'B')).toEqual(['x']);
    expect(s.stats().queuedMessages).toBe(3);

    // An acknowledgement makes room.
    const first = (await s.outgoingStream({ id: 'A' }).toArray())[0] as { messageId?: number };
    first.messageId = 7;
    await s.outgoingUpdate({ id: 'A' }, first as never);
    await s.outgoingClearMessageId({ id: 'A' }, { messageId: 7 });
    await s.outgoingEnqueue({ clientId: 'A' }, publish('a4'));
    expect(await payloads(s, 'A')).toEqual(['a2', 'a4']);

    // The counts are read from the file at open: the queue is still full.
    s = await reopen(s, file, { maxQueuedPerClient: 2, onQueueDropped });
    await s.outgoingEnqueue({ clientId: 'A' }, publish('a5'));
    expect(drops).toEqual([['A', 1], ['A', 2], ['A', 1]]);
    expect(await payloads(s, 'A')).toEqual(['a2', 'a4']);
    expect(s.stats().queuedMessages).toBe(3);
  });

  it('lets a dropped message be updated, released and acknowledged; an unknown packet is still refused', async () => {
    const s = await store(newFile(), { maxQueuedPerClient: 1 });
    await s.outgoingEnqueue({ clientId: 'A' }, publish('kept'));
    const dropped = publish('dropped');
    await s.outgoingEnqueue({ clientId: 'A' }, dropped);
    dropped.messageId = 42;
    await s.outgoingUpdate({ id: 'A' }, dropped);
    await s.outgoingUpdate({ id: 'A' }, { cmd: 'pubrel', messageId: 42 });
    expect(await s.outgoingClearMessageId({ id: 'A' }, { messageId: 42 })).toBeUndefined();
    expect(await payloads(s, 'A')).toEqual(['kept']);
    // Once acknowledged it is forgotten; a packet never enqueued was never known.
    await expect(s.outgoingUpdate({ id: 'A' }, { cmd: 'pubrel', messageId: 42 })).rejects.toThrow('no such packet');
    await expect(s.outgoingUpdate({ id: 'A' }, publish('never'))).rejects.toThrow('no such packet');
  });

  it('defaults to 1000 and may be 0; anything else is refused', async () => {
    const s = await store(newFile());
    for (let i = 0; i < 1001; i++) await s.outgoingEnqueue({ clientId: 'A' }, publish(`m${i}`));
    expect(s.stats().queuedMessages).toBe(1000);
    const none = await store(newFile(), { maxQueuedPerClient: 0 });
    await none.outgoingEnqueue({ clientId: 'A' }, publish('m'));
    expect(none.stats().queuedMessages).toBe(0);
    expect(() => new BrokerStore({ file: newFile(), maxQueuedPerClient: -1 })).toThrow(RangeError);
  });
});

describe('cleanIncoming', () => {
  it("deletes every incoming QoS 2 packet of the client, and only its", async () => {
    const file = newFile();
    let s = await store(file);
    const q2 = (messageId: number) => ({ cmd: 'publish', topic: 'up', payload: Buffer.from('x'), qos: 2, retain: false, dup: false, messageId });
    await s.incomingStorePacket({ id: 'A' }, q2(1));
    await s.incomingStorePacket({ id: 'A' }, q2(2));
    await s.incomingStorePacket({ id: 'B' }, q2(1));
    await s.cleanIncoming({ id: 'A' });
    s = await reopen(s, file);
    await expect(s.incomingGetPacket({ id: 'A' }, { messageId: 1 })).rejects.toThrow('no such packet');
    await expect(s.incomingGetPacket({ id: 'A' }, { messageId: 2 })).rejects.toThrow('no such packet');
    expect(await s.incomingGetPacket({ id: 'B' }, { messageId: 1 })).toMatchObject({ messageId: 1, topic: 'up' });
  });
});

describe('session expiry', () => {
  it('keeps the notes across a restart, and a resumed session is no longer noted', async () => {
    const file = newFile();
    let s = await store(file);
    s.noteSessionEnd('A', 2_000);
    s.noteSessionEnd('B', 1_000);
    s.noteSessionEnd('C', 3_000);
    s.noteSessionEnd('A', 4_000);
    s.noteSessionResumed('C');
    s = await reopen(s, file);
    expect(s.expiredSessions(999)).toEqual([]);
    expect(s.expiredSessions(1_000)).toEqual(['B']);
    expect(s.expiredSessions(10_000)).toEqual(['B', 'A']);
    expect(() => s.noteSessionEnd('A', Number.NaN)).toThrow(RangeError);
  });

  it('lists the sessions with subscriptions and no expiry note (connected at a crash)', async () => {
    const file = newFile();
    let s = await store(file);
    for (const id of ['A', 'B', 'C']) await s.addSubscriptions({ id }, [{ topic: 'plant/#', qos: 1 }]);
    s.noteSessionEnd('B', 1_000);
    s = await reopen(s, file);
    expect(s.sessionsWithoutExpiry().sort()).toEqual(['A', 'C']);
    s.noteSessionEnd('A', 2_000);
    expect(s.sessionsWithoutExpiry()).toEqual(['C']);
  });

  it('wipes everything of one session, in the file and in the matching', async () => {
    const file = newFile();
    let s = await store(file);
    for (const id of ['A', 'B']) {
      await s.addSubscriptions({ id }, [{ topic: 'plant/#', qos: 1 }, { topic: 'zero', qos: 0 }]);
      await s.outgoingEnqueue({ clientId: id }, publish(`for ${id}`));
      await s.incomingStorePacket({ id }, { cmd: 'publish', topic: 'up', payload: Buffer.from('x'), qos: 2, messageId: 5 });
      await s.putWill({ id }, { topic: `will/${id}`, payload: Buffer.from('bye'), qos: 0, retain: false });
      s.noteSessionEnd(id, 1_000);
    }
    s.wipeSession('A');
    const check = async (): Promise<void> => {
      expect((await s.subscriptionsByTopic('plant/1')).map((sub) => sub.clientId)).toEqual(['B']);
      expect(await s.subscriptionsByClient({ id: 'A' })).toEqual([]);
      expect(await s.getClientList('zero').toArray()).toEqual(['B']);
      expect(await s.countOffline()).toEqual({ subsCount: 1, clientsCount: 1 });
      expect(await payloads(s, 'A')).toEqual([]);
      expect(await payloads(s, 'B')).toEqual(['for B']);
      await expect(s.incomingGetPacket({ id: 'A' }, { messageId: 5 })).rejects.toThrow('no such packet');
      expect(await s.getWill({ id: 'A' })).toBeUndefined();
      expect(await s.getWill({ id: 'B' })).toMatchObject({ topic: 'will/B' });
      expect(s.expiredSessions(1_000)).toEqual(['B']);
      expect(s.stats()).toMatchObject({ sessions: 1, queuedMessages: 1 });
    };
    await check();
    s = await reopen(s, file);
    await check();
  });
});

describe('stats and retainedSizes', () => {
  it('count what the file holds', async () => {
    const file = newFile();
    let s = await store(file);
    const empty = s.stats();
    expect(empty).toMatchObject({ retainedMessages: 0, sessions: 0, queuedMessages: 0 });
    await s.storeRetained({ cmd: 'publish', topic: 'a', payload: Buffer.alloc(10_000, 1), qos: 0, retain: true });
    await s.storeRetained({ cmd: 'publish', topic: 'b/c', payload: 'héllo', qos: 0, retain: true });
    await s.storeRetained({ cmd: 'publish', topic: 'a', payload: Buffer.alloc(3), qos: 0, retain: true });
    await s.addSubscriptions({ id: 'A' }, [{ topic: 'x', qos: 0 }]);
    await s.outgoingEnqueue({ clientId: 'A' }, publish('m'));
    const now = s.stats();
    expect(now).toMatchObject({ retainedMessages: 2, sessions: 1, queuedMessages: 1 });
    expect(now.fileBytes).toBeGreaterThan(empty.fileBytes);
    expect(s.retainedSizes()).toEqual([['a', 3], ['b/c', 6]]);
    s = await reopen(s, file);
    expect(s.stats()).toMatchObject({ retainedMessages: 2, sessions: 1, queuedMessages: 1 });
  });
});

describe('opening the file', () => {
  const refusal = (file: string): BrokerError => {
    try {
      new BrokerStore({ file });
    } catch (err) {
      return err as BrokerError;
    }
    throw new Error(`${file} was opened`);
  };

  it('creates its directory', async () => {
    const s = await store(newFile());
    expect(s.stats().fileBytes).toBeGreaterThan(0);
  });

  it('refuses a directory it cannot make, naming the file', () => {
    const blocker = newFile();
    rmSync(path.dirname(blocker), { recursive: true, force: true });
    writeFileSync(path.dirname(blocker), 'a file where the directory should be');
    const err = refusal(blocker);
    expect(err).toBeInstanceOf(BrokerError);
    expect(err.code).toBe('BROKER_START_FAILED');
    expect(err.message).toContain(blocker);
    expect(err.message).toMatch(/directory/);
  });

  it('refuses a file that is not a database, naming it', async () => {
    const file = newFile();
    await (await store(file)).destroy();
    writeFileSync(file, Buffer.alloc(8192, 0x5a));
    rmSync(`${file}-wal`, { force: true });
    const err = refusal(file);
    expect(err.code).toBe('BROKER_STATE_DAMAGED');
    expect(err.message).toContain(file);
    expect(err.message).toMatch(/damaged or not a state file/);
  });

  it('refuses a format version it does not know', async () => {
    const file = newFile();
    await (await store(file)).destroy();
    const db = new Database(file);
    db.pragma('user_version = 99');
    db.close();
    expect(refusal(file).message).toMatch(/has format version 99, this node reads version 1/);
  });
});

describe('packets as stored', () => {
  it('come back whole: Buffers, MQTT 5 properties, undefined members, the Packet class; functions are left out', () => {
    const original = Object.assign(
      new Packet({
        cmd: 'publish', topic: 'a/b', payload: Buffer.from([0, 255]), qos: 2, retain: true, dup: true, messageExpiry: 1.9e12,
        properties: { userProperties: { one: 'x', many: ['y', 'z'] }, correlationData: Buffer.from('corr'), responseTopic: 'r', payloadFormatIndicator: false },
      }, broker),
      { writeCallback: () => undefined },
    );
    const decoded = decodePacket(encodePacket(original));
    expect(decoded).toBeInstanceOf(Packet);
    const { writeCallback: _dropped, ...expected } = original;
    expect({ ...decoded }).toStrictEqual(expected);
    expect('messageId' in decoded).toBe(true);
    expect(Buffer.isBuffer(decoded.payload)).toBe(true);
    const plain = decodePacket(encodePacket({ cmd: 'pubrel', messageId: 3 }));
    expect(plain).not.toBeInstanceOf(Packet);
    expect(plain).toStrictEqual({ cmd: 'pubrel', messageId: 3 });
  });
});

describe('retained lookup', () => {
  it('takes the literal prefix of a filter', () => {
    expect(literalPrefix('a/b/+/c')).toBe('a/b');
    expect(literalPrefix('a/b/#')).toBe('a/b');
    expect(literalPrefix('a/b')).toBe('a/b');
    expect(literalPrefix('/+')).toBe('');
    expect(literalPrefix('+/a')).toBeUndefined();
    expect(literalPrefix('#')).toBeUndefined();
    expect(literalPrefix('a+/b')).toBe('a+/b');
  });

  it('finds exactly what the reference store finds', async () => {
    const s = await store(newFile());
    const reference = new MemoryPersistence();
    await reference.setup({ id: 'broker-1' });
    const topics = ['a', 'a/b', 'a/b/c', 'a/b/c/d', 'a/bc', 'a/b0', 'a/b/', 'a//b', '/a', '/', 'ab', 'a/b/😀', 'a/b😀', '$SYS/x', 'b', 'a/b/c/e'];
    // Enough rows under one prefix that a stream reads several pages.
    for (let i = 0; i < 150; i++) topics.push(`a/b/n${i}`);
    for (const topic of topics) {
      const packet = { cmd: 'publish', topic, payload: Buffer.from(topic), qos: 0, retain: true };
      await s.storeRetained(packet);
      await reference.storeRetained(packet);
    }
    const filters = ['#', 'a/#', 'a/b/#', 'a/b/+', 'a/+/c', '+/b/#', 'a/b', 'a/b/', '/#', '/+', '+', '+/+', 'a//b', 'a/b/😀', 'x/#', '$SYS/#', 'a/b/c/+'];
    const found = async (p: BrokerStore, filter: string): Promise<string[]> =>
      ((await p.createRetainedStream(filter).toArray()) as Array<{ topic: string }>).map((m) => m.topic).sort();
    for (const filter of filters) expect(await found(s, filter), filter).toEqual(await found(reference, filter));
    // The 150 under a/b/n, a/b/c and a/b/😀 (qlobber's '+' matches no empty level, in the reference too), over 3 pages.
    expect(await found(s, 'a/b/+')).toHaveLength(152);
    const combi = ((await s.createRetainedStreamCombi(['a/b', 'a/+']).toArray()) as Array<{ topic: string }>).map((m) => m.topic);
    expect(combi).toEqual(['a/b', 'a/b', 'a/b0', 'a/bc', 'a/b😀']);
  });
});
