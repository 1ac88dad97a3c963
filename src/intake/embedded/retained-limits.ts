import type { Aedes, PublishPacket } from 'aedes';
import type { BrokerMetrics, RetainedRefusalReason } from '../broker-metrics.js';
import type { EmbeddedLimits } from '../security/policy.js';
import type { RateLimitedWarnings } from './inbound-rejections.js';

/** What to do with one retained message the broker is about to store. */
export type RetainedDecision =
  /** Keep it (a new topic, a replacement within the limits, or a deletion). */
  | { keep: true }
  /** Do not keep it; `dropOld` when a message retained earlier on the topic must be deleted, since it is no longer the latest. */
  | { keep: false; reason: RetainedRefusalReason; dropOld: boolean };

/**
 * Counts the retained messages the embedded broker keeps, by topic, and decides which new ones it may keep under
 * MQTT_MAX_RETAINED_MESSAGES and MQTT_MAX_RETAINED_BYTES. It mirrors Aedes's memory store exactly (a retained
 * publish with a payload sets the topic's message, one with an empty payload deletes it: MQTT-3.3.1-10, -11), so
 * it must see every store and nothing else.
 *
 * A message's size is its topic's UTF-8 bytes plus its payload's. A deletion always passes and frees its topic. A
 * replacement counts only the difference in size. A message over a limit is not kept; if its topic held an older
 * retained message, that one is deleted too: it is no longer the latest value, and a subscriber had better get
 * none than a stale one.
 */
export class RetainedLimits {
  private readonly sizes = new Map<string, number>();
  private total = 0;

  constructor(private readonly o: { maxMessages: number; maxBytes: number }) {}

  get messages(): number {
    return this.sizes.size;
  }

  get bytes(): number {
    return this.total;
  }

  /** Decides for a retained message of `topic` with `payloadBytes` (0: a deletion), and counts what is kept. */
  admit(topic: string, payloadBytes: number): RetainedDecision {
    const old = this.sizes.get(topic);
    if (payloadBytes === 0) {
      this.forget(topic, old);
      return { keep: true };
    }
    const size = Buffer.byteLength(topic, 'utf8') + payloadBytes;
    if (old === undefined && this.sizes.size + 1 > this.o.maxMessages) return { keep: false, reason: 'max_messages', dropOld: false };
    if (this.total - (old ?? 0) + size > this.o.maxBytes) {
      this.forget(topic, old);
      return { keep: false, reason: 'max_bytes', dropOld: old !== undefined };
    }
    this.sizes.set(topic, size);
    this.total += size - (old ?? 0);
    return { keep: true };
  }

  private forget(topic: string, old: number | undefined): void {
    if (old === undefined) return;
    this.sizes.delete(topic);
    this.total -= old;
  }
}

/** The part of Aedes's persistence (broker-store/, or aedes-persistence's memory store) that keeps retained messages. */
interface RetainedStore {
  storeRetained(packet: PublishPacket): Promise<void>;
}

/** Client input in log lines is cut to this length (a topic may be 64 KiB). */
const MAX_LOGGED_TOPIC = 200;

/**
 * Holds Aedes's retained messages to MQTT_MAX_RETAINED_MESSAGES and MQTT_MAX_RETAINED_BYTES. Every retained
 * publish, a client's or a will, reaches the persistence's storeRetained (aedes.js, the first step of publish),
 * which runs after authorizePublish, so after the spool commit and, for QoS 1, after the PUBACK. A message over a
 * limit is therefore already stored and acknowledged; it is still delivered to the subscribers connected now,
 * but not kept for later ones, and an older retained message of its topic is deleted (RetainedLimits above).
 * Kept payloads are copied: mqtt-packet's payload is a view into the socket read, which it would keep whole.
 */
export function limitRetained(
  aedes: Aedes,
  o: { limits: EmbeddedLimits; retained: RetainedLimits; metrics: BrokerMetrics; warnings: RateLimitedWarnings<RetainedRefusalReason> },
): void {
  const persistence = (aedes as unknown as { persistence?: RetainedStore }).persistence;
  if (typeof persistence?.storeRetained !== 'function') {
    throw new Error('the Aedes persistence has no storeRetained: cannot limit retained messages');
  }
  const store = persistence.storeRetained.bind(persistence);
  const { retained, metrics: m } = o;
  persistence.storeRetained = (packet) => {
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    const decision = retained.admit(packet.topic, payload.length);
    m.retainedMessages.set(retained.messages);
    m.retainedBytes.set(retained.bytes);
    if (decision.keep) return store({ ...packet, payload: payload.length === 0 ? payload : Buffer.from(payload) });
    m.retainedRefused.inc({ reason: decision.reason });
    const limit =
      decision.reason === 'max_messages'
        ? `MQTT_MAX_RETAINED_MESSAGES (${o.limits.maxRetainedMessages})`
        : `MQTT_MAX_RETAINED_BYTES (${o.limits.maxRetainedBytes})`;
    o.warnings.warn(
      decision.reason,
      { topic: packet.topic.slice(0, MAX_LOGGED_TOPIC), retainedMessages: retained.messages, retainedBytes: retained.bytes },
      `retained message not kept: ${limit} reached; it is stored and delivered, but later subscribers do not get it` +
        (decision.dropOld ? ', and the older retained message of its topic is deleted' : ''),
    );
    // An empty payload deletes whatever the topic held (nothing, unless dropOld): the store stays as counted.
    return store({ ...packet, payload: Buffer.alloc(0) });
  };
}
