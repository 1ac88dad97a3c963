import mqttPacket, { type IPubackPacket, type IPublishPacket, type Packet } from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { PublishError } from '../intake.js';
import { MAX_OUTBOUND_IN_FLIGHT, OutboundPublishes, OwnEchoes } from './outbound.js';

/** The packets as the broker would parse them: generated, then parsed back with mqtt-packet. */
function wire(protocolVersion: 4 | 5) {
  const sent: IPublishPacket[] = [];
  const done: Array<(err?: Error | null) => void> = [];
  const parser = mqttPacket.parser({ protocolVersion });
  parser.on('packet', (p: Packet) => sent.push(p as IPublishPacket));
  const out = new OutboundPublishes({
    write: (packet, cb) => {
      parser.parse(mqttPacket.generate(packet, { protocolVersion }));
      done.push(cb);
    },
  });
  const puback = (messageId: number, reasonCode?: number, reasonString?: string): IPubackPacket => {
    const bytes = mqttPacket.generate(
      { cmd: 'puback', messageId, ...(reasonCode !== undefined ? { reasonCode } : {}), ...(reasonString ? { properties: { reasonString } } : {}) },
      { protocolVersion },
    );
    let got: IPubackPacket | undefined;
    const p = mqttPacket.parser({ protocolVersion });
    p.on('packet', (x: Packet) => (got = x as IPubackPacket));
    p.parse(bytes);
    return got!;
  };
  return { out, sent, done, puback };
}

const settled = (p: Promise<unknown>) => p.then(() => 'resolved', (e: Error) => e);

describe('OutboundPublishes', () => {
  it('settles a QoS 0 publish once the stream took it, and a QoS 1 one at its PUBACK, with packet ids from 3', async () => {
    const w = wire(5);
    const zero = w.out.publish('spBv1.0/g/NCMD/e', Buffer.from([1, 2, 3]), { qos: 0 });
    const one = w.out.publish('spBv1.0/g/NCMD/e', Buffer.from([4]), { qos: 1, retain: false });
    expect(w.sent.map((p) => [p.qos, p.messageId, Buffer.from(p.payload).toString('hex')])).toEqual([
      [0, undefined, '010203'],
      [1, 3, '04'],
    ]);
    w.done.forEach((cb) => cb());
    expect(await zero).toBeUndefined();
    let oneDone = false;
    void one.then(() => (oneDone = true));
    await new Promise((r) => setImmediate(r));
    expect(oneDone).toBe(false);
    w.out.acked(w.puback(3));
    await one;
    expect(w.out.inFlight).toBe(0);
  });

  it('refuses a publish the broker refuses (MQTT 5 reason code), saying why', async () => {
    const w = wire(5);
    const p = w.out.publish('spBv1.0/g/NCMD/e', Buffer.from('x'), { qos: 1 });
    w.out.acked(w.puback(3, 0x87, 'Not authorized'));
    const err = await settled(p);
    expect(err).toBeInstanceOf(PublishError);
    expect(err).toMatchObject({ reason: 'refused', message: expect.stringContaining('Not authorized') });
    // 0x10 (no matching subscribers) is a success.
    const q = w.out.publish('spBv1.0/g/NCMD/e', Buffer.from('y'), { qos: 1 });
    w.out.acked(w.puback(4, 0x10));
    expect(await settled(q)).toBe('resolved');
  });

  it('bounds QoS 1 publishes awaiting their PUBACK, by the broker Receive Maximum too, and queues nothing', async () => {
    const w = wire(4);
    const waiting = Array.from({ length: MAX_OUTBOUND_IN_FLIGHT }, () => w.out.publish('t', Buffer.from('m'), { qos: 1 }));
    expect(await settled(w.out.publish('t', Buffer.from('over'), { qos: 1 }))).toMatchObject({ reason: 'busy' });
    expect(w.sent).toHaveLength(MAX_OUTBOUND_IN_FLIGHT);
    // QoS 0 needs no PUBACK: not bounded by it.
    const zero = w.out.publish('t', Buffer.from('zero'), { qos: 0 });
    w.done.at(-1)!();
    expect(await settled(zero)).toBe('resolved');
    for (const p of w.sent.filter((s) => s.qos === 1)) w.out.acked(w.puback(p.messageId!));
    await Promise.all(waiting);

    const small = wire(5);
    small.out.brokerReceiveMaximum(2);
    void small.out.publish('t', Buffer.from('a'), { qos: 1 });
    void small.out.publish('t', Buffer.from('b'), { qos: 1 });
    expect(await settled(small.out.publish('t', Buffer.from('c'), { qos: 1 }))).toMatchObject({ reason: 'busy' });
  });

  it('skips packet ids still awaiting their PUBACK when the ids wrap', () => {
    const w = wire(4);
    void w.out.publish('t', Buffer.from('held'), { qos: 1 }); // id 3, never acknowledged
    for (let i = 0; i < 65532; i++) {
      void w.out.publish('t', Buffer.from('m'), { qos: 1 });
      w.out.acked(w.puback(w.sent.at(-1)!.messageId!));
    }
    expect(w.sent.at(-1)!.messageId).toBe(65535);
    void w.out.publish('t', Buffer.from('next'), { qos: 1 });
    expect(w.sent.at(-1)!.messageId).toBe(4);
  });

  it('rejects what has not settled when the connection closes, and every later publish', async () => {
    const w = wire(5);
    const zero = w.out.publish('t', Buffer.from('0'), { qos: 0 });
    const one = w.out.publish('t', Buffer.from('1'), { qos: 1 });
    w.out.close('connection closed');
    expect(await settled(zero)).toMatchObject({ reason: 'lost', message: expect.stringContaining('connection closed') });
    expect(await settled(one)).toMatchObject({ reason: 'lost' });
    w.done.forEach((cb) => cb()); // a late write callback changes nothing
    expect(await settled(w.out.publish('t', Buffer.from('2'), { qos: 0 }))).toMatchObject({ reason: 'lost' });
  });

  it('refuses an invalid topic name before writing anything', async () => {
    const w = wire(5);
    expect(await settled(w.out.publish('spBv1.0/+/NCMD/e', Buffer.from('x'), { qos: 0 }))).toMatchObject({ reason: 'refused' });
    expect(await settled(w.out.publish('', Buffer.from('x'), { qos: 1 }))).toMatchObject({ reason: 'refused' });
    expect(w.sent).toEqual([]);
  });
});

describe('OwnEchoes', () => {
  it('recognises each publish once, by topic and bytes, for ttlMs, and keeps at most max', () => {
    let now = 0;
    const echoes = new OwnEchoes(3, 1000, () => now);
    expect(echoes.take('t', Buffer.from('a'))).toBe(false);
    echoes.remember('t', Buffer.from('a'));
    echoes.remember('t', Buffer.from('a'));
    expect(echoes.take('u', Buffer.from('a'))).toBe(false);
    expect(echoes.take('t', Buffer.from('b'))).toBe(false);
    expect(echoes.take('t', Buffer.from('a'))).toBe(true);
    expect(echoes.take('t', Buffer.from('a'))).toBe(true);
    expect(echoes.take('t', Buffer.from('a'))).toBe(false);

    echoes.remember('t', Buffer.from('old'));
    now = 1001;
    expect(echoes.take('t', Buffer.from('old'))).toBe(false);
    expect(echoes.size).toBe(0);

    for (const m of ['1', '2', '3', '4']) echoes.remember('t', Buffer.from(m));
    expect(echoes.size).toBe(3);
    expect(echoes.take('t', Buffer.from('1'))).toBe(false);
    const e = echoes.remember('t', Buffer.from('5'));
    echoes.forget(e);
    expect(echoes.take('t', Buffer.from('5'))).toBe(false);
  });

  it('keeps its own copy of the payload', () => {
    const echoes = new OwnEchoes();
    const payload = Buffer.from('abc');
    echoes.remember('t', payload);
    payload[0] = 0x7a;
    expect(echoes.take('t', Buffer.from('abc'))).toBe(true);
  });
});
