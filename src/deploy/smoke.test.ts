import net from 'node:net';
import { Aedes } from 'aedes';
import { describe, expect, it } from 'vitest';
import { contractProblems, runSmoke, withoutUrlPassword, type SmokeSubscriber } from './smoke.js';
import { ServiceCalls } from './waiting.js';

const topic = 'mqtt-ingest/smoke/smoke-1';
const payload = Buffer.from('{"smoke":"smoke-1"}');
const good = {
  message_id: '01KB3W2Z3V8QK6Y7T1N0G5H2ZC',
  mqtt_topic: topic,
  mqtt_qos: '1',
  mqtt_retain: 'false',
  received_at: '2026-11-29T03:20:01.123Z',
};
const sent = { topic, payload, sentAt: Date.parse('2026-11-29T03:20:00.000Z'), now: Date.parse('2026-11-29T03:20:02.000Z') };

describe('the smoke test contract check', () => {
  it('accepts the message as the node publishes it', () => {
    expect(contractProblems({ data: payload, attributes: good }, sent)).toEqual([]);
  });

  it.each([
    ['payload', { data: Buffer.from('{"smoke":"smoke-2"}') }, 'the payload changed'],
    ['message_id', { attributes: { ...good, message_id: 'abc' } }, 'message_id is "abc", not a ULID'],
    ['mqtt_topic', { attributes: { ...good, mqtt_topic: 'x' } }, 'mqtt_topic is "x"'],
    ['mqtt_qos', { attributes: { ...good, mqtt_qos: '0' } }, 'mqtt_qos is "0", not "1"'],
    ['mqtt_retain', { attributes: { ...good, mqtt_retain: 'true' } }, 'mqtt_retain is "true"'],
    ['received_at format', { attributes: { ...good, received_at: '2026-11-29T03:20:01Z' } }, 'not RFC 3339 UTC with milliseconds'],
    ['received_at time', { attributes: { ...good, received_at: '2026-11-29T02:20:01.123Z' } }, 'more than 5 minutes from the send time'],
    ['a missing attribute', { attributes: { ...good, mqtt_qos: undefined as unknown as string } }, 'mqtt_qos is undefined'],
  ])('names a wrong %s', (_, change, problem) => {
    const msg = { data: payload, attributes: good, ...change };
    const problems = contractProblems(msg, sent);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(problem);
  });
});

describe('the smoke test prints no broker password', () => {
  it('shows the --broker URL with its password redacted', async () => {
    const aedes = await Aedes.createBroker();
    const server = net.createServer((socket) => aedes.handle(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    const lines: string[] = [];
    // The check before publishing finds the subscription empty; the pull after it stops the run right after the
    // publish: the line about it is what this test reads.
    let pulls = 0;
    const subscriber = {
      pull: () => (pulls++ === 0 ? Promise.resolve([{ receivedMessages: [] }]) : Promise.reject(new Error('no Pub/Sub in this test'))),
      acknowledge: () => Promise.resolve([{}]),
      close: () => Promise.resolve(),
    } as unknown as SmokeSubscriber;
    const calls = new ServiceCalls({ say: (l) => lines.push(l), noticeMs: 15_000, deadlineMs: 5_000 });
    try {
      const opts = { broker: `mqtt://ci-user:s3cr%40t-pw@127.0.0.1:${port}`, subscription: 'projects/p/subscriptions/s', topicPrefix: 'mqtt-ingest/smoke', timeoutMs: 5_000 };
      await expect(runSmoke(opts, { subscriber, pubsub: { name: 'Pub/Sub', at: 'test' }, calls, noticeMs: 15_000 }, (l) => lines.push(l))).rejects.toThrow(
        'no Pub/Sub in this test',
      );
    } finally {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    expect(pulls).toBe(2);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`via mqtt://ci-user:[redacted]@127.0.0.1:${port}`);
    expect(lines.join('\n')).not.toMatch(/s3cr/);
  });

  it('removes the URL password, as written and decoded, from an error message', () => {
    const url = 'mqtts://u:p%40ss@broker.example.com:8883';
    expect(withoutUrlPassword('refused for u with p%40ss (p@ss)', url)).toBe('refused for u with [redacted] ([redacted])');
    expect(withoutUrlPassword('connect ECONNREFUSED 10.0.0.1:8883', url)).toBe('connect ECONNREFUSED 10.0.0.1:8883');
    expect(withoutUrlPassword('anything', 'not a url')).toBe('anything');
  });
});

describe("the smoke test's pulls", () => {
  it('pulls again when Pub/Sub cancels a pull (1 CANCELLED), and not on another code', async () => {
    const aedes = await Aedes.createBroker();
    const server = net.createServer((socket) => aedes.handle(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    const grpcError = (code: number, words: string) => Object.assign(new Error(`${code} ${words}`), { code });
    // Before the publish: CANCELLED twice, then an empty answer. After it: CANCELLED, then INTERNAL,
    // which ends the run (no retry on it).
    const answers = [grpcError(1, 'CANCELLED: Call cancelled'), grpcError(1, 'CANCELLED: Call cancelled'), { receivedMessages: [] }, grpcError(1, 'CANCELLED: Call cancelled'), grpcError(13, 'INTERNAL: broken')];
    let pulls = 0;
    const subscriber = {
      pull: () => {
        const a = answers[pulls++];
        return a instanceof Error ? Promise.reject(a) : Promise.resolve([a]);
      },
      acknowledge: () => Promise.resolve([{}]),
      close: () => Promise.resolve(),
    } as unknown as SmokeSubscriber;
    const lines: string[] = [];
    const calls = new ServiceCalls({ say: (l) => lines.push(l), noticeMs: 15_000, deadlineMs: 10_000 });
    try {
      const opts = { broker: `mqtt://127.0.0.1:${port}`, subscription: 'projects/p/subscriptions/s', topicPrefix: 'mqtt-ingest/smoke', timeoutMs: 10_000 };
      await expect(runSmoke(opts, { subscriber, pubsub: { name: 'Pub/Sub', at: 'test' }, calls, noticeMs: 15_000 }, (l) => lines.push(l))).rejects.toThrow('13 INTERNAL: broken');
    } finally {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    expect(pulls).toBe(5);
    // The message was published (the check before it passed on the third pull).
    expect(lines.some((l) => l.startsWith('published smoke-'))).toBe(true);
  });
});
