/**
 * The spool's floor: what SQLite alone costs for the spool's own statements, with no node around them, on the same
 * machine in the same run. The drain and spool → Pub/Sub cases are bounded below by these figures: a node that
 * INSERTs, SELECTs and DELETEs a row per message cannot be cheaper per message than the statements themselves.
 *
 * The spool file is made by Spool.open (its schema and pragmas, SPOOL_SYNC=full) and closed; this process then
 * opens it with better-sqlite3 and the same pragmas and times, per row:
 * - INSERT + COMMIT: the spool's multi-row INSERT (columns.ts, 50 rows a statement), 1,000 rows per transaction,
 *   each COMMIT fsync'ed (the node's group commit at its largest);
 * - the lease's SELECT (LEASED_COLUMNS, `.raw()`), 1,000 rows at a time, and the same with the seq alone (what
 *   walking the table costs before any value is copied out);
 * - the acknowledgement: a range DELETE of each 1,000 (message-store.ts) with its COMMIT, and the list form.
 */
import Database from 'better-sqlite3';
import path from 'node:path';
import { Spool } from '../src/spool/spool.js';
import { insertMessagesSql, LEASED_COLUMNS, pushMessageRow } from '../src/spool/columns.js';
import { rowChecksum } from '../src/spool/checksum.js';
import { benchPayload, cleanup, nowMs, tempDir } from './lib.js';
import type { CaseResult } from './cases.js';

const PER_COMMIT = 1000;
const PER_STATEMENT = 50;

function row(name: string, usPerRow: number, what: string, extra: Record<string, number> = {}): CaseResult {
  return {
    case: `SQLite alone, the spool's statements: ${name}`,
    node: `${usPerRow.toFixed(2)} µs/row (${Math.round(1e6 / usPerRow).toLocaleString('en-US')} rows/s)`,
    baseline: 'none',
    ratio: null,
    goal: 'report',
    met: null,
    details: { usPerRow: Number(usPerRow.toFixed(3)), rowsPerSecond: Math.round(1e6 / usPerRow), what, ...extra } as unknown as Record<string, number>,
  };
}

export function spoolFloor(n: number): CaseResult[] {
  const dataDir = tempDir('floor');
  const dir = path.join(dataDir, 'spool');
  try {
    Spool.open({ dir, maxBytes: 1e12, sinks: ['pubsub'], sync: 'full' }).close();
    const db = new Database(path.join(dir, 'spool.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    const insert = db.prepare(insertMessagesSql(PER_STATEMENT));
    const messages = Array.from({ length: PER_COMMIT }, (_, i) => ({
      topic: `bench/floor/${i % 64}`,
      payload: Buffer.from(benchPayload(i)),
      qos: 1 as const,
      retain: false,
      receivedAt: Date.now(),
    }));
    let next = 0;
    const commit = db.transaction(() => {
      const args: unknown[] = [];
      for (let i = 0; i < PER_COMMIT; i += PER_STATEMENT) {
        args.length = 0;
        for (let j = i; j < i + PER_STATEMENT; j++) {
          const m = messages[j]!;
          const id = `01JFLOOR${String(next++).padStart(18, '0')}`;
          pushMessageRow(args, id, m, 1, rowChecksum(m.topic, m.payload, id, m.qos, m.retain, m.receivedAt, null, null), null);
        }
        insert.run(...args);
      }
    });
    const rows = Math.max(PER_COMMIT, Math.floor(n / PER_COMMIT) * PER_COMMIT);
    let t = nowMs();
    for (let done = 0; done < rows; done += PER_COMMIT) commit();
    const insertUs = ((nowMs() - t) * 1000) / rows;

    const lease = db.prepare(`SELECT ${LEASED_COLUMNS} FROM messages WHERE seq > ? AND (pending & ?) != 0 ORDER BY seq LIMIT ?`).raw(true);
    const seqs = db.prepare('SELECT seq FROM messages WHERE seq > ? AND (pending & ?) != 0 ORDER BY seq LIMIT ?').pluck();
    const walk = (read: (cursor: number) => number | undefined): number => {
      let cursor = 0;
      const started = nowMs();
      for (let last = read(cursor); last !== undefined; last = read(cursor)) cursor = last;
      return ((nowMs() - started) * 1000) / rows;
    };
    const leaseUs = walk((c) => (lease.all(c, 1, PER_COMMIT) as number[][]).at(-1)?.[0]);
    const seqUs = walk((c) => (seqs.all(c, 1, PER_COMMIT) as number[]).at(-1));

    // Acknowledgements, alternating range and list on successive batches of the same table.
    const range = db.prepare('DELETE FROM messages WHERE seq BETWEEN @lo AND @hi AND pending = @bit');
    const list = db.prepare('DELETE FROM messages WHERE seq IN (SELECT value FROM json_each(@list)) AND pending = @bit');
    const ackRange = db.transaction((lo: number, hi: number) => range.run({ lo, hi, bit: 1 }));
    const ackList = db.transaction((batch: number[]) => list.run({ list: JSON.stringify(batch), bit: 1 }));
    let rangeMs = 0;
    let listMs = 0;
    let rangeRows = 0;
    let listRows = 0;
    for (let cursor = 0, i = 0; ; i++) {
      const batch = seqs.all(cursor, 1, PER_COMMIT) as number[];
      if (batch.length === 0) break;
      cursor = batch.at(-1)!;
      t = nowMs();
      if (i % 2 === 0) {
        ackRange(batch[0]!, cursor);
        rangeMs += nowMs() - t;
        rangeRows += batch.length;
      } else {
        ackList(batch);
        listMs += nowMs() - t;
        listRows += batch.length;
      }
    }
    db.close();
    return [
      row(`INSERT + COMMIT, ${PER_COMMIT.toLocaleString('en-US')} rows per commit, fsync'ed`, insertUs, 'insert', { rows }),
      row('the lease SELECT (every leased column)', leaseUs, 'lease', { rows }),
      row('the lease SELECT of the seq alone (walking the table)', seqUs, 'walk', { rows }),
      row('acknowledgement: range DELETE + COMMIT', (rangeMs * 1000) / Math.max(1, rangeRows), 'ack-range', { rows: rangeRows }),
      row('acknowledgement: DELETE of a JSON list + COMMIT', (listMs * 1000) / Math.max(1, listRows), 'ack-list', { rows: listRows }),
    ];
  } finally {
    cleanup(dataDir);
  }
}
