import type Database from 'better-sqlite3';
import type { Clock } from '../core/clock.js';
import type { SinkName, SpooledMessage } from '../core/message.js';
import { messageBytes, ROW_OVERHEAD_BYTES, STORED_BYTES_SQL } from './schema.js';
import { rowChecksum } from './checksum.js';
import {
  DEAD_LETTER_COLUMNS,
  deadLetterOfRow,
  INSERT_DEAD_LETTER_SQL,
  insertDeadLetterRow,
  insertMessageRow,
  insertMessagesSql,
  userPropertiesText,
  type DeadLetter,
  type DeadLetterRow,
} from './columns.js';

export type { DeadLetter } from './columns.js';

export interface DeadLetterInput {
  message: SpooledMessage;
  /** Short, stable reason code (metric label), e.g. `invalid`, `too_large`, `sink_disabled`. */
  reason: string;
  /** The destination's own words, for the operator. */
  detail: string;
}


/**
 * The dead-letter table: whole messages a sink rejected, with the sink and the reason. Shared by the
 * running node (through Spool) and the `dlq` commands (which open the spool file directly).
 */
export class DeadLetterStore {
  /** Prepared at the first dead letter: the `dlq` commands open a store for reading only. */
  private insertStmt: Database.Statement | undefined;

  constructor(
    private readonly db: Database.Database,
    private readonly clock: Clock,
  ) {}

  /** Inserts one dead letter; returns the bytes it adds to the spool. Call inside a transaction. */
  insert(sink: SinkName, { message, reason, detail }: DeadLetterInput): number {
    this.insertStmt ??= this.db.prepare(INSERT_DEAD_LETTER_SQL);
    insertDeadLetterRow(this.insertStmt, sink, reason, detail, message, this.clock.now());
    return messageBytes(message.topic, message.payload, message.properties);
  }

  count(filter: { sink?: SinkName; ids?: number[] } = {}): number {
    const { where, params } = this.where(filter);
    return this.db.prepare(`SELECT COUNT(*) FROM dead_letters${where}`).pluck().get(...params) as number;
  }

  /** How many dead letters the store holds per sink and reason, in one GROUP BY (the status page caches it). */
  countsByReason(): Array<{ sink: SinkName; reason: string; count: number }> {
    return this.db.prepare('SELECT sink, reason, COUNT(*) AS count FROM dead_letters GROUP BY sink, reason ORDER BY sink, reason').all() as Array<{ sink: SinkName; reason: string; count: number }>;
  }

  totalBytes(): number {
    const r = this.db
      .prepare(`SELECT COUNT(*) AS n, COALESCE(SUM(${STORED_BYTES_SQL}), 0) AS b FROM dead_letters`)
      .get() as { n: number; b: number };
    return r.b + r.n * ROW_OVERHEAD_BYTES;
  }

  list(filter: { sink?: SinkName; ids?: number[]; limit?: number } = {}): DeadLetter[] {
    const { where, params } = this.where(filter);
    const limit = filter.limit ? ` LIMIT ${Math.floor(filter.limit)}` : '';
    const rows = this.select(where, limit).all(...params) as DeadLetterRow[];
    return rows.map(deadLetterOfRow);
  }

  /** Iterates without loading every dead letter into memory (a large DLQ after a long schema problem). */
  *iterate(filter: { sink?: SinkName; ids?: number[] } = {}): Generator<DeadLetter> {
    const { where, params } = this.where(filter);
    for (const r of this.select(where).iterate(...params)) yield deadLetterOfRow(r as DeadLetterRow);
  }

  /**
   * Puts dead letters back for delivery to the sink that rejected them: one new spool row each, with
   * its original message_id and properties (so the destination can still de-duplicate), then deletes the
   * dead letters.
   */
  replay(filter: { sink?: SinkName; ids?: number[] }, bitOf: (sink: SinkName) => number): number {
    const { where, params } = this.where(filter);
    return this.db.transaction(() => {
      const letters = (this.select(where).all(...params) as DeadLetterRow[]).map(deadLetterOfRow);
      const insert = this.db.prepare(insertMessagesSql());
      const remove = this.db.prepare('DELETE FROM dead_letters WHERE id = ?');
      for (const d of letters) {
        // The replayed row gets its checksum from the dead letter's bytes, so damage after the replay is caught.
        const up = userPropertiesText(d);
        const crc = rowChecksum(d.topic, d.payload, d.messageId, d.qos, d.retain, d.receivedAt, up, d.properties?.contentType ?? null);
        insertMessageRow(insert, d.messageId, d, bitOf(d.sink), crc, up);
        remove.run(d.id);
      }
      return letters.length;
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

  /** Whole dead letters in id order, as positional rows (deadLetterOfRow). */
  private select(where: string, limit = ''): Database.Statement {
    return this.db.prepare(`SELECT ${DEAD_LETTER_COLUMNS} FROM dead_letters${where} ORDER BY id${limit}`).raw(true);
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
