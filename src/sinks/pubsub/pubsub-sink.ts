import { PubSub, type ClientConfig, type PublishOptions, type Topic } from '@google-cloud/pubsub';
import { rfc3339, type SpooledMessage } from '../../core/message.js';
import { delivered, rejected, retryable, type DeliveryOutcome } from '../../core/outcome.js';
import { systemClock, type Clock } from '../../core/clock.js';
import { IngestError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Sink, SinkStatus } from '../sink.js';
import { PUBSUB_TOPIC_NAME } from '../../config/schema.js';
import { SinkHealth } from '../shared/sink-health.js';
import { classifyPublishError, GrpcStatus, type PublishErrorClass } from './classify.js';

/**
 * Pub/Sub sink (contract §3): data = the MQTT payload bytes unchanged; attributes message_id, mqtt_topic,
 * mqtt_qos, mqtt_retain ("true"/"false"), received_at (RFC 3339 UTC, ms). One outcome per message.
 */
export interface PubSubSinkOptions {
  projectId: string;
  /** A bare topic id, or projects/P/topics/T (then used as given, whatever projectId says). */
  topic: string;
  /** host:port of the emulator (config PUBSUB_EMULATOR_HOST); used explicitly, over an insecure channel. */
  emulatorHost?: string;
  maxBatchMessages: number;
  maxBatchBytes: number;
  maxInFlight: number;
  logger: Logger;
  /** Upper bound for one publish, the client's own retries included. Default 60 s. */
  publishTimeoutMs?: number;
  clock?: Clock;
}

/** Pub/Sub's limits (cloud.google.com/pubsub/quotas#resource_limits): 10 MB per message, 1,024 bytes per attribute value. */
export const MAX_MESSAGE_BYTES = 10_000_000;
export const MAX_ATTRIBUTE_VALUE_BYTES = 1024;
/** The client library refuses to batch more than these into one Publish RPC (publisher BATCH_LIMITS). */
const LIBRARY_MAX_BATCH_MESSAGES = 1000;
const LIBRARY_MAX_BATCH_BYTES = 9 * 1024 * 1024;
/**
 * The client makes one attempt per publish and retries nothing itself: the dispatcher owns retries (with
 * the node's backoff, capped by RETRY_MAX_DELAY_MS), so every failed attempt is counted in
 * mqtt_ingest_delivery_failures_total and shown in readiness at once, instead of being hidden inside up to
 * a minute of the library's own retries.
 */
const CLIENT_RETRY_CODES: number[] = [];

/** The contract's attributes for one message. */
export function contractAttributes(msg: SpooledMessage): Record<string, string> {
  return {
    message_id: msg.messageId,
    mqtt_topic: msg.topic,
    mqtt_qos: String(msg.qos),
    mqtt_retain: msg.retain ? 'true' : 'false',
    received_at: rfc3339(msg.receivedAt),
  };
}

/**
 * A rejection when the message breaks one of Pub/Sub's limits, else undefined. Checked before publishing so
 * one bad message is dead-lettered alone instead of failing the RPC it would share with its neighbours. The
 * emulator checks neither limit (it accepts 1,025-byte attributes, and a request over its 11,000,000-byte
 * gRPC limit hangs until the deadline), so only this check keeps tests honest.
 */
export function checkLimits(msg: SpooledMessage, attributes: Record<string, string>): DeliveryOutcome | undefined {
  // Sized as the client library sizes a message (calculateMessageSize): data plus each key and value.
  let attributeBytes = 0;
  for (const [key, value] of Object.entries(attributes)) {
    const valueBytes = Buffer.byteLength(value);
    if (valueBytes > MAX_ATTRIBUTE_VALUE_BYTES) {
      return rejected(
        'attribute_too_long',
        `attribute ${key} is ${valueBytes} bytes; Pub/Sub allows ${MAX_ATTRIBUTE_VALUE_BYTES} (an MQTT topic that long cannot be an attribute)`,
      );
    }
    attributeBytes += Buffer.byteLength(key) + valueBytes;
  }
  const size = msg.payload.length + attributeBytes;
  if (size > MAX_MESSAGE_BYTES) {
    return rejected(
      'too_large',
      `message is ${size} bytes (payload ${msg.payload.length} + attributes ${attributeBytes}); Pub/Sub allows ${MAX_MESSAGE_BYTES}`,
    );
  }
  return undefined;
}

export class PubSubSink implements Sink {
  readonly name = 'pubsub' as const;
  readonly maxBatchMessages: number;
  readonly maxBatchBytes: number;
  readonly maxInFlight: number;

  private readonly opts: PubSubSinkOptions;
  private readonly logger: Logger;
  private readonly health: SinkHealth;
  private readonly publishTimeoutMs: number;
  private client?: PubSub;
  /** Batches messages: one write becomes ceil(n / 1000) Publish RPCs or fewer per 9 MiB. */
  private topic?: Topic;
  /** One message per RPC: used only to find which messages of a refused batch the server objects to. */
  private isolatingTopic?: Topic;

  constructor(opts: PubSubSinkOptions) {
    this.opts = opts;
    this.logger = opts.logger;
    this.publishTimeoutMs = opts.publishTimeoutMs ?? 60_000;
    this.maxBatchMessages = opts.maxBatchMessages;
    this.maxBatchBytes = opts.maxBatchBytes;
    this.maxInFlight = opts.maxInFlight;
    this.health = new SinkHealth({
      logger: opts.logger,
      clock: opts.clock ?? systemClock,
      context: { sink: this.name, topic: this.topicName },
      recovered: 'Pub/Sub publishing recovered',
      failing: (detail) => `Pub/Sub publishing is failing: ${detail}`,
      degraded: 'Pub/Sub publishing failed; the spool keeps the messages and the dispatcher retries',
      degradedDetail: (reason) => `publishing to ${this.topicName} failed (${reason}); the dispatcher retries with backoff`,
    });
  }

  /** The topic as Pub/Sub names it. */
  get topicName(): string {
    return this.opts.topic.includes('/') ? this.opts.topic : `projects/${this.opts.projectId}/topics/${this.opts.topic}`;
  }

  /**
   * Creates the client without touching the network: the library connects (and loads Application Default
   * Credentials) lazily on the first publish, so an unreachable Pub/Sub cannot fail or block the start.
   * We do not probe the topic here: topics.get needs more than roles/pubsub.publisher, so a probe would
   * report a false permission problem; the first write shows the truth.
   */
  async start(): Promise<void> {
    if (this.client) return;
    const topicId = this.topicName.split('/').at(-1) ?? '';
    if (!/^projects\/[^/]+\/topics\/[^/]+$/.test(this.topicName) || !PUBSUB_TOPIC_NAME.test(topicId)) {
      throw new IngestError('SINK_START_FAILED', `PUBSUB_TOPIC ${this.opts.topic} is not a valid Pub/Sub topic name`, {
        context: { sink: this.name, topic: this.opts.topic },
      });
    }
    const config: ClientConfig = { projectId: this.opts.projectId };
    if (this.opts.emulatorHost) {
      // apiEndpoint + emulatorMode selects an insecure channel and no credentials. Without it the library
      // would still read process.env.PUBSUB_EMULATOR_HOST itself; passing the configured value keeps the
      // config module the single source.
      config.apiEndpoint = this.opts.emulatorHost;
      config.emulatorMode = true;
    }
    this.client = new PubSub(config);
    this.topic = this.client.topic(this.topicName, this.publishOptions(this.maxBatchMessages, this.maxBatchBytes));
    this.isolatingTopic = this.client.topic(this.topicName, this.publishOptions(1, LIBRARY_MAX_BATCH_BYTES));
  }

  /**
   * Our dispatcher owns retries with its own backoff and the spool holds the messages meanwhile, so the
   * client gives up within publishTimeoutMs (its own retries included) instead of holding the batch's lease.
   * Library surprises (google-gax 5 CallSettings.merge): the generated Publish config says a 600 s retry
   * budget, but every call clamps it to the method timeout (60 s), and does so by mutating the client-wide
   * default retry object, so the last caller's `timeout` becomes everyone's budget. We pass our own
   * backoff settings (a fresh object gax does not mutate) as well as the timeout, with no retry codes
   * (see CLIENT_RETRY_CODES).
   */
  private publishOptions(maxMessages: number, maxBytes: number): PublishOptions {
    const t = this.publishTimeoutMs;
    return {
      batching: {
        maxMessages: Math.max(1, Math.min(maxMessages, LIBRARY_MAX_BATCH_MESSAGES)),
        maxBytes: Math.max(1, Math.min(maxBytes, LIBRARY_MAX_BATCH_BYTES)),
        // write() adds its whole batch synchronously, so this timer fires once all messages are queued and
        // sends the last partial batch. We do not call topic.flush(): each flush whose publish fails leaves
        // a 'drain' listener behind on the long-lived queue (a leak and a MaxListenersExceededWarning after
        // ten failed writes during an outage).
        maxMilliseconds: 1,
      },
      gaxOpts: {
        timeout: t,
        retry: {
          retryCodes: CLIENT_RETRY_CODES,
          backoffSettings: {
            initialRetryDelayMillis: 100,
            retryDelayMultiplier: 2,
            maxRetryDelayMillis: Math.max(100, Math.min(5_000, Math.floor(t / 4))),
            initialRpcTimeoutMillis: t,
            rpcTimeoutMultiplier: 1,
            maxRpcTimeoutMillis: t,
            totalTimeoutMillis: t,
          },
        },
      },
    };
  }

  async write(batch: SpooledMessage[]): Promise<DeliveryOutcome[]> {
    if (!this.topic || !this.isolatingTopic) throw new Error('the Pub/Sub sink is not started (or already closed)');
    const outcomes: DeliveryOutcome[] = new Array(batch.length);
    const sendable: number[] = [];
    const messages: { data: Buffer; attributes: Record<string, string> }[] = [];
    batch.forEach((msg, i) => {
      const attributes = contractAttributes(msg);
      const problem = checkLimits(msg, attributes);
      if (problem) outcomes[i] = problem;
      else {
        sendable.push(i);
        messages.push({ data: msg.payload, attributes });
      }
    });

    const settled = await publishAll(this.topic, messages);
    const failures: { index: number; message: (typeof messages)[number]; cls: PublishErrorClass }[] = [];
    settled.forEach((result, j) => {
      const index = sendable[j]!;
      if (result.status === 'fulfilled') outcomes[index] = delivered;
      else failures.push({ index, message: messages[j]!, cls: classifyPublishError(result.reason, this.topicName) });
    });

    // INVALID_ARGUMENT refuses a whole RPC. When it hit several messages, publish each alone to learn
    // which ones the server objects to (a failed item in a batch is retried alone, ARCHITECTURE §5).
    const invalid = failures.filter((f) => f.cls.kind === 'invalid');
    if (invalid.length > 1) {
      const again = await publishAll(this.isolatingTopic, invalid.map((f) => f.message));
      again.forEach((result, k) => {
        const f = invalid[k]!;
        if (result.status === 'fulfilled') outcomes[f.index] = delivered;
        else f.cls = classifyPublishError(result.reason, this.topicName);
      });
    }

    // A refused (invalid) message is the message's problem, not the sink's: it never becomes `worst`.
    let worst: Exclude<PublishErrorClass, { kind: 'invalid' }> | undefined;
    for (const { index, cls } of failures) {
      if (outcomes[index]) continue;
      if (cls.kind === 'invalid') outcomes[index] = rejected(cls.reason, cls.detail);
      else {
        outcomes[index] = retryable(cls.reason, cls.detail);
        if (!worst || (cls.kind === 'failing' && worst.kind !== 'failing')) worst = cls;
      }
    }
    this.logRejections(batch, outcomes);
    this.health.record(worst, outcomes.some((o) => o.kind === 'delivered'), { failed: failures.length });
    return outcomes;
  }

  status(): SinkStatus {
    return this.health.status();
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = this.topic = this.isolatingTopic = undefined;
    await client?.close();
  }

  private logRejections(batch: SpooledMessage[], outcomes: DeliveryOutcome[]): void {
    outcomes.forEach((o, i) => {
      if (o.kind !== 'rejected') return;
      const msg = batch[i]!;
      this.logger.warn(
        { sink: this.name, messageId: msg.messageId, mqttTopic: msg.topic.slice(0, 200), reason: o.reason, detail: o.detail },
        'Pub/Sub cannot take this message; it will be dead-lettered',
      );
    });
  }
}

/**
 * Queues every message on the topic's batching publisher and settles each one. A synchronous throw from
 * publishMessage (it validates data and attribute types) becomes that message's rejection.
 */
function publishAll(
  topic: Topic,
  messages: { data: Buffer; attributes: Record<string, string> }[],
): Promise<PromiseSettledResult<string>[]> {
  return Promise.allSettled(
    messages.map((m) => {
      try {
        return topic.publishMessage(m);
      } catch (err) {
        return Promise.reject(err);
      }
    }),
  );
}
