import { crc32c, crc32cText, crc32cUint } from '../core/crc32c.js';

/**
 * The checksum stored with each message (`messages.crc`): CRC-32C over the topic (UTF-8) and a zero byte, the
 * payload, the message id, then qos and retain in one byte and received_at in 6 bytes. SQLite checks neither
 * its pages nor its rows: a byte changed on disk inside a page reads back as a valid row with other content.
 * The spool computes this at commit and again when a sink leases the row; a row that no longer matches is
 * dead-lettered (reason `corrupt`) instead of being delivered (message-store.ts, read by a lease).
 *
 * Stored as a signed 32-bit integer (4 bytes in SQLite's record format rather than 6). NULL means the row
 * has none: written by a spool of format version 1. `dlq replay` computes it again from the dead letter's bytes.
 *
 * A row with MQTT 5 properties (format 3) continues the CRC over them as stored: a byte saying which of the
 * two cells are set, then each set cell's length (4 bytes) and text. A row without them gets exactly the
 * checksum format 2 gave it, so rows written before the property columns existed still verify.
 */
export function rowChecksum(
  topic: string,
  payload: Buffer,
  messageId: string,
  qos: number,
  retain: boolean,
  receivedAt: number,
  userProperties: string | null = null,
  contentType: string | null = null,
): number {
  let crc = crc32c(payload, topicSeed(topic));
  crc = crc32cText(messageId, crc);
  crc = crc32cUint(qos | (retain ? 4 : 0), 1, crc);
  crc = crc32cUint(receivedAt, 6, crc);
  if (userProperties === null && contentType === null) return crc | 0;
  crc = crc32cUint((userProperties === null ? 0 : 1) | (contentType === null ? 0 : 2), 1, crc);
  if (userProperties !== null) crc = crc32cText(userProperties, crc32cUint(userProperties.length, 4, crc));
  if (contentType !== null) crc = crc32cText(contentType, crc32cUint(contentType.length, 4, crc));
  return crc | 0;
}

/**
 * A fleet publishes on a bounded set of topics, thousands of times each: the CRC of each topic (its UTF-8
 * bytes and a zero byte) is remembered rather than encoded and computed for every message. Bounded, in case
 * topics carry something unique per message; long topics (MQTT allows 65,535 bytes) are not kept.
 */
const topicSeeds = new Map<string, number>();
const MAX_CACHED_TOPICS = 10_000;
const MAX_CACHED_TOPIC_LENGTH = 256;
const ZERO = new Uint8Array(1);

function topicSeed(topic: string): number {
  let seed = topicSeeds.get(topic);
  if (seed !== undefined) return seed;
  seed = crc32c(ZERO, crc32c(Buffer.from(topic, 'utf8')));
  if (topic.length <= MAX_CACHED_TOPIC_LENGTH) {
    if (topicSeeds.size >= MAX_CACHED_TOPICS) topicSeeds.clear();
    topicSeeds.set(topic, seed);
  }
  return seed;
}
