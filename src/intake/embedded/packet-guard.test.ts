import { Duplex, PassThrough } from 'node:stream';
import mqttPacket from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { PacketGuard } from './packet-guard.js';
import { mqttStringProblem } from '../../core/mqtt-topic.js';
import { GuardedStream, PartialPacketBudget, type GuardedStreamOptions, type StreamRefusal } from './guarded-stream.js';

const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'c1', clean: true, keepalive: 30 });
const publish = (bytes: number, topic = 't') =>
  mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.alloc(bytes), qos: 0, retain: false, dup: false });
const limits = (maxPacketBytes: number, maxConnectBytes = maxPacketBytes) => ({ maxPacketBytes, maxConnectBytes });

/** A QoS 1 PUBLISH whose topic is the given raw bytes (mqtt-packet would encode a string as UTF-8). */
function rawPublish(topic: Buffer, payload = Buffer.from('x')): Buffer {
  const body = Buffer.concat([Buffer.from([topic.length >> 8, topic.length & 0xff]), topic, Buffer.from([0x00, 0x01]), payload]);
  return Buffer.concat([Buffer.from([0x32, body.length]), body]);
}

/** A 3.1.1 CONNECT whose client id is the given raw bytes. */
function rawConnect(clientId: Buffer): Buffer {
  const variable = Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x1e]);
  const body = Buffer.concat([variable, Buffer.from([clientId.length >> 8, clientId.length & 0xff]), clientId]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

/** Feeds `stream` in pieces of `size` bytes and returns the first refusal, if any. */
function feedInPieces(guard: PacketGuard, stream: Buffer, size: number) {
  for (let i = 0; i < stream.length; i += size) {
    const r = guard.feed(stream.subarray(i, i + size));
    if (r.refusal) return r.refusal;
  }
  return undefined;
}

describe('PacketGuard: sizes', () => {
  it('lets packets up to the limit through, across chunk boundaries and many per chunk', () => {
    const stream = Buffer.concat([connect, publish(100), publish(500), publish(994)]);
    expect(publish(994).length).toBe(1000); // type byte, 2 length bytes, topic length and "t", 994 payload bytes
    const guard = new PacketGuard(limits(1000));
    for (let i = 0; i < stream.length; i += 7) expect(guard.feed(stream.subarray(i, i + 7)).refusal).toBeUndefined();
  });

  it('reports the first packet over the limit from its fixed header, before the body arrives', () => {
    const big = publish(5000);
    const guard = new PacketGuard(limits(1000));
    expect(guard.feed(Buffer.concat([connect, publish(10)])).refusal).toBeUndefined();
    expect(guard.feed(big.subarray(0, 1)).refusal).toBeUndefined(); // the type byte alone says nothing
    expect(guard.feed(big.subarray(1, 4)).refusal).toEqual({ reason: 'packet_too_large', size: big.length, limit: 1000, start: 0 });
    const again = new PacketGuard(limits(1000));
    const chunk = Buffer.concat([connect, big]);
    expect(again.feed(chunk).refusal).toEqual({ reason: 'packet_too_large', size: big.length, limit: 1000, start: connect.length });
  });

  it('reads a 4-byte Remaining Length (MQTT 3.1.1 §2.2.3)', () => {
    // PUBLISH declaring 268,435,455 bytes, the most MQTT allows.
    expect(new PacketGuard(limits(1_048_576)).feed(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f])).refusal).toMatchObject({ size: 268_435_460 });
  });

  it('leaves a malformed length to the MQTT parser and stops tracking', () => {
    const guard = new PacketGuard(limits(100));
    expect(guard.feed(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0xff])).refusal).toBeUndefined();
    expect(guard.feed(publish(5000)).refusal).toBeUndefined();
  });

  it('holds the first packet (the CONNECT) to its own lower limit, and later packets to the packet limit', () => {
    const bigConnect = Buffer.from([0x10, 0xfa, 0xff, 0x3f]); // declares 1,048,570 bytes
    expect(new PacketGuard(limits(1_048_576, 65_536)).feed(bigConnect).refusal).toEqual({
      reason: 'connect_too_large',
      size: 1_048_574,
      limit: 65_536,
      start: 0,
    });
    const guard = new PacketGuard(limits(1_048_576, 65_536));
    expect(guard.feed(Buffer.concat([connect, publish(200_000)])).refusal).toBeUndefined();
    // A packet over both limits is over the packet limit.
    expect(new PacketGuard(limits(1000, 500)).feed(publish(5000)).refusal).toMatchObject({ reason: 'packet_too_large' });
  });
});

describe('PacketGuard: incomplete packets', () => {
  it('counts the bytes of the packet still incomplete at the end of each chunk, header included', () => {
    const guard = new PacketGuard(limits(1_048_576));
    const p = publish(10_000);
    expect(guard.feed(connect.subarray(0, 5))).toEqual({ partialBytes: 5, partialStart: 0 });
    expect(guard.feed(Buffer.concat([connect.subarray(5), p.subarray(0, 3)]))).toEqual({
      partialBytes: 3,
      partialStart: connect.length - 5,
    });
    expect(guard.feed(p.subarray(3, 4000))).toEqual({ partialBytes: 4000, partialStart: 0 });
    expect(guard.feed(p.subarray(4000)).partialBytes).toBe(0);
  });
});

describe('PacketGuard: MQTT strings (MQTT-1.5.3-1, -2)', () => {
  const bad: Array<[string, string, RegExp]> = [
    ['U+0000', '706c616e74002f74', /U\+0000/],
    ['a byte that starts no UTF-8 sequence', '706c616e74ff', /not valid UTF-8/],
    ['an encoded surrogate (U+D800)', 'eda080', /not valid UTF-8/],
    ['an overlong encoding of "/"', 'c0af', /not valid UTF-8/],
    ['a sequence cut short by the end of the topic', '74e282', /not valid UTF-8/],
  ];
  for (const [what, hex, problem] of bad) {
    it(`refuses a PUBLISH topic with ${what}, whole or split across chunks`, () => {
      const topic = Buffer.from(hex, 'hex');
      const stream = Buffer.concat([connect, publish(3), rawPublish(topic)]);
      const whole = new PacketGuard(limits(1000)).feed(stream).refusal;
      expect(whole).toMatchObject({ reason: 'invalid_topic', topic, start: connect.length + publish(3).length });
      expect(whole && 'problem' in whole && whole.problem).toMatch(problem);
      for (const size of [1, 2, 3, 5]) expect(feedInPieces(new PacketGuard(limits(1000)), stream, size)).toMatchObject({ reason: 'invalid_topic', topic });
    });
  }

  it('takes valid UTF-8 topics, multi-byte characters split across chunks included', () => {
    const stream = Buffer.concat([connect, publish(10, 'plant/café/温度/🌡'), rawPublish(Buffer.from('efbbbf74', 'hex'))]);
    for (const size of [1, 2, 3, 1000]) expect(feedInPieces(new PacketGuard(limits(1000)), stream, size)).toBeUndefined();
  });

  it('checks the client id of a CONNECT, and topic filters of SUBSCRIBE and UNSUBSCRIBE', () => {
    expect(new PacketGuard(limits(1000)).feed(rawConnect(Buffer.from('c\u0000', 'latin1'))).refusal).toMatchObject({
      reason: 'invalid_string',
      packet: 'CONNECT',
      field: 'client id',
    });
    const subscribe = mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/#', qos: 1 }, { topic: 'b\u0000', qos: 0 }] });
    expect(feedInPieces(new PacketGuard(limits(1000)), Buffer.concat([connect, subscribe]), 2)).toMatchObject({
      reason: 'invalid_string',
      packet: 'SUBSCRIBE',
      field: 'topic filter',
      problem: 'contains U+0000 (MQTT-1.5.3-2)',
    });
    const withWill = mqttPacket.generate({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clientId: 'c2',
      clean: true,
      keepalive: 0,
      will: { topic: 'w\u0000', payload: Buffer.from([0xff]), qos: 0, retain: false },
      username: 'u',
      password: Buffer.from([0xff, 0x00]), // binary: not checked
    });
    expect(new PacketGuard(limits(1000)).feed(withWill).refusal).toMatchObject({ field: 'will topic' });
    const unsubscribe = mqttPacket.generate({ cmd: 'unsubscribe', messageId: 2, unsubscriptions: ['ok', 'x\u0000'] });
    expect(new PacketGuard(limits(1000)).feed(Buffer.concat([connect, unsubscribe])).refusal).toMatchObject({ packet: 'UNSUBSCRIBE' });
    const fine = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'ç', clean: true, keepalive: 0, username: 'ü', password: Buffer.from([0xff]) });
    const good = Buffer.concat([fine, mqttPacket.generate({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'plant/+/温度', qos: 1 }] }), publish(5)]);
    for (const size of [1, 4, 1000]) expect(feedInPieces(new PacketGuard(limits(1000)), good, size)).toBeUndefined();
  });

  it('follows packet boundaries as the MQTT parser does, over mixed packets in random chunks', () => {
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const names = ['a', 'plant/é/1', '温度/x', '🌡/+/y', ''.padEnd(300, 'z')];
    const packets: Buffer[] = [connect];
    for (let n = 0; n < 300; n++) {
      const name = names[Math.floor(random() * names.length)]!;
      const kind = Math.floor(random() * 5);
      if (kind === 0) packets.push(publish(Math.floor(random() * 3000), name.replace('+', 'p')));
      else if (kind === 1) packets.push(mqttPacket.generate({ cmd: 'subscribe', messageId: n + 1, subscriptions: [{ topic: name, qos: 1 }, { topic: '#', qos: 0 }] }));
      else if (kind === 2) packets.push(mqttPacket.generate({ cmd: 'unsubscribe', messageId: n + 1, unsubscriptions: [name] }));
      else if (kind === 3) packets.push(mqttPacket.generate({ cmd: 'puback', messageId: n + 1 }));
      else packets.push(mqttPacket.generate({ cmd: 'pingreq' }));
    }
    const stream = Buffer.concat(packets);
    const guard = new PacketGuard(limits(10_000));
    let i = 0;
    let boundary = 0;
    const ends = new Set(packets.map((p) => (boundary += p.length)));
    while (i < stream.length) {
      const size = 1 + Math.floor(random() * 700);
      const r = guard.feed(stream.subarray(i, i + size));
      i = Math.min(stream.length, i + size);
      expect(r.refusal).toBeUndefined();
      expect(r.partialBytes === 0).toBe(ends.has(i));
    }
  });

  it('leaves a topic length longer than its packet to the MQTT parser', () => {
    const packet = Buffer.from([0x30, 0x04, 0x00, 0x09, 0xff, 0xff]); // topic length 9 in a 4-byte body
    const guard = new PacketGuard(limits(1000));
    expect(guard.feed(Buffer.concat([connect, packet])).refusal).toBeUndefined();
  });

  it('mqttStringProblem: valid UTF-8 without U+0000 passes', () => {
    expect(mqttStringProblem(Buffer.from('plant/line-1/€'))).toBeUndefined();
    expect(mqttStringProblem(Buffer.alloc(0))).toBeUndefined();
  });
});

/** A guarded stream over an in-memory connection, with what the broker reads and what the guard refused. */
function guardedPair(o: Partial<GuardedStreamOptions> = {}) {
  const incoming = new PassThrough();
  const inner = Duplex.from({ readable: incoming, writable: new PassThrough() });
  const refusals: StreamRefusal[] = [];
  const budget = o.budget ?? new PartialPacketBudget(1_000_000);
  const guarded = new GuardedStream(inner, {
    maxPacketBytes: 1000,
    maxConnectBytes: 1000,
    budget,
    stallMs: 60_000,
    onRefused: (r) => refusals.push(r),
    ...o,
  });
  const read: Buffer[] = [];
  guarded.on('data', (c: Buffer) => read.push(c));
  const closed = new Promise((r) => guarded.once('close', r));
  return { incoming, inner, guarded, refusals, read, closed, budget };
}

describe('GuardedStream', () => {
  it('passes packets that fit and stops before an oversize packet, even one that arrives whole in one read', async () => {
    const { incoming, inner, refusals, read, closed } = guardedPair();
    const ok = publish(10);
    const big = publish(5000);
    incoming.write(Buffer.concat([connect, ok, big]));
    await closed;
    expect(Buffer.concat(read)).toEqual(Buffer.concat([connect, ok]));
    expect(refusals).toEqual([{ reason: 'packet_too_large', size: big.length, limit: 1000, start: connect.length + ok.length }]);
    expect(inner.destroyed).toBe(true);
  });

  it('stops before a PUBLISH with an invalid topic: the broker never reads it', async () => {
    const { incoming, refusals, read, closed } = guardedPair();
    const ok = publish(10);
    incoming.write(Buffer.concat([connect, ok, rawPublish(Buffer.from('a\u0000b', 'latin1')), publish(10)]));
    await closed;
    expect(Buffer.concat(read)).toEqual(Buffer.concat([connect, ok]));
    expect(refusals).toMatchObject([{ reason: 'invalid_topic', topic: Buffer.from('a\u0000b', 'latin1') }]);
  });

  it('shares one budget for incomplete packets: the connection that would pass it is closed, and closing gives its bytes back', async () => {
    const budget = new PartialPacketBudget(1500);
    const a = guardedPair({ budget });
    const b = guardedPair({ budget });
    a.incoming.write(Buffer.concat([connect, publish(990).subarray(0, 900)]));
    await new Promise((r) => setImmediate(r));
    expect(budget.bytes).toBe(900);
    const last = publish(5);
    b.incoming.write(Buffer.concat([connect, last, publish(990).subarray(0, 700)]));
    await b.closed;
    expect(b.refusals).toEqual([{ reason: 'partial_packet_budget', bytes: 700, limit: 1500 }]);
    expect(Buffer.concat(b.read)).toEqual(Buffer.concat([connect, last])); // the complete packets before it passed
    expect(budget.bytes).toBe(900);
    a.incoming.write(publish(990).subarray(900)); // completes a's packet
    await new Promise((r) => setImmediate(r));
    expect(budget.bytes).toBe(0);
    a.incoming.write(publish(990).subarray(0, 100));
    await new Promise((r) => setImmediate(r));
    expect(budget.bytes).toBe(100);
    a.guarded.destroy();
    await a.closed;
    expect(budget.bytes).toBe(0);
  });

  it('drops an incomplete packet that receives no byte for stallMs, and keeps one that progresses', async () => {
    const stalled = guardedPair({ stallMs: 100 });
    stalled.incoming.write(Buffer.concat([connect, publish(500).subarray(0, 200)]));
    const progressing = guardedPair({ stallMs: 100 });
    const p = publish(500);
    progressing.incoming.write(connect);
    for (let i = 0; i < 5; i++) {
      progressing.incoming.write(p.subarray(i * 10, i * 10 + 10));
      await new Promise((r) => setTimeout(r, 50));
    }
    await stalled.closed;
    expect(stalled.refusals).toEqual([{ reason: 'partial_packet_timeout', bytes: 200, ms: 100 }]);
    expect(progressing.guarded.destroyed).toBe(false);
    progressing.incoming.write(p.subarray(50));
    await new Promise((r) => setTimeout(r, 200)); // no incomplete packet now: no clock
    expect(progressing.guarded.destroyed).toBe(false);
    expect(progressing.refusals).toEqual([]);
    progressing.guarded.destroy();
  });

  it('does not run the stall clock while the broker is not reading (back-pressure)', async () => {
    const incoming = new PassThrough();
    const inner = Duplex.from({ readable: incoming, writable: new PassThrough() });
    const refusals: StreamRefusal[] = [];
    const guarded = new GuardedStream(inner, {
      maxPacketBytes: 1_000_000,
      maxConnectBytes: 1_000_000,
      budget: new PartialPacketBudget(10_000_000),
      stallMs: 100,
      onRefused: (r) => refusals.push(r),
    });
    // Nobody reads `guarded`: its buffer fills past the high-water mark and the guard pauses the connection.
    incoming.write(Buffer.concat([connect, publish(100_000), publish(100_000).subarray(0, 10)]));
    await new Promise((r) => setTimeout(r, 300));
    expect(refusals).toEqual([]);
    guarded.resume(); // the broker reads again: the clock runs, and the incomplete packet stalls
    await new Promise((r) => guarded.once('close', r));
    expect(refusals).toMatchObject([{ reason: 'partial_packet_timeout' }]);
  });

  it('writes through to the connection', async () => {
    const outgoing = new PassThrough();
    const guarded = new GuardedStream(Duplex.from({ readable: new PassThrough(), writable: outgoing }), {
      maxPacketBytes: 1000,
      maxConnectBytes: 1000,
      budget: new PartialPacketBudget(1000),
      stallMs: 1000,
      onRefused: () => undefined,
    });
    guarded.write(Buffer.from([0x20, 0x02, 0x00, 0x00])); // a CONNACK
    expect(await new Promise((r) => outgoing.once('data', r))).toEqual(Buffer.from([0x20, 0x02, 0x00, 0x00]));
    guarded.destroy();
  });
});
