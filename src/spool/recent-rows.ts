import type { SinkName, SpooledMessage } from '../core/message.js';

/**
 * The rows this process committed most recently, as the messages a lease hands out, so that a sink that keeps up
 * with a live stream is given them from memory instead of reading back what was written a moment before. Reading
 * them back was the largest single cost of delivery end to end: the lease's SELECT (a row copied out of SQLite
 * into a string, a Buffer and an array), its checksum recomputed, and the garbage of both, about a tenth of the
 * node's CPU (docs/performance.md, "End to end"). A lease from here gives the same messages, field for field, as
 * the SELECT would (spooledOf in columns.ts builds them from what was bound to the INSERT); the checksum, there to
 * catch bytes damaged on disk, has nothing to check in bytes that never left memory.
 *
 * Only what is certainly the whole of a seq range is held: the entries are consecutive seqs, the first one
 * `lo`. A row committed by another process between two of this process's commits (`mqtt-ingest dlq replay`
 * writes into the running node's spool) breaks the run, and the cache starts again at the next commit; seqs it
 * does not hold are read from SQLite as before. A sink whose cursor is below `lo` (it fell behind by more than
 * the cache holds, or the rows were committed before this start) reads from SQLite until it reaches `lo`.
 *
 * Rows leave once every routed sink's cursor has passed them (a sink retries a failed message from the copy it
 * holds, never from the spool: spool.ts), and the oldest leave first past `maxBytes`, so a sink that stops
 * costs at most that much memory. Nothing here is state: a restart starts with none, and the spool's rows are
 * as they were.
 */
export class RecentRows {
  private items: SpooledMessage[] = [];
  /** Index in `items` of the oldest entry still held (dropping from the front is an index move, compacted now and then). */
  private head = 0;
  private heldBytes = 0;

  constructor(private readonly maxBytes: number) {}

  /** Entries held. */
  get size(): number {
    return this.items.length - this.head;
  }

  /** Their cost in memory, as estimated (payload, topic, about 200 bytes of objects). */
  get bytes(): number {
    return this.heldBytes;
  }

  /** Rows just committed, in seq order. A seq that does not follow the last one held starts a new run. */
  add(rows: readonly SpooledMessage[]): void {
    for (const m of rows) {
      if (this.size > 0 && m.seq !== this.items[this.items.length - 1]!.seq + 1) this.clear();
      this.items.push(m);
      this.heldBytes += cost(m);
    }
    while (this.heldBytes > this.maxBytes && this.size > 0) this.dropFront();
    this.compact();
  }

  /**
   * The held messages after `cursor` into `out`: at most `max` messages and about `maxBytes` payload bytes (at
   * least one). Returns the seq of the last one given, or undefined when the cache cannot say what follows
   * `cursor` (a row after it that the cache does not hold, or none held after it): then the caller reads SQLite.
   */
  take(cursor: number, max: number, maxBytes: number, out: SpooledMessage[]): number | undefined {
    if (this.size === 0) return undefined;
    const lo = this.items[this.head]!.seq;
    if (cursor < lo - 1) return undefined;
    const start = this.head + (cursor - lo + 1);
    if (start >= this.items.length) return undefined;
    let bytes = 0;
    let last: number | undefined;
    for (let i = start; i < this.items.length && out.length < max; i++) {
      const m = this.items[i]!;
      if (out.length > 0 && bytes + m.payload.length > maxBytes) break;
      bytes += m.payload.length;
      // An object of its own per lease, as the SELECT gives: the route stage sets a sink's targets on the message.
      out.push({ ...m });
      last = m.seq;
    }
    return last;
  }

  /** Every routed sink's cursor has passed `seq`: the entries up to it go. */
  release(cursors: ReadonlyMap<SinkName, number>): void {
    let min = Number.POSITIVE_INFINITY;
    for (const c of cursors.values()) min = Math.min(min, c);
    while (this.size > 0 && this.items[this.head]!.seq <= min) this.dropFront();
    this.compact();
  }

  clear(): void {
    this.items = [];
    this.head = 0;
    this.heldBytes = 0;
  }

  private dropFront(): void {
    this.heldBytes -= cost(this.items[this.head]!);
    this.head += 1;
  }

  private compact(): void {
    if (this.head === this.items.length) this.clear();
    else if (this.head > 4096 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}

/** What a held message costs, about: its payload, its topic (UTF-16 at worst) and an estimate of its objects. */
function cost(m: SpooledMessage): number {
  return m.payload.length + 2 * m.topic.length + 200;
}
