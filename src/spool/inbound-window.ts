import type Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import * as zlib from 'node:zlib';

// zlib.crc32 exists from Node 20.15 (native, ~0.3 µs for a 200-byte payload against ~1.2 µs for SHA-1);
// @types/node 20 does not declare it everywhere, hence the cast and the SHA-1 fallback.
const crc32 = (zlib as unknown as { crc32?: (data: Buffer | string, value?: number) => number }).crc32;

/**
 * 12 bytes per entry: CRC-32 of the payload, CRC-32 of the topic, payload length. A digest is only ever
 * compared with the one stored under the same packet id for a message flagged DUP, so an accidental
 * match of two different messages needs all three to agree: negligible. Not a defence against an
 * adversary (publishers cannot choose which packet id the broker uses towards the node).
 */
const DIGEST_BYTES = 12;
const ENTRY_BYTES = 2 + DIGEST_BYTES;
/** Packet ids are 16-bit: entries beyond the newest 65,535 can only describe superseded uses of an id. */
const KEEP_ENTRIES = 65_535;

export function windowDigest(topic: string, payload: Buffer): Buffer {
  if (!crc32) return createHash('sha1').update(topic).update('\0').update(payload).digest().subarray(0, DIGEST_BYTES);
  const digest = Buffer.allocUnsafe(DIGEST_BYTES);
  digest.writeUInt32BE(crc32(payload), 0);
  digest.writeUInt32BE(topicCrc(topic), 4);
  digest.writeUInt32BE(payload.length, 8);
  return digest;
}

/**
 * A fleet publishes on a bounded set of topics, each thousands of times: their CRCs are remembered
 * instead of recomputed for every message (a string's CRC means encoding it to UTF-8 first). Bounded, in
 * case topics carry something unique per message.
 */
const topicCrcs = new Map<string, number>();
const MAX_CACHED_TOPICS = 10_000;
/** Longer topics (MQTT allows 65,535 bytes) are not kept: 10,000 of them could fill the heap. */
const MAX_CACHED_TOPIC_LENGTH = 256;

function topicCrc(topic: string): number {
  if (topic.length > MAX_CACHED_TOPIC_LENGTH) return crc32!(topic);
  let value = topicCrcs.get(topic);
  if (value === undefined) {
    if (topicCrcs.size >= MAX_CACHED_TOPICS) topicCrcs.clear();
    value = crc32!(topic);
    topicCrcs.set(topic, value);
  }
  return value;
}

export interface WindowEntry {
  packetId: number;
  digest: Buffer;
  messageId: string;
}

/**
 * The last message committed under each MQTT packet id, to recognise a broker's DUP redelivery of a
 * message committed just before its PUBACK was lost (ARCHITECTURE §2.3).
 *
 * Kept in memory and journalled as one blob row per commit (packet id + digest per message), written in
 * the same transaction as the messages: one insert per group instead of one upsert per message, which
 * halved the cost of a commit. Replayed into memory at open; journal rows older than the newest 65,535
 * entries are pruned.
 */
export class InboundWindow {
  private readonly last = new Map<number, { digest: Buffer; messageId: string }>();
  private readonly journal: { id: number; count: number }[] = [];
  private journalled = 0;
  private readonly insert;
  private readonly remove;

  constructor(private readonly db: Database.Database) {
    this.insert = db.prepare('INSERT INTO inbound_window_log (entries) VALUES (?)');
    this.remove = db.prepare('DELETE FROM inbound_window_log WHERE id = ?');
    for (const row of db.prepare('SELECT id, entries FROM inbound_window_log ORDER BY id').iterate() as Iterable<{ id: number; entries: Buffer }>) {
      const count = Math.floor(row.entries.length / ENTRY_BYTES);
      for (let i = 0; i < count; i++) {
        const at = i * ENTRY_BYTES;
        // The message id is not journalled (it would triple the journal); after a restart it is unknown.
        this.last.set(row.entries.readUInt16BE(at), { digest: Buffer.from(row.entries.subarray(at + 2, at + ENTRY_BYTES)), messageId: '' });
      }
      this.journal.push({ id: row.id, count });
      this.journalled += count;
    }
  }

  /**
   * The message id ('' when unknown) of the committed message this one repeats: same packet id, same
   * digest. `pending` holds entries of the transaction in progress (a group can hold a message and its
   * redelivery when a connection dropped while the message waited for its commit).
   */
  match(packetId: number, digest: Buffer, pending: Map<number, WindowEntry>): string | undefined {
    const prev = pending.get(packetId) ?? this.last.get(packetId);
    return prev && prev.digest.equals(digest) ? prev.messageId : undefined;
  }

  /** Journals a commit's entries; call inside the transaction that stores the messages. */
  write(entries: Map<number, WindowEntry>): number | undefined {
    if (entries.size === 0) return undefined;
    const blob = Buffer.allocUnsafe(entries.size * ENTRY_BYTES);
    let at = 0;
    for (const e of entries.values()) {
      blob.writeUInt16BE(e.packetId, at);
      e.digest.copy(blob, at + 2, 0, DIGEST_BYTES);
      at += ENTRY_BYTES;
    }
    const id = Number(this.insert.run(blob).lastInsertRowid);
    while (this.journal.length > 0 && this.journalled + entries.size - this.journal[0].count >= KEEP_ENTRIES) {
      const oldest = this.journal.shift()!;
      this.remove.run(oldest.id);
      this.journalled -= oldest.count;
    }
    return id;
  }

  /** Makes a committed transaction's entries visible; call only after the commit succeeded. */
  apply(entries: Map<number, WindowEntry>, journalId: number | undefined): void {
    if (journalId === undefined) return;
    for (const e of entries.values()) this.last.set(e.packetId, { digest: e.digest, messageId: e.messageId });
    this.journal.push({ id: journalId, count: entries.size });
    this.journalled += entries.size;
  }
}
