import { randomFillSync } from 'node:crypto';
import type Database from 'better-sqlite3';
import { monotonicFactory } from 'ulid';
import type { InboundMessage } from '../core/message.js';
import { SpoolFullError } from '../core/errors.js';
import { messageBytes } from './schema.js';
import type { InboundWindow, SessionTag, WindowMessage } from './inbound-window.js';
import { windowDigest } from './window-digest.js';
import type { MessageStore, NewRow } from './message-store.js';

/** A message as the subscriber hands it over: with the connection and position it arrived on (QoS 1/2). */
export type SourcedMessage = InboundMessage & Partial<SessionTag>;

/** `duplicateOf` is '': the window journal keeps no message ids (they would triple it), only that it was stored. */
export type AppendResult = { stored: true; seq: number; messageId: string } | { stored: false; duplicateOf: string };

/** A committed append: one result per message, and what it added (rows, bytes, the highest seq). */
export interface Appended {
  results: AppendResult[];
  added: number;
  addedBytes: number;
  lastSeq: number;
  /** The rows added, in seq order (each message with the result its seq and message_id are in). */
  rows: NewRow[];
}

/**
 * Random fractions for ulid, as its own default draws them (a random byte / 256), but from a pool filled 4 KiB at
 * a time: the default calls crypto.getRandomValues once per character, 16 times for each new millisecond, which
 * was 3 % of the node's CPU end to end (docs/performance.md).
 */
function pooledRandom(): () => number {
  const pool = Buffer.alloc(4096);
  let at = pool.length;
  return () => {
    if (at === pool.length) {
      randomFillSync(pool);
      at = 0;
    }
    return pool[at++]! / 256;
  };
}

/** Bytes of the inbound-window journal per message (packet id and digest), for the size of a commit. */
const WINDOW_ENTRY_BYTES = 14;

/** About what a commit of these messages adds on disk: their rows (as counted for SPOOL_MAX_BYTES) and journal entries. */
export function commitBytes(messages: readonly SourcedMessage[]): number {
  let n = 0;
  for (const m of messages) n += messageBytes(m.topic, m.payload, m.properties) + WINDOW_ENTRY_BYTES;
  return n;
}

/** A SpoolFullError whose message says why: `spool is full: disk: 12 MiB free on …`. */
export function spoolFullError(reason: string, usedBytes: number, maxBytes: number, cause?: unknown): SpoolFullError {
  const err = new SpoolFullError(usedBytes, maxBytes);
  err.message = `spool is full: ${reason}`;
  err.context.reason = reason;
  if (cause !== undefined) err.cause = cause;
  return err;
}

/**
 * One group of messages committed in one transaction: each gets its message_id (invariant 3 in spool.ts) and
 * its row, except a DUP redelivery the inbound window is certain of, and the window journals them all.
 */
export class GroupAppend {
  private readonly newId = monotonicFactory(pooledRandom());
  /** The group's transaction, made once (better-sqlite3 wraps the function at each `transaction()` call). */
  private readonly tx: (messages: readonly SourcedMessage[]) => Appended;

  constructor(
    db: Database.Database,
    private readonly window: InboundWindow,
    private readonly rows: MessageStore,
  ) {
    this.tx = db.transaction((messages: readonly SourcedMessage[]) => this.append(messages));
  }

  /** Commits the group, or throws with nothing of it done (the window rolled back too). */
  commit(messages: readonly SourcedMessage[]): Appended {
    this.window.begin();
    let appended: Appended;
    try {
      appended = this.tx(messages);
    } catch (err) {
      this.window.rollback();
      throw err;
    }
    this.window.commit();
    return appended;
  }

  private append(messages: readonly SourcedMessage[]): Appended {
    const results: AppendResult[] = [];
    const rows: NewRow[] = [];
    let addedBytes = 0;
    for (const m of messages) {
      // QoS 1/2 messages of the subscriber carry their connection and position: journalled, and a DUP one
      // is skipped only when it is certainly a redelivery (inbound-window.ts).
      if (m.packetId !== undefined && m.epoch !== undefined && m.position !== undefined) {
        const digest = windowDigest(m.topic, m.payload);
        const redelivery = this.window.isRedelivery(m as WindowMessage, digest);
        this.window.record(m as WindowMessage, digest);
        if (redelivery) {
          // The message id it repeats is not journalled (it would triple the journal).
          results.push({ stored: false, duplicateOf: '' });
          continue;
        }
      }
      const result = { stored: true as const, seq: 0, messageId: this.newId(m.receivedAt) };
      results.push(result);
      rows.push({ m, result });
      addedBytes += messageBytes(m.topic, m.payload, m.properties);
    }
    this.rows.insert(rows);
    this.window.write();
    return { results, added: rows.length, addedBytes, lastSeq: rows.length > 0 ? rows[rows.length - 1]!.result.seq : 0, rows };
  }
}
