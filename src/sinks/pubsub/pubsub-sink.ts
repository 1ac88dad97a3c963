import { PubSub, v1, type CallOptions, type ClientConfig } from '@google-cloud/pubsub';
import { delivered, rejected, retryable, type DeliveryOutcome } from '../../core/outcome.js';
import { withCode } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Metrics } from '../../core/metrics.js';
import type { DeliveryMessage, Sink, SinkDescription } from '../sink.js';
import { classifyPublishError } from './classify.js';
import { isOutgoing, outgoing } from './outgoing.js';
import { HELD_BACK, Publication, type PublishRequestMessage } from './publication.js';
import type { PropertyDrops } from './property-attributes.js';
import { RawPublish } from './raw-publish.js';

export { checkLimits, contractAttributes, MAX_ATTRIBUTE_VALUE_BYTES, MAX_MESSAGE_BYTES } from './outgoing.js';

/**
 * Pub/Sub sink (contract §3): data = the MQTT payload bytes unchanged; attributes message_id, mqtt_topic,
 * mqtt_qos, mqtt_retain ("true"/"false"), received_at (RFC 3339 UTC, ms), and the MQTT 5 properties as
 * mqtt_content_type and mqtt_user_<name> (property-attributes.ts). One outcome per message.
 *
 * A routed message (RouteTargets.pubsub, set by the routes) goes to its route's topic instead, with the
 * route's data, the route's attributes added to the contract's (before the properties) and the route's
 * ordering key (outgoing.ts). One write may so name several topics: each gets its own requests, and a failure
 * is told with the topic it happened on, so a missing route topic holds up only its own messages.
 */
export interface PubSubSinkOptions {
  /** The project the client works in (the topic's path names its own). */
  projectId: string;
  /** The topic's full path, `projects/P/topics/T`, as the configuration builds it (sinks/pubsub/config.ts). */
  topic: string;
  /** host:port of the emulator (config PUBSUB_EMULATOR_HOST); used explicitly, over an insecure channel. */
  emulatorHost?: string;
  maxBatchMessages: number;
  maxBatchBytes: number;
  maxInFlight: number;
  /**
   * `mqtt_topic`: the MQTT topic is each message's ordering key. Publishes then go one at a time, in spool
   * order, and stop at the first failure, so that no message is published before an earlier one of its key.
   */
  orderingKey?: 'none' | 'mqtt_topic';
  /**
   * Some route of the routes file sets an ordering key (RouteTargets.pubsub.orderingKey): publishes then go one
   * at a time and in order, as with `mqtt_topic`.
   */
  routeOrdering?: boolean;
  /**
   * How many topics the routes publish to (the sink's own included when unmatched messages go raw). A batch
   * then holds up to `maxBatchMessages` per topic, for at most MAX_TOPICS_PER_BATCH topics, so that each topic's
   * request stays near full: a Publish RPC costs the node about as much as 300 messages' encoding, and three
   * topics sharing one batch of 1,000 made three small requests.
   */
  routeTopics?: number;
  logger: Logger;
  /** Counts the properties left out of messages (mqtt_ingest_properties_dropped_total). */
  metrics?: Pick<Metrics, 'propertiesDropped'>;
  /** Upper bound for one Publish RPC, the client's own retries included. Default 60 s. */
  publishTimeoutMs?: number;
}

/**
 * The client makes one attempt per publish and retries nothing itself: the dispatcher owns retries (with
 * the node's backoff, capped by RETRY_MAX_DELAY_MS), so every failed attempt is counted in
 * mqtt_ingest_delivery_failures_total and shown in readiness at once, instead of being hidden inside up to
 * a minute of the library's own retries.
 */
const CLIENT_RETRY_CODES: number[] = [];

/** Where a route's topic is set, for the details of a failure on it (classify.ts). */
const ROUTE_TOPIC_SETTING = "the route's pubsub.topic in ROUTES_FILE";

/** A batch holds requests for at most this many topics' worth of messages (bounding its memory). */
const MAX_TOPICS_PER_BATCH = 4;

/**
 * An initialised Publish client, and its stub fed requests encoded by hand (raw-publish.ts, publish-encoder.ts:
 * the library's serialiser was a fifth of the node's CPU on delivery); `raw` is undefined when the stub is not
 * one it can use, and the library's method is called instead.
 */
interface Connection {
  client: v1.PublisherClient;
  raw?: RawPublish;
}

export class PubSubSink implements Sink {
  readonly name = 'pubsub' as const;
  readonly maxBatchMessages: number;
  readonly maxBatchBytes: number;
  readonly maxInFlight: number;
  readonly describe: SinkDescription;

  private readonly opts: PubSubSinkOptions;
  private readonly logger: Logger;
  private readonly publishTimeoutMs: number;
  private readonly ordered: boolean;
  private client?: PubSub;
  /** The generated client's settings (endpoint, emulator, credentials), from the PubSub object at start. */
  private clientConfig?: ConstructorParameters<typeof v1.PublisherClient>[0];
  /**
   * The generated Publish RPC client, fed whole batches, once its credentials are loaded (see connect). The
   * library's Topic.publishMessage batcher is not used: the dispatcher already hands over batches from the
   * spool and owns retries, and the batcher's per-message work (a promise and a callback per message, a deep
   * copy of every request to substitute a project-id placeholder) cost about a fifth of the node's CPU when
   * draining a backlog.
   */
  private publisher?: Connection;
  /** A client being made ready (its credentials loaded); the writes in flight wait for the same one. */
  private connecting?: Promise<Connection>;
  private closed = false;

  constructor(opts: PubSubSinkOptions) {
    this.opts = opts;
    this.logger = opts.logger;
    this.publishTimeoutMs = opts.publishTimeoutMs ?? 60_000;
    this.maxBatchMessages = opts.maxBatchMessages * Math.max(1, Math.min(opts.routeTopics ?? 1, MAX_TOPICS_PER_BATCH));
    this.maxBatchBytes = opts.maxBatchBytes;
    this.ordered = opts.orderingKey === 'mqtt_topic' || opts.routeOrdering === true;
    // With ordering keys, a second publish in flight could land before an earlier one that fails.
    this.maxInFlight = this.ordered ? 1 : opts.maxInFlight;
    this.describe = {
      context: { topic: this.topicName },
      words: {
        failing: 'Pub/Sub publishing is failing',
        degraded: 'Pub/Sub publishing failed; the spool keeps the messages and the dispatcher retries',
        recovered: 'Pub/Sub publishing recovered',
        action: `publishing to ${this.topicName}`,
      },
    };
  }

  /** The topic as Pub/Sub names it. */
  get topicName(): string {
    return this.opts.topic;
  }

  /**
   * Prepares the client settings without touching the network: the Publish client is made (and loads
   * Application Default Credentials) on the first write, so an unreachable Pub/Sub or missing credentials
   * cannot fail or block the start. We do not probe the topic here: topics.get needs more than
   * roles/pubsub.publisher, so a probe would report a false permission problem; the first write shows the truth.
   */
  async start(): Promise<void> {
    if (this.client) return;
    this.closed = false;
    const config: ClientConfig = { projectId: this.opts.projectId };
    if (this.opts.emulatorHost) {
      // apiEndpoint + emulatorMode selects an insecure channel and no credentials. Without it the library
      // would still read process.env.PUBSUB_EMULATOR_HOST itself; passing the configured value keeps the
      // config module the single source.
      config.apiEndpoint = this.opts.emulatorHost;
      config.emulatorMode = true;
    }
    this.client = new PubSub(config);
    // The documented way to reach a generated client with the PubSub object's endpoint, emulator and
    // credential settings (PubSub.getSchemaClient does the same). With projectId given this reads nothing
    // from the network.
    this.clientConfig = (await this.client.getClientConfig()) as ConstructorParameters<typeof v1.PublisherClient>[0];
  }

  /**
   * The Publish client, made and initialised (credentials loaded, gRPC stub created) before its first call;
   * when that fails, the error is the write's and the next write makes a new client.
   *
   * Library facts (@google-cloud/pubsub 5.3.1, build/src/v1/publisher_client.js:423): publish() starts with
   * `this.initialize().catch(err => { throw err; })`, a promise nobody awaits. When initialize() rejects
   * (google-gax 5 grpc.js createStub → _getCredentials → google-auth-library GoogleAuth.getClient →
   * getApplicationDefaultAsync: "Could not load the default credentials", or "The file at … does not exist"
   * for a GOOGLE_APPLICATION_CREDENTIALS that names no file), that re-thrown error is an unhandled rejection,
   * which ends the process, while the same error also fails the call. And initialize() keeps its rejected
   * promise (publisherStub) for good, so that client would never load credentials again. Hence: await
   * initialize() here, never call a client whose initialisation failed, and drop it for a fresh one.
   */
  private connect(): Promise<Connection> {
    if (this.publisher) return Promise.resolve(this.publisher);
    const config = this.clientConfig;
    if (!config || this.closed) return Promise.reject(new Error('the Pub/Sub sink is not started (or already closed)'));
    this.connecting ??= (async () => {
      const publisher = new v1.PublisherClient(config);
      // Rejects without side effects when the credentials cannot be loaded: no channel exists yet, so the
      // failed client holds nothing to close.
      await publisher.initialize();
      const raw = await RawPublish.of(publisher);
      if (this.closed) {
        await publisher.close().catch(() => undefined);
        throw new Error('the Pub/Sub sink was closed during the publish');
      }
      this.publisher = { client: publisher, raw };
      return this.publisher;
    })().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  /**
   * Our dispatcher owns retries with its own backoff and the spool holds the messages meanwhile, so the
   * client gives up within publishTimeoutMs (its own retries included) instead of holding the batch's lease.
   * Library surprise (google-gax 5 CallSettings.merge): the generated Publish config says a 600 s retry
   * budget, but every call clamps it to the method timeout (60 s), and does so by mutating the client-wide
   * default retry object, so the last caller's `timeout` becomes everyone's budget. Each call therefore
   * gets its own backoff settings (a fresh object gax does not mutate) as well as the timeout, with no
   * retry codes (see CLIENT_RETRY_CODES).
   */
  private callOptions(): CallOptions {
    const t = this.publishTimeoutMs;
    return {
      // google-gax surprise: the generated Publish method is a "bundling" call. Unless told otherwise it
      // queues each request for up to 10 ms to merge it with others, after protobuf-encoding every
      // message once just to measure it. Our batches are already whole requests (the library's own
      // publisher passes the same flag).
      isBundling: false,
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
    };
  }

  private readonly countDrops = (drops: PropertyDrops): void => {
    for (const reason in drops) this.opts.metrics?.propertiesDropped.inc({ sink: 'pubsub', reason }, drops[reason as keyof PropertyDrops]);
  };

  async write(batch: DeliveryMessage[]): Promise<DeliveryOutcome[]> {
    if (!this.clientConfig || this.closed) throw new Error('the Pub/Sub sink is not started (or already closed)');
    const outcomes: DeliveryOutcome[] = new Array(batch.length);
    const sendable: number[] = [];
    const messages: PublishRequestMessage[] = [];
    const sizes: number[] = [];
    const topics: string[] = [];
    const options = { topic: this.topicName, mqttTopicKey: this.opts.orderingKey === 'mqtt_topic', countDrops: this.countDrops };
    for (let i = 0; i < batch.length; i++) {
      const out = outgoing(batch[i]!, options);
      if (!isOutgoing(out)) {
        outcomes[i] = out;
        continue;
      }
      sendable.push(i);
      messages.push(out.message);
      sizes.push(out.size);
      topics.push(out.topic);
    }

    const results = await new Publication(this, messages, sizes, topics).run();
    results.forEach((result, j) => {
      const index = sendable[j]!;
      if (result === undefined) {
        outcomes[index] = delivered;
        return;
      }
      if (result === HELD_BACK) {
        outcomes[index] = retryable('held_back', 'not sent: an earlier message of the same write failed, and ordering keys keep the order');
        return;
      }
      const cls = this.classify(result, topics[j]!);
      // A refused (invalid) message is the message's problem, not the destination's: it carries no health.
      outcomes[index] = cls.kind === 'invalid' ? rejected(cls.reason, cls.detail) : retryable(cls.reason, cls.detail, cls.kind);
    });
    this.logRejections(batch, outcomes);
    return outcomes;
  }

  /** One Publish RPC to `topic` (default: the sink's own): undefined when Pub/Sub took every message, else its error. */
  async publishRequest(messages: PublishRequestMessage[], topic = this.topicName): Promise<unknown> {
    let publisher: Connection | undefined;
    try {
      publisher = await this.connect();
      if (publisher.raw) await publisher.raw.publish(topic, messages, this.publishTimeoutMs);
      else await publisher.client.publish({ topic, messages }, this.callOptions());
      return undefined;
    } catch (err) {
      const error = err ?? new Error('publish failed');
      if (publisher) this.retireOnCredentialsFailure(publisher, error, topic);
      return error;
    }
  }

  /** A publish error in the words of the topic it failed on; a route's topic is set in ROUTES_FILE, not PUBSUB_TOPIC. */
  private classify(err: unknown, topic: string) {
    return classifyPublishError(err, topic, topic === this.topicName ? undefined : ROUTE_TOPIC_SETTING);
  }

  /**
   * google-auth-library keeps the first credential a client loaded for the client's life (GoogleAuth
   * `cachedCredential`): after the credentials were refused (a revoked refresh token, a replaced key file),
   * only a new client reads them again. The next write makes one (connect).
   */
  private retireOnCredentialsFailure(publisher: Connection, err: unknown, topic: string): void {
    const cls = this.classify(err, topic);
    if (cls.kind !== 'failing' || !cls.credentials || this.publisher !== publisher) return;
    this.publisher = undefined;
    publisher.client.close().catch(() => undefined);
  }

  /** True when an error is Pub/Sub refusing a request for its content (INVALID_ARGUMENT about a message). */
  isRefusal(err: unknown): boolean {
    return classifyPublishError(err, this.topicName).kind === 'invalid';
  }

  get isOrdered(): boolean {
    return this.ordered;
  }

  async close(): Promise<void> {
    // A client still loading its credentials closes itself when it is done (connect).
    this.closed = true;
    const { client, publisher } = this;
    this.client = this.publisher = this.clientConfig = undefined;
    try {
      await publisher?.client.close();
    } finally {
      await client?.close();
    }
  }

  private logRejections(batch: DeliveryMessage[], outcomes: DeliveryOutcome[]): void {
    outcomes.forEach((o, i) => {
      if (o.kind !== 'rejected') return;
      const msg = batch[i]!;
      const route = msg.routed?.pubsub ? { route: msg.routed.route, topic: msg.routed.pubsub.topic } : {};
      this.logger.warn(
        withCode('PUBSUB_MESSAGE_REFUSED', { sink: this.name, messageId: msg.messageId, mqttTopic: msg.topic.slice(0, 200), ...route, reason: o.reason, detail: o.detail }),
        'Pub/Sub cannot take this message; it will be dead-lettered',
      );
    });
  }
}
