import type { RetainedRefusalReason } from '../broker-metrics.js';

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
