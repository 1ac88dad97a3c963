import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PubSubSink, MAX_MESSAGE_BYTES } from '../src/sinks/pubsub/pubsub-sink.js';
import { createLogger } from '../src/core/logger.js';
import { Metrics } from '../src/core/metrics.js';
import type { SpooledMessage } from '../src/core/message.js';
import { serviceAvailable } from './helpers/skip.js';
import { createTopicAndSubscription, hasPubSubEmulator, pullAll, startPubSubEmulator, type PubSubEmulator } from './helpers/pubsub-emulator.js';

const available = serviceAvailable('Pub/Sub emulator', hasPubSubEmulator(), 'install the Google Cloud CLI with the pubsub emulator component');

const message = (seq: number, over: Partial<SpooledMessage>): SpooledMessage => ({
  seq,
  messageId: `01JPROPS${String(seq).padStart(18, '0')}`,
  topic: `plant/${seq}`,
  payload: Buffer.from('x'),
  qos: 1,
  retain: false,
  receivedAt: Date.UTC(2026, 0, 2, 3, 4, 5),
  ...over,
});

describe.skipIf(!available)('MQTT 5 properties through the Pub/Sub sink, against the emulator', () => {
  let emu: PubSubEmulator;
  beforeAll(async () => {
    emu = await startPubSubEmulator();
  });
  afterAll(async () => {
    await emu?.stop();
  });

  it('delivers every message, with the properties that fit as attributes, and counts the rest', async () => {
    await createTopicAndSubscription(emu.host, emu.projectId, 'props-topic', 'props-sub');
    const metrics = new Metrics({ defaultMetrics: false });
    const sink = new PubSubSink({
      projectId: emu.projectId,
      topic: `projects/${emu.projectId}/topics/props-topic`,
      emulatorHost: emu.host,
      maxBatchMessages: 1000,
      maxBatchBytes: 8 * 1024 * 1024,
      maxInFlight: 2,
      logger: createLogger('silent'),
      metrics,
    });
    await sink.start();
    try {
      const many = Object.fromEntries(Array.from({ length: 120 }, (_, i) => [`p${i}`, String(i)]));
      const batch = [
        message(1, { properties: { userProperties: { ...many, long: 'x'.repeat(1025) }, contentType: 'application/json' } }),
        // Fits alone; with its property attributes it would pass 10 MB: sent without them.
        message(2, { payload: Buffer.alloc(MAX_MESSAGE_BYTES - 200), properties: { userProperties: { big: 'y'.repeat(1000) } } }),
        message(3, { properties: { userProperties: { message_id: 'not the id' } } }),
      ];
      expect((await sink.write(batch)).map((o) => o.kind)).toEqual(['delivered', 'delivered', 'delivered']);
      const got = new Map((await pullAll(emu.host, emu.projectId, 'props-sub', 3, 30_000)).map((r) => [r.attributes.mqtt_topic, r]));
      const first = got.get('plant/1')!.attributes;
      expect(Object.keys(first)).toHaveLength(100);
      expect(first).toMatchObject({ mqtt_content_type: 'application/json', mqtt_user_p0: '0', mqtt_user_p93: '93', message_id: batch[0]!.messageId });
      expect(first.mqtt_user_long).toBeUndefined();
      expect(Object.keys(got.get('plant/2')!.attributes).sort()).toEqual(['message_id', 'mqtt_qos', 'mqtt_retain', 'mqtt_topic', 'received_at']);
      expect(got.get('plant/3')!.attributes).toMatchObject({ message_id: batch[2]!.messageId, mqtt_user_message_id: 'not the id' });
      const counted = (await metrics.propertiesDropped.get()).values.map((v) => [v.labels.reason, v.value]);
      expect(Object.fromEntries(counted)).toEqual({ too_many: 26, value_too_long: 1, message_too_large: 1 });
    } finally {
      await sink.close();
    }
  }, 60_000);
});
