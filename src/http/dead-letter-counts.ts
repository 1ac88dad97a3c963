/** How long one count of the dead-letter store serves the status page. */
export const DEAD_LETTER_COUNT_MS = 10_000;

/** One row of the store's count: dead letters of one sink with one reason. */
export interface DeadLetterCount {
  sink: string;
  reason: string;
  count: number;
}

/** What the status page shows of the dead-letter store: counts by sink and reason, and when they were counted. */
export interface HeldDeadLetters {
  bySink: Record<string, Record<string, number>>;
  countedAt: string | null;
}

/**
 * The dead letters the spool holds, by sink and reason, counted by one GROUP BY on its dead-letter table and kept
 * for DEAD_LETTER_COUNT_MS: a page refreshed every 5 s by several browsers reads the count, it does not make one.
 * Unlike the counter since the start, this is what the store holds, across restarts and `dlq` commands. A count
 * that fails (the spool closed, the file locked by a `dlq` command past its busy timeout) keeps the last one and is
 * tried again only after the same wait.
 */
export class DeadLetterCounts {
  private last: HeldDeadLetters = { bySink: {}, countedAt: null };
  private countedAtMs: number | undefined;

  constructor(
    private readonly o: { count: () => readonly DeadLetterCount[]; now?: () => number; intervalMs?: number },
  ) {}

  held(): HeldDeadLetters {
    const now = (this.o.now ?? Date.now)();
    if (this.countedAtMs !== undefined && now - this.countedAtMs < (this.o.intervalMs ?? DEAD_LETTER_COUNT_MS)) return this.last;
    this.countedAtMs = now;
    try {
      const bySink: Record<string, Record<string, number>> = {};
      for (const r of this.o.count()) if (r.count > 0) (bySink[r.sink] ??= {})[r.reason] = r.count;
      this.last = { bySink, countedAt: new Date(now).toISOString() };
    } catch {
      // Kept as it was; countedAt says how old it is.
    }
    return this.last;
  }
}
