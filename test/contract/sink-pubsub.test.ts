import { afterAll, beforeAll, describe } from 'vitest';
import { createLogger } from '../../src/core/logger.js';
import { MAX_MESSAGE_BYTES, PubSubSink } from '../../src/sinks/pubsub/pubsub-sink.js';
import { freePort } from '../helpers/ports.js';
import { createTopicAndSubscription, hasPubSubEmulator, pullAll, startPubSubEmulator, type PubSubEmulator } from '../helpers/pubsub-emulator.js';
import { serviceAvailable } from '../helpers/skip.js';
import { sinkContract } from './sink-contract.js';

const available = serviceAvailable('Pub/Sub emulator', hasPubSubEmulator(), 'install the Google Cloud CLI with the pubsub emulator component');

describe.skipIf(!available)('Pub/Sub sink contract (the Pub/Sub emulator)', () => {
  let emu: PubSubEmulator;
  beforeAll(async () => {
    emu = await startPubSubEmulator();
  });
  afterAll(async () => {
    await emu?.stop();
  });

  let topics = 0;
  const sink = (topic: string, emulatorHost = emu.host) =>
    new PubSubSink({
      projectId: emu.projectId,
      topic: `projects/${emu.projectId}/topics/${topic}`,
      emulatorHost,
      maxBatchMessages: 1000,
      maxBatchBytes: 8 * 1024 * 1024,
      maxInFlight: 2,
      publishTimeoutMs: 1_000,
      logger: createLogger('silent'),
    });

  sinkContract({
    keepsOrder: false,
    async working() {
      topics += 1;
      const topic = `contract-${topics}`;
      await createTopicAndSubscription(emu.host, emu.projectId, topic, `${topic}-sub`);
      return {
        sink: sink(topic),
        // Waiting for nothing still pulls for a second, to see that nothing came.
        stored: async (count) =>
          (await pullAll(emu.host, emu.projectId, `${topic}-sub`, Math.max(count, 1), count === 0 ? 1_000 : 15_000)).map((r) => r.attributes.message_id!),
      };
    },
    refused: (m) => ({ ...m, payload: Buffer.alloc(MAX_MESSAGE_BYTES + 1, 1) }),
    failures: [
      {
        what: 'Pub/Sub unreachable',
        sink: async () => sink('contract-unreachable', `127.0.0.1:${await freePort()}`),
        state: 'degraded',
        reason: /unavailable|deadline_exceeded/,
      },
      {
        what: 'the topic missing',
        sink: async () => sink('contract-no-such-topic'),
        state: 'failing',
        reason: /topic_not_found/,
      },
    ],
  });
});
