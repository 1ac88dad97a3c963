import type Database from 'better-sqlite3';
import type { Clock } from '../core/clock.js';
import type { SinkName, SpooledMessage } from '../core/message.js';
import { ROW_OVERHEAD_BYTES } from './schema.js';
import { messageBytes, type Row } from './rows.js';
import { rowChecksum } from './checksum.js';

export interface DeadLetterInput {
  message: SpooledMessage;
  /** Short, stable reason code (metric label), e.g. `invalid`, `too_large`, `sink_disabled`. */
  reason: string;
  /** The destination's own words, for the operator. */
  detail: string;
}

export interface DeadLetter {
  id: number;
  sink: SinkName;
  reason: string;
  detail: string;
  messageId: string;
  topic: string;
  payload: Buffer;
  qos: number;
  retain: boolean;
  receivedAt: number;
  deadAt: number;
}

/** A `dead_letters` row: the message's columns as in `messages`, plus who rejected it and why. */
interface DeadRow extends Omit<Row, 'seq'> {
  id: number;
  sink: SinkName;
  reason: string;
  detail: string;
  dead_at: number;
}

function toDeadLetter(r: DeadRow): DeadLetter {
  return {
    id: r.id,
    sink: r.sink,
    reason: r.reason,
    detail: r.detail,
    messageId: r.message_id,
    topic: r.topic,
    payload: r.payload,
    qos: r.qos,
    retain: r.retain === 1,
    receivedAt: r.received_at,
    deadAt: r.dead_at,
  };
}

/**
 * The dead-letter table: whole messages a sink rejected, with the sink and the reason. Shared by the
 * running node (through Spool) and the `dlq` commands (which open the spool file directly).
 */
export class DeadLetterStore {
  constructor(
    private readonly db: Database.Database,
    private readonly clock: Clock,
  ) {}

  /** Inserts one dead letter; returns the bytes it adds to the spool. Call inside a transaction. */
  insert(sink: SinkName, { message: m, reason, detail }: DeadLetterInput): number {
    this.db
      .prepare(
        `INSERT INTO dead_letters (sink, reason, detail, message_id, topic, payload, qos, retain, received_at, dead_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(sink, reason, detail, m.messageId, m.topic, m.payload, m.qos, m.retain ? 1 : 0, m.receivedAt, this.clock.now());
    return messageBytes(m.topic, m.payload);
  }

  count(filter: { sink?: SinkName; ids?: number[] } = {}): number {
    const { where, params } = this.where(filter);
    return this.db.prepare(`SELECT COUNT(*) FROM dead_letters${where}`).pluck().get(...params) as number;
  }

  totalBytes(): number {
    const r = this.db
      .prepare('SELECT COUNT(*) AS n, COALESCE(SUM(length(payload) + length(CAST(topic AS BLOB))), 0) AS b FROM dead_letters')
      .get() as { n: number; b: number };
    return r.b + r.n * ROW_OVERHEAD_BYTES;
  }

  list(filter: { sink?: SinkName; ids?: number[]; limit?: number } = {}): DeadLetter[] {
    const { where, params } = this.where(filter);
    const limit = filter.limit ? ` LIMIT ${Math.floor(filter.limit)}` : '';
    const rows = this.db.prepare(`SELECT * FROM dead_letters${where} ORDER BY id${limit}`).all(...params) as DeadRow[];
    return rows.map(toDeadLetter);
  }

  /** Iterates without loading every dead letter into memory (a large DLQ after a long schema problem). */
  *iterate(filter: { sink?: SinkName; ids?: number[] } = {}): Generator<DeadLetter> {
    const { where, params } = this.where(filter);
    for (const r of this.db.prepare(`SELECT * FROM dead_letters${where} ORDER BY id`).iterate(...params)) {
      yield toDeadLetter(r as DeadRow);
    }
  }

  /**
   * Puts dead letters back for delivery to the sink that rejected them: one new spool row each, with
   * its original message_id (so the destination can still de-duplicate), then deletes the dead letters.
   */
  replay(filter: { sink?: SinkName; ids?: number[] }, bitOf: (sink: SinkName) => number): number {
    const { where, params } = this.where(filter);
    return this.db.transaction(() => {
      const rows = this.db.prepare(`SELECT * FROM dead_letters${where} ORDER BY id`).all(...params) as DeadRow[];
      const insert = this.db.prepare(
        'INSERT INTO messages (message_id, topic, payload, qos, retain, received_at, pending, crc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      );
      const remove = this.db.prepare('DELETE FROM dead_letters WHERE id = ?');
      for (const r of rows) {
        // The replayed row gets its checksum from the dead letter's bytes, so damage after the replay is caught.
        const crc = rowChecksum(r.topic, r.payload, r.message_id, r.qos, r.retain === 1, r.received_at);
        insert.run(r.message_id, r.topic, r.payload, r.qos, r.retain, r.received_at, bitOf(r.sink), crc);
        remove.run(r.id);
      }
      return rows.length;
    })();
  }

  /** Deletes the dead letters `filter` selects (`dlq purge --id`); returns how many. */
  delete(filter: { sink?: SinkName; ids: number[] }): number {
    if (filter.ids.length === 0) return 0;
    const { where, params } = this.where(filter);
    return this.db.prepare(`DELETE FROM dead_letters${where}`).run(...params).changes;
  }

  /** The longest reason code among the dead letters `filter` selects, so a listing can show each whole. */
  longestReason(filter: { sink?: SinkName; ids?: number[] } = {}): number {
    const { where, params } = this.where(filter);
    return this.db.prepare(`SELECT COALESCE(MAX(length(reason)), 0) FROM dead_letters${where}`).pluck().get(...params) as number;
  }

  /** Deletes dead letters that died before `cutoffMs` (epoch ms); returns how many. */
  purgeOlderThan(cutoffMs: number, sink?: SinkName): number {
    const params: unknown[] = [cutoffMs];
    let sql = 'DELETE FROM dead_letters WHERE dead_at < ?';
    if (sink) {
      sql += ' AND sink = ?';
      params.push(sink);
    }
    return this.db.prepare(sql).run(...params).changes;
  }

  private where(filter: { sink?: SinkName; ids?: number[] }): { where: string; params: unknown[] } {
    const clauses: string[] = [];
    const params: unknown[] = [];
    if (filter.sink) {
      clauses.push('sink = ?');
      params.push(filter.sink);
    }
    if (filter.ids && filter.ids.length > 0) {
      clauses.push(`id IN (${filter.ids.map(() => '?').join(',')})`);
      params.push(...filter.ids);
    }
    return { where: clauses.length ? ` WHERE ${clauses.join(' AND ')}` : '', params };
  }
}
