import type Database from 'better-sqlite3';
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { decodePacket, encodePacket, payloadBytes, type AnyPacket } from './packet-codec.js';
import { QLOBBER_OPTIONS } from './subscriptions.js';
import { pages, PAGE_ROWS } from './store-file.js';

interface QlobberTrue {
  add(pattern: string): void;
  test(topic: string): boolean;
}

const require = createRequire(import.meta.url);
const { QlobberTrue: QlobberTrueClass } = require('qlobber') as { QlobberTrue: new (options: object) => QlobberTrue };

/**
 * The levels of a topic filter before its first wildcard, joined: every topic it matches is this prefix itself or
 * starts with it and a '/'. Undefined when the filter starts with a wildcard (`#`, `+/…`): any topic may match.
 */
export function literalPrefix(filter: string): string | undefined {
  const levels = filter.split('/');
  const first = levels.findIndex((level) => level === '+' || level === '#');
  if (first === 0) return undefined;
  return first === -1 ? filter : levels.slice(0, first).join('/');
}

/** The smallest string after `s` in SQLite's BINARY order: the next page's lower bound. */
const justAfter = (s: string): string => `${s}\u0000`;

interface RetainedRow {
  topic: string;
  packet: Buffer;
}

/**
 * Retained messages, one row per topic. A subscribe reads only the rows its filter can match: those of the filter's
 * literal prefix (`a/b` for `a/b/+/c`: the topic `a/b` and the range ['a/b/', 'a/b0'), which holds exactly the
 * topics starting with 'a/b/', '0' being the byte after '/'), each then tested with qlobber's QlobberTrue as the
 * reference store tests every topic. Only a filter starting with a wildcard reads the whole table.
 */
export class RetainedMessages {
  private readonly upsert: Database.Statement<[string, number, Buffer]>;
  private readonly remove: Database.Statement<[string]>;
  private readonly exact: Database.Statement<[string], RetainedRow>;
  private readonly range: Database.Statement<[string, string, number], RetainedRow>;
  private readonly from: Database.Statement<[string, number], RetainedRow>;
  private readonly countAll: Database.Statement<[], number>;
  private readonly sizesAll: Database.Statement<[], [string, number]>;

  constructor(db: Database.Database) {
    this.upsert = db.prepare(
      'INSERT INTO retained (topic, payload_bytes, packet) VALUES (?, ?, ?) ON CONFLICT (topic) DO UPDATE SET payload_bytes = excluded.payload_bytes, packet = excluded.packet',
    );
    this.remove = db.prepare('DELETE FROM retained WHERE topic = ?');
    this.exact = db.prepare('SELECT topic, packet FROM retained WHERE topic = ?');
    this.range = db.prepare('SELECT topic, packet FROM retained WHERE topic >= ? AND topic < ? ORDER BY topic LIMIT ?');
    this.from = db.prepare('SELECT topic, packet FROM retained WHERE topic >= ? ORDER BY topic LIMIT ?');
    this.countAll = db.prepare<[], number>('SELECT count(*) FROM retained').pluck();
    this.sizesAll = db.prepare<[], [string, number]>('SELECT topic, payload_bytes FROM retained ORDER BY topic').raw();
  }

  /** A copy of the packet is kept (the caller may change it afterwards); an empty payload deletes the topic's message. */
  store(packet: AnyPacket): void {
    const copy = { ...packet };
    const topic = copy.topic as string;
    if ((copy.payload as { length: number }).length === 0) this.remove.run(topic);
    else this.upsert.run(topic, payloadBytes(copy.payload), encodePacket(copy));
  }

  /** The messages matching each filter in turn (one matching two filters comes twice, as from the reference store). */
  stream(filters: string[]): Readable {
    return Readable.from(this.matchingAny(filters));
  }

  count(): number {
    return this.countAll.get() ?? 0;
  }

  /** [topic, payload bytes] of every retained message. */
  sizes(): Array<[string, number]> {
    return this.sizesAll.all();
  }

  private *matchingAny(filters: string[]): Generator<AnyPacket> {
    for (const filter of filters) yield* this.matching(filter);
  }

  private *matching(filter: string): Generator<AnyPacket> {
    const matcher = new QlobberTrueClass(QLOBBER_OPTIONS);
    matcher.add(filter);
    for (const row of this.candidates(filter)) {
      if (matcher.test(row.topic)) yield decodePacket(row.packet);
    }
  }

  private *candidates(filter: string): Generator<RetainedRow> {
    const prefix = literalPrefix(filter);
    const next = (row: RetainedRow): string => justAfter(row.topic);
    if (prefix === undefined) {
      yield* pages('', (lo) => this.from.all(lo, PAGE_ROWS), next);
      return;
    }
    const own = this.exact.get(prefix);
    if (own !== undefined) yield own;
    if (prefix === filter) return;
    const hi = `${prefix}0`;
    yield* pages(`${prefix}/`, (lo) => this.range.all(lo, hi, PAGE_ROWS), next);
  }
}
