/**
 * `dlq replay` and `dlq purge` over many dead letters, a batch of ids at a time, so that the live progress line
 * (src/cli/progress.ts) can count the rows: `dlq replay: 4,000/25,000 rows, 1,200/s`. The batches run inside
 * the caller's one write transaction: a replay or purge still happens whole or not at all, as before. Also the
 * durations of `purge --older-than`.
 */
import type Database from 'better-sqlite3';
import type { SinkName } from '../core/message.js';
import type { DeadLetterStore } from '../spool/dead-letters.js';
import { SINK_BITS } from '../spool/schema.js';
import { count, duration, type Progress, type RowCount } from './progress.js';

/** Ids per batch: well under SQLite's limit of bound parameters, and many batches a second. */
export const BATCH_ROWS = 1000;

function* batches(ids: number[]): Generator<number[]> {
  for (let i = 0; i < ids.length; i += BATCH_ROWS) yield ids.slice(i, i + BATCH_ROWS);
}

/** The ids of the dead letters of `sink`, in id order (only ids: a large dead-letter table is not loaded whole). */
function idsOf(db: Database.Database, sink: SinkName): number[] {
  return db.prepare('SELECT id FROM dead_letters WHERE sink = ? ORDER BY id').pluck().all(sink) as number[];
}

/**
 * Replays the dead letters of each of `targets` (only those among `ids` when given) as new spool rows pending
 * for their sink; returns how many per sink. Call inside a write transaction.
 */
export function replayInBatches(db: Database.Database, store: DeadLetterStore, targets: SinkName[], ids: number[] | undefined, rows: RowCount): Map<SinkName, number> {
  const replayed = new Map<SinkName, number>();
  for (const sink of targets) {
    let n = 0;
    for (const batch of batches(ids ?? idsOf(db, sink))) {
      // DeadLetterStore.replay makes each a new spool row with its original message_id, pending for that sink only.
      const done = store.replay({ sink, ids: batch }, (s) => SINK_BITS[s]);
      n += done;
      rows.add(done);
    }
    replayed.set(sink, n);
  }
  return replayed;
}

/** How many dead letters `replayInBatches` would replay. */
export function replayTotal(store: DeadLetterStore, targets: SinkName[], ids: number[] | undefined): number {
  return targets.reduce((sum, sink) => sum + store.count({ sink, ids }), 0);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `90s`, `30m`, `12h`, `7d`, `2w` (or a sum such as `1d12h`) in milliseconds; undefined when unreadable. */
export function parseDuration(text: string): number | undefined {
  const parts = text.trim().toLowerCase().match(/\d+(?:ms|s|m|h|d|w)/g);
  if (!parts || parts.join('') !== text.trim().toLowerCase()) return undefined;
  return parts.reduce((sum, p) => {
    const [, n, unit] = /^(\d+)(ms|s|m|h|d|w)$/.exec(p)!;
    return sum + Number(n) * DURATION_UNITS[unit!]!;
  }, 0);
}

/** The ids of the dead letters that died before `cutoffMs` (of `sink` when given), in id order. */
export function idsOlderThan(db: Database.Database, cutoffMs: number, sink?: SinkName): number[] {
  const sql = `SELECT id FROM dead_letters WHERE dead_at < ?${sink ? ' AND sink = ?' : ''} ORDER BY id`;
  return db.prepare(sql).pluck().all(...(sink ? [cutoffMs, sink] : [cutoffMs])) as number[];
}

/** Deletes the dead letters `ids` names (of `sink` when given); returns how many. Call inside a write transaction. */
export function purgeInBatches(store: DeadLetterStore, ids: number[], sink: SinkName | undefined, rows: RowCount): number {
  let purged = 0;
  for (const batch of batches(ids)) {
    const n = store.delete({ ids: batch, sink });
    purged += n;
    rows.add(n);
  }
  return purged;
}

/** The summary line's words: `25,000 dead letters replayed in 1.2 s (20,833/s)`. */
export function rowsSummary(rows: RowCount, progress: Progress, verb: string): string {
  const rate = rows.done >= BATCH_ROWS ? ` (${count(rows.perSecond())}/s)` : '';
  return `${count(rows.done)} dead letter${rows.done === 1 ? '' : 's'} ${verb} in ${duration(progress.elapsedMs())}${rate}`;
}
