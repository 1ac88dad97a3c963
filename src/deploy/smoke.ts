/**
 * The smoke test after a deploy: publish one uniquely marked message through the deployed broker and wait for
 * it in a verification Pub/Sub subscription, then check it against the contract (ARCHITECTURE §3): the payload
 * bytes unchanged and the attributes message_id, mqtt_topic, mqtt_qos, mqtt_retain, received_at.
 *
 * The message goes to `<prefix>/<marker>` (default prefix mqtt-ingest/smoke), so a verification subscription
 * filtered on that prefix (`mqtt-ingest provision --verification-subscription`) receives nothing else. Smoke
 * messages found there, ours or left by an earlier run, are acknowledged; anything else is left alone.
 *
 * The subscription is pulled once before anything is published: a subscription that does not exist, or that the
 * caller may not read, stops the test there, instead of leaving a message behind in the node's topic that no
 * smoke test will ever take. A pull is the check because it needs only what the test needs anyway
 * (roles/pubsub.subscriber; subscriptions.get is not in that role). Each call to Pub/Sub and to the broker goes
 * through ServiceCalls (src/deploy/waiting.ts), and the wait for the message says every 15 s that it goes on.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import mqtt from 'mqtt';
import type { protos, v1 } from '@google-cloud/pubsub';
import { IngestError } from '../core/errors.js';
import { redactUrl } from '../core/redact.js';
import { ServiceTimeoutError, type Service, type ServiceCalls } from './waiting.js';

export const SMOKE_TOPIC_PREFIX = 'mqtt-ingest/smoke';
const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const RFC3339_MS_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

export interface SmokeOptions {
  broker: string;
  /** projects/P/subscriptions/S */
  subscription: string;
  topicPrefix: string;
  timeoutMs: number;
  username?: string;
  password?: string;
  /** PEM file of the CA that signed the broker's certificate (mqtts:// with a private CA). */
  caFile?: string;
}

/** The calls the smoke test makes on the verification subscription (a v1.SubscriberClient). */
export type SmokeSubscriber = Pick<v1.SubscriberClient, 'pull' | 'acknowledge' | 'close'>;

/** How the smoke test reaches its services, and how it says that it waits. */
export interface SmokeServices {
  subscriber: SmokeSubscriber;
  /** Where the subscriber's calls go (for messages): Pub/Sub, or an emulator. */
  pubsub: Service;
  calls: ServiceCalls;
  /** How often the wait for the message says so (15 s). */
  noticeMs: number;
  /**
   * Where the test is, for a live progress line: called at each phase with its words (`checking the
   * subscription …`, `waiting for the message on …, 12 s`), which change by themselves as seconds pass.
   */
  status?: (text: () => string) => void;
}

export interface SmokeResult {
  ok: boolean;
  topic: string;
  problems: string[];
}

export interface ReceivedMessage {
  data: Buffer;
  attributes: Record<string, string>;
}

/** What is wrong with the received message, compared with what was sent; empty when it meets the contract. */
export function contractProblems(msg: ReceivedMessage, sent: { topic: string; payload: Buffer; sentAt: number; now: number }): string[] {
  const a = msg.attributes;
  const problems: string[] = [];
  if (!msg.data.equals(sent.payload)) problems.push(`the payload changed: sent ${sent.payload.length} bytes, received ${msg.data.length}`);
  if (!ULID.test(a.message_id ?? '')) problems.push(`message_id is ${JSON.stringify(a.message_id)}, not a ULID`);
  if (a.mqtt_topic !== sent.topic) problems.push(`mqtt_topic is ${JSON.stringify(a.mqtt_topic)}, not ${JSON.stringify(sent.topic)}`);
  if (a.mqtt_qos !== '1') problems.push(`mqtt_qos is ${JSON.stringify(a.mqtt_qos)}, not "1"`);
  if (a.mqtt_retain !== 'false') problems.push(`mqtt_retain is ${JSON.stringify(a.mqtt_retain)}, not "false"`);
  const at = Date.parse(a.received_at ?? '');
  if (!RFC3339_MS_UTC.test(a.received_at ?? '')) problems.push(`received_at is ${JSON.stringify(a.received_at)}, not RFC 3339 UTC with milliseconds`);
  // Clocks of this runner and the node differ a little; minutes off means a wrong clock or an old message.
  else if (at < sent.sentAt - 300_000 || at > sent.now + 300_000) problems.push(`received_at ${a.received_at} is more than 5 minutes from the send time`);
  return problems;
}

export { withoutUrlPassword } from '../core/redact.js';

/** The last path segment of projects/P/subscriptions/S. */
function shortName(subscription: string): string {
  return subscription.slice(subscription.lastIndexOf('/') + 1);
}

function codeOf(err: unknown): unknown {
  return (err as { code?: unknown } | null)?.code;
}

/**
 * The gRPC code a pull is tried again on: CANCELLED. Pub/Sub may reset a stream at any time (the emulator does so
 * under load: RST_STREAM CANCEL, which grpc-js reports as `1 CANCELLED: Call cancelled`), and
 * `@google-cloud/pubsub` retries CANCELLED on its own pulls for that reason; the smoke test's pulls pass
 * `retry: null` (so that `--timeout` bounds them), so they retry it here. Not UNAVAILABLE: that is how grpc-js
 * reports a refused connection, which must fail the test at once (`cannot reach …`, waiting.ts).
 */
const TRANSIENT_PULL_CODES = new Set([1]);
const PULL_RETRY_MS = 250;

/** `pull`, tried again on a transient code until `deadline` (epoch ms); the last error once past it. */
async function pullRetrying<T>(pull: () => Promise<T>, deadline: number): Promise<T> {
  for (;;) {
    try {
      return await pull();
    } catch (err) {
      if (!TRANSIENT_PULL_CODES.has(codeOf(err) as number) || Date.now() + PULL_RETRY_MS >= deadline) throw err;
      await new Promise((r) => setTimeout(r, PULL_RETRY_MS));
    }
  }
}

export async function runSmoke(opts: SmokeOptions, services: SmokeServices, log: (line: string) => void): Promise<SmokeResult> {
  const { subscriber, calls } = services;
  const marker = `smoke-${randomUUID()}`;
  const prefix = `${opts.topicPrefix.replace(/\/+$/, '')}/`;
  const topic = `${prefix}${marker}`;
  const started = Date.now();
  const deadline = started + opts.timeoutMs;
  const left = () => Math.max(1_000, deadline - Date.now());
  let foreign = 0;
  const phase = (words: string) => {
    const since = Date.now();
    services.status?.(() => `${words}, ${Math.floor((Date.now() - since) / 1000)} s`);
  };

  /** Acknowledges the smoke messages among `received` (ours or an earlier run's); returns ours when there. */
  const take = async (received: protos.google.pubsub.v1.IPullResponse) => {
    const ackIds: string[] = [];
    let ours: ReceivedMessage | undefined;
    for (const m of received.receivedMessages ?? []) {
      const attributes = { ...(m.message?.attributes ?? {}) } as Record<string, string>;
      if (!(attributes.mqtt_topic ?? '').startsWith(prefix)) {
        foreign += 1;
        continue;
      }
      if (m.ackId) ackIds.push(m.ackId);
      if (attributes.mqtt_topic === topic) ours = { data: Buffer.from(m.message?.data ?? new Uint8Array()), attributes };
    }
    if (ackIds.length > 0) {
      await calls.call(services.pubsub, `${opts.subscription}: acknowledge`, () => subscriber.acknowledge({ subscription: opts.subscription, ackIds }), left());
    }
    return ours;
  };

  // Before publishing: the subscription must exist and be readable, or the message would be left behind.
  phase(`checking the subscription ${opts.subscription}`);
  try {
    const [received] = await calls.call(
      services.pubsub,
      `${opts.subscription}: pull`,
      () => pullRetrying(() => subscriber.pull({ subscription: opts.subscription, maxMessages: 100, returnImmediately: true }, { timeout: left(), retry: null }), deadline),
      left(),
    );
    await take(received);
  } catch (err) {
    const words = ((err as Error).message ?? String(err)).split('\n')[0];
    if (codeOf(err) === 5) {
      throw new IngestError(
        'SMOKE_FAILED',
        `the subscription ${opts.subscription} does not exist (${words}); nothing was published. ` +
          `Make it with \`mqtt-ingest provision --verification-subscription ${shortName(opts.subscription)}\`, or name an existing one`,
      );
    }
    if (codeOf(err) === 7) {
      throw new IngestError('SMOKE_FAILED', `the caller may not read ${opts.subscription} (${words}); nothing was published. Grant it roles/pubsub.subscriber on that subscription`);
    }
    if (err instanceof ServiceTimeoutError) throw new IngestError('SERVICE_TIMEOUT', `${err.message}; nothing was published`, { cause: err });
    throw new IngestError('SMOKE_FAILED', `could not pull from ${opts.subscription} at ${services.pubsub.name} ${services.pubsub.at} (${words}); nothing was published`);
  }

  const payload = Buffer.from(JSON.stringify({ smoke: marker, sent_at: new Date().toISOString() }));
  const sentAt = Date.now();
  // The URL may carry user:password@ (CI logs keep what is printed): never print it as given.
  const broker: Service = { name: 'the MQTT broker', at: redactUrl(opts.broker), from: '--broker' };
  // QoS 1: the PUBACK comes only after the node committed the message to its spool (ARCHITECTURE §2.1).
  phase(`connecting to ${broker.name} at ${broker.at}`);
  const client = await calls.call(
    broker,
    'connect',
    () =>
      mqtt.connectAsync(opts.broker, {
        clientId: `mqtt-ingest-${marker}`.slice(0, 64),
        clean: true,
        protocolVersion: 4,
        username: opts.username,
        password: opts.password,
        ca: opts.caFile ? readFileSync(opts.caFile) : undefined,
        connectTimeout: 15_000,
        reconnectPeriod: 0,
      }),
    left(),
  );
  let acknowledged = false;
  try {
    // A node whose spool is full holds the PUBACK back (back-pressure): said, and bounded by --timeout.
    phase(`publishing to ${topic}, waiting for its PUBACK`);
    await calls.call(broker, `QoS 1 publish to ${topic}, waiting for its PUBACK`, () => client.publishAsync(topic, payload, { qos: 1, retain: false }), left());
    acknowledged = true;
  } finally {
    // Unacknowledged, the client would wait for the PUBACK before it closes.
    await client.endAsync(!acknowledged);
  }
  log(`published ${marker} to ${topic} via ${broker.at}: acknowledged after ${Date.now() - sentAt} ms`);

  phase(`waiting for the message on ${opts.subscription}`);
  let waited = 0;
  const notice = setInterval(() => {
    waited += services.noticeMs;
    log(`still waiting for ${marker} in ${opts.subscription} after ${Math.round(waited / 1000)} s…`);
  }, services.noticeMs);
  try {
    while (Date.now() < deadline) {
      let received;
      try {
        const timeout = Math.max(1_000, Math.min(10_000, deadline - Date.now()));
        [received] = await pullRetrying(() => subscriber.pull({ subscription: opts.subscription, maxMessages: 100 }, { timeout, retry: null }), deadline);
      } catch (err) {
        if (codeOf(err) === 4) continue; // DEADLINE_EXCEEDED: nothing this round
        throw err;
      }
      const ours = await take(received);
      if (ours) {
        const problems = contractProblems(ours, { topic, payload, sentAt, now: Date.now() });
        log(`received ${marker} in ${opts.subscription} after ${Date.now() - sentAt} ms (message_id ${ours.attributes.message_id ?? '?'})`);
        return { ok: problems.length === 0, topic, problems };
      }
      if ((received.receivedMessages ?? []).length === 0) await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    clearInterval(notice);
  }
  const hint = foreign > 0 ? `; the subscription also holds ${foreign} non-smoke message(s): give it the smoke filter (mqtt-ingest provision)` : '';
  return {
    ok: false,
    topic,
    problems: [`${marker} did not arrive in ${opts.subscription} within ${Math.round(opts.timeoutMs / 1000)} s${hint}`],
  };
}
