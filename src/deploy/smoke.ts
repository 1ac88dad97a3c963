/**
 * The smoke test after a deploy: publish one uniquely marked message through the deployed broker and wait for
 * it in a verification Pub/Sub subscription, then check it against the contract (ARCHITECTURE §3): the payload
 * bytes unchanged and the attributes message_id, mqtt_topic, mqtt_qos, mqtt_retain, received_at.
 *
 * The message goes to `<prefix>/<marker>` (default prefix mqtt-ingest/smoke), so a verification subscription
 * filtered on that prefix (`mqtt-ingest provision --verification-subscription`) receives nothing else. Smoke
 * messages found there, ours or left by an earlier run, are acknowledged; anything else is left alone.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import mqtt from 'mqtt';
import { v1, type PubSub } from '@google-cloud/pubsub';
import { redactUrl } from '../source/mqtt-source.js';

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

/**
 * `text` without the password of `url` (as written and percent-decoded), for printing an error about a
 * connection to that URL. Text that does not hold it is returned as it is.
 */
export function withoutUrlPassword(text: string, url: string): string {
  let password = '';
  try {
    password = new URL(url).password;
  } catch {
    return text;
  }
  let decoded = password;
  try {
    decoded = decodeURIComponent(password);
  } catch {
    // a malformed escape: only the raw form can appear
  }
  for (const secret of [password, decoded]) if (secret) text = text.split(secret).join('redacted');
  return text;
}

export async function runSmoke(opts: SmokeOptions, pubsub: PubSub, log: (line: string) => void): Promise<SmokeResult> {
  const marker = `smoke-${randomUUID()}`;
  const topic = `${opts.topicPrefix.replace(/\/+$/, '')}/${marker}`;
  const payload = Buffer.from(JSON.stringify({ smoke: marker, sent_at: new Date().toISOString() }));
  const sentAt = Date.now();

  // QoS 1: the PUBACK comes only after the node committed the message to its spool (ARCHITECTURE §2.1).
  const client = await mqtt.connectAsync(opts.broker, {
    clientId: `mqtt-ingest-${marker}`.slice(0, 64),
    clean: true,
    protocolVersion: 4,
    username: opts.username,
    password: opts.password,
    ca: opts.caFile ? readFileSync(opts.caFile) : undefined,
    connectTimeout: 15_000,
    reconnectPeriod: 0,
  });
  try {
    await client.publishAsync(topic, payload, { qos: 1, retain: false });
  } finally {
    await client.endAsync();
  }
  // The URL may carry user:password@ (CI logs keep what is printed): never print it as given.
  log(`published ${marker} to ${topic} via ${redactUrl(opts.broker)}: acknowledged after ${Date.now() - sentAt} ms`);

  const config = await pubsub.getClientConfig();
  const subscriber = new v1.SubscriberClient({ ...config, port: config.port === undefined ? undefined : Number(config.port) });
  const deadline = sentAt + opts.timeoutMs;
  let foreign = 0;
  try {
    while (Date.now() < deadline) {
      let received;
      try {
        const timeout = Math.max(1_000, Math.min(10_000, deadline - Date.now()));
        [received] = await subscriber.pull({ subscription: opts.subscription, maxMessages: 100 }, { timeout, retry: null });
      } catch (err) {
        if ((err as { code?: number }).code === 4) continue; // DEADLINE_EXCEEDED: nothing this round
        throw err;
      }
      const messages = received.receivedMessages ?? [];
      const ackIds: string[] = [];
      let ours: ReceivedMessage | undefined;
      for (const m of messages) {
        const attributes = { ...(m.message?.attributes ?? {}) } as Record<string, string>;
        if (!(attributes.mqtt_topic ?? '').startsWith(`${opts.topicPrefix.replace(/\/+$/, '')}/`)) {
          foreign += 1;
          continue;
        }
        if (m.ackId) ackIds.push(m.ackId);
        if (attributes.mqtt_topic === topic) ours = { data: Buffer.from(m.message?.data ?? new Uint8Array()), attributes };
      }
      if (ackIds.length > 0) await subscriber.acknowledge({ subscription: opts.subscription, ackIds });
      if (ours) {
        const problems = contractProblems(ours, { topic, payload, sentAt, now: Date.now() });
        log(`received ${marker} in ${opts.subscription} after ${Date.now() - sentAt} ms (message_id ${ours.attributes.message_id ?? '?'})`);
        return { ok: problems.length === 0, topic, problems };
      }
      if (messages.length === 0) await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await subscriber.close();
  }
  const hint = foreign > 0 ? `; the subscription also holds ${foreign} non-smoke message(s): give it the smoke filter (mqtt-ingest provision)` : '';
  return {
    ok: false,
    topic,
    problems: [`${marker} did not arrive in ${opts.subscription} within ${Math.round(opts.timeoutMs / 1000)} s${hint}`],
  };
}
