import { describe, it, expect } from 'vitest';
import { PubSubSink, checkLimits, contractAttributes, MAX_MESSAGE_BYTES } from './pubsub-sink.js';
import { createLogger } from '../../core/logger.js';
import type { SpooledMessage } from '../../core/message.js';
import { freePort } from '../../../test/helpers/ports.js';

const msg = (over: Partial<SpooledMessage> = {}): SpooledMessage => ({
  seq: 1,
  messageId: '01JABCDEFGHJKMNPQRSTVWXYZ0',
  topic: 'plant/line-1/temp',
  payload: Buffer.from('21.5'),
  qos: 1,
  retain: false,
  receivedAt: Date.UTC(2026, 4, 6, 7, 8, 9, 10),
  ...over,
});

/** A 127.0.0.1 port with nothing listening (bound, then released). */
function sink(over: Partial<ConstructorParameters<typeof PubSubSink>[0]> = {}) {
  return new PubSubSink({
    projectId: 'demo-project',
    topic: 'projects/demo-project/topics/telemetry',
    maxBatchMessages: 500,
    maxBatchBytes: 5_000_000,
    maxInFlight: 2,
    logger: createLogger('silent'),
    ...over,
  });
}

describe('contractAttributes', () => {
  it('carries exactly the contract attributes', () => {
    expect(contractAttributes(msg({ retain: true, qos: 0 }))).toEqual({
      message_id: '01JABCDEFGHJKMNPQRSTVWXYZ0',
      mqtt_topic: 'plant/line-1/temp',
      mqtt_qos: '0',
      mqtt_retain: 'true',
      received_at: '2026-05-06T07:08:09.010Z',
    });
  });
});

describe('checkLimits', () => {
  it('accepts a message at the limit and rejects one byte more', () => {
    const m = msg();
    const attributeBytes = Object.entries(contractAttributes(m)).reduce((n, [k, v]) => n + Buffer.byteLength(k + v), 0);
    const atLimit = msg({ payload: Buffer.alloc(MAX_MESSAGE_BYTES - attributeBytes) });
    expect(checkLimits(atLimit, contractAttributes(atLimit))).toBeUndefined();
    const over = msg({ payload: Buffer.alloc(MAX_MESSAGE_BYTES - attributeBytes + 1) });
    expect(checkLimits(over, contractAttributes(over))).toMatchObject({ kind: 'rejected', reason: 'too_large' });
  });

  it('counts attribute bytes, not characters', () => {
    const fits = msg({ topic: 'é'.repeat(512) }); // 1,024 bytes
    expect(checkLimits(fits, contractAttributes(fits))).toBeUndefined();
    const long = msg({ topic: 'é'.repeat(512) + 'x' });
    expect(checkLimits(long, contractAttributes(long))).toMatchObject({ kind: 'rejected', reason: 'attribute_too_long' });
  });
});

describe('PubSubSink without a reachable Pub/Sub', () => {
  it('starts at once and answers retryable within publishTimeoutMs', async () => {
    const s = sink({ emulatorHost: `127.0.0.1:${await freePort()}`, publishTimeoutMs: 800 });
    const t0 = Date.now();
    await s.start();
    expect(Date.now() - t0).toBeLessThan(500);
    const outcomes = await s.write([msg(), msg({ seq: 2 })]);
    expect(Date.now() - t0).toBeLessThan(800 + 1_500);
    expect(outcomes.map((o) => o.kind)).toEqual(['retryable', 'retryable']);
    expect(outcomes[0]).toMatchObject({ reason: 'unavailable', health: 'degraded' });
    await s.close();
  });


  it('is ordered, one write at a time, with PUBSUB_ORDERING_KEY=mqtt_topic or when a route sets an ordering key', () => {
    expect(sink().maxInFlight).toBe(2);
    expect(sink({ orderingKey: 'mqtt_topic' }).maxInFlight).toBe(1);
    expect(sink({ routeOrdering: true }).maxInFlight).toBe(1);
    expect(sink({ routeOrdering: true }).isOrdered).toBe(true);
    expect(sink({ orderingKey: 'none', routeOrdering: false }).isOrdered).toBe(false);
  });

  it('throws when written before start', async () => {
    await expect(sink().write([msg()])).rejects.toThrow(/not started/);
  });
});

describe('batch size with routes', () => {
  it('holds a full request per topic the routes publish to, for up to four topics', () => {
    expect(sink().maxBatchMessages).toBe(500);
    expect(sink({ routeTopics: 1 }).maxBatchMessages).toBe(500);
    expect(sink({ routeTopics: 3 }).maxBatchMessages).toBe(1500);
    expect(sink({ routeTopics: 12 }).maxBatchMessages).toBe(2000);
  });
});
