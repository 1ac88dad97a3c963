import { Duplex, PassThrough } from 'node:stream';
import mqttPacket from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { GuardedStream, PacketSizeGuard } from './packet-guard.js';

const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'c1', clean: true, keepalive: 30 });
const publish = (bytes: number) => mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.alloc(bytes), qos: 0, retain: false, dup: false });

describe('PacketSizeGuard', () => {
  it('lets packets up to the limit through, across chunk boundaries and many per chunk', () => {
    const stream = Buffer.concat([connect, publish(100), publish(500), publish(994)]);
    expect(publish(994).length).toBe(1000); // type byte, 2 length bytes, topic length and "t", 994 payload bytes
    const guard = new PacketSizeGuard(1000);
    for (let i = 0; i < stream.length; i += 7) expect(guard.feed(stream.subarray(i, i + 7))).toBeUndefined();
  });

  it('reports the first packet over the limit from its fixed header, before the body arrives', () => {
    const big = publish(5000);
    const guard = new PacketSizeGuard(1000);
    expect(guard.feed(Buffer.concat([connect, publish(10)]))).toBeUndefined();
    expect(guard.feed(big.subarray(0, 1))).toBeUndefined(); // the type byte alone says nothing
    expect(guard.feed(big.subarray(1, 4))).toEqual({ size: big.length, start: 0 });
    const again = new PacketSizeGuard(1000);
    const chunk = Buffer.concat([connect, big]);
    expect(again.feed(chunk)).toEqual({ size: big.length, start: connect.length });
  });

  it('reads a 4-byte Remaining Length (MQTT 3.1.1 §2.2.3)', () => {
    // PUBLISH declaring 268,435,455 bytes, the most MQTT allows.
    expect(new PacketSizeGuard(1_048_576).feed(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]))).toEqual({ size: 268_435_460, start: 0 });
  });

  it('leaves a malformed length to the MQTT parser and stops tracking', () => {
    const guard = new PacketSizeGuard(100);
    expect(guard.feed(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0xff]))).toBeUndefined();
    expect(guard.feed(publish(5000))).toBeUndefined();
  });
});

describe('GuardedStream', () => {
  it('passes packets that fit and stops before an oversize packet, even one that arrives whole in one read', async () => {
    const incoming = new PassThrough();
    const outgoing = new PassThrough();
    const inner = Duplex.from({ readable: incoming, writable: outgoing });
    const sizes: number[] = [];
    const guarded = new GuardedStream(inner, 1000, (size) => sizes.push(size));
    const read: Buffer[] = [];
    guarded.on('data', (c: Buffer) => read.push(c));
    const closed = new Promise((r) => guarded.once('close', r));
    const ok = publish(10);
    const big = publish(5000);
    incoming.write(Buffer.concat([connect, ok, big]));
    await closed;
    expect(Buffer.concat(read)).toEqual(Buffer.concat([connect, ok]));
    expect(sizes).toEqual([big.length]);
    expect(inner.destroyed).toBe(true);
  });

  it('writes through to the connection', async () => {
    const outgoing = new PassThrough();
    const guarded = new GuardedStream(Duplex.from({ readable: new PassThrough(), writable: outgoing }), 1000, () => undefined);
    guarded.write(Buffer.from([0x20, 0x02, 0x00, 0x00])); // a CONNACK
    expect(await new Promise((r) => outgoing.once('data', r))).toEqual(Buffer.from([0x20, 0x02, 0x00, 0x00]));
    guarded.destroy();
  });
});
