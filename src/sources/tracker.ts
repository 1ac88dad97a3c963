/**
 * Per MQTT topic: when its last message arrived, how many came since it was first tracked, and a recent rate. The
 * rate is an exponentially weighted moving rate with a 5-minute time constant: each message adds 1/τ and the sum
 * decays by e^(-Δt/τ), so a steady λ messages per second converges to λ and a topic that stops decays towards 0.
 * A message costs one Map lookup and a few arithmetic operations; an entry is allocated only at a topic's first sight.
 */

/** The rate's time constant, seconds. */
export const RATE_TAU_SECONDS = 300;

/** One tracked topic; `rate` is per second as of `rateAt` (ms, wall clock). */
export interface SourceEntry {
  topic: string;
  lastSeenAt: number;
  rate: number;
  rateAt: number;
  messages: number;
  /** Changed since the last save (the store writes only these). */
  dirty: boolean;
}

/** One line of `GET /api/sources` (docs/operations.md, "Silent sources"). */
export interface SourceView {
  topic: string;
  lastSeenAt: string;
  quietSeconds: number;
  ratePerMinute: number;
  messages: number;
  silent: boolean;
}

export interface SourcesReport {
  silentAfterSeconds: number;
  tracked: number;
  untracked: number;
  silent: number;
  sources: SourceView[];
}

export class SourceTracker {
  private readonly entries = new Map<string, SourceEntry>();
  private dirtyList: SourceEntry[] = [];
  private untrackedCount = 0;

  constructor(
    private readonly opts: { max: number; silentAfterSeconds: number; now?: () => number; onUntracked?: () => void },
  ) {}

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  /** A message on `topic` received at `at` (ms, wall clock). */
  observe(topic: string, at: number): void {
    let e = this.entries.get(topic);
    if (e === undefined) {
      if (this.entries.size >= this.opts.max) {
        this.untrackedCount += 1;
        this.opts.onUntracked?.();
        return;
      }
      e = { topic, lastSeenAt: at, rate: 0, rateAt: at, messages: 0, dirty: false };
      this.entries.set(topic, e);
    }
    // A wall clock stepped back (or messages committed out of order) neither decays the rate nor moves lastSeenAt back.
    const dt = at - e.rateAt;
    if (dt > 0) {
      e.rate *= Math.exp(-dt / (RATE_TAU_SECONDS * 1000));
      e.rateAt = at;
    }
    e.rate += 1 / RATE_TAU_SECONDS;
    if (at > e.lastSeenAt) e.lastSeenAt = at;
    e.messages += 1;
    if (!e.dirty) {
      e.dirty = true;
      this.dirtyList.push(e);
    }
  }

  /** Entries read from the store at start; beyond `max`, the most recently seen are kept. */
  load(entries: readonly Omit<SourceEntry, 'dirty'>[]): void {
    const sorted = [...entries].sort((a, b) => b.lastSeenAt - a.lastSeenAt);
    for (const e of sorted) {
      if (this.entries.size >= this.opts.max) break;
      if (!this.entries.has(e.topic)) this.entries.set(e.topic, { ...e, dirty: false });
    }
  }

  /** The entries changed since the last call, marked clean. */
  takeDirty(): SourceEntry[] {
    const list = this.dirtyList;
    this.dirtyList = [];
    for (const e of list) e.dirty = false;
    return list;
  }

  /** Puts back entries a failed save did not write, so that the next save writes them. */
  restoreDirty(list: readonly SourceEntry[]): void {
    for (const e of list) {
      if (e.dirty) continue;
      e.dirty = true;
      this.dirtyList.push(e);
    }
  }

  get tracked(): number {
    return this.entries.size;
  }

  /** Messages of topics first seen while the table was full, since start. */
  get untracked(): number {
    return this.untrackedCount;
  }

  get silentAfterSeconds(): number {
    return this.opts.silentAfterSeconds;
  }

  /** Tracked topics quiet for longer than SILENT_AFTER_SECONDS now. */
  silentCount(): number {
    const cutoff = this.now() - this.opts.silentAfterSeconds * 1000;
    let n = 0;
    for (const e of this.entries.values()) if (e.lastSeenAt < cutoff) n += 1;
    return n;
  }

  /** The rate of `e` now, messages per minute. */
  private ratePerMinute(e: SourceEntry, now: number): number {
    const dt = Math.max(0, now - e.rateAt);
    return e.rate * Math.exp(-dt / (RATE_TAU_SECONDS * 1000)) * 60;
  }

  /** The table as `GET /api/sources` shows it: silent topics first, then by topic. */
  report(silentOnly = false): SourcesReport {
    const now = this.now();
    const views: SourceView[] = [];
    let silent = 0;
    for (const e of this.entries.values()) {
      // Whole milliseconds over 1000: a topic just past SILENT_AFTER_SECONDS shows a quietSeconds above it.
      const quietSeconds = Math.max(0, now - e.lastSeenAt) / 1000;
      const isSilent = quietSeconds > this.opts.silentAfterSeconds;
      if (isSilent) silent += 1;
      if (silentOnly && !isSilent) continue;
      views.push({
        topic: e.topic,
        lastSeenAt: new Date(e.lastSeenAt).toISOString(),
        quietSeconds,
        ratePerMinute: Math.round(this.ratePerMinute(e, now) * 1000) / 1000,
        messages: e.messages,
        silent: isSilent,
      });
    }
    views.sort((a, b) => (a.silent !== b.silent ? (a.silent ? -1 : 1) : a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0));
    return { silentAfterSeconds: this.opts.silentAfterSeconds, tracked: this.entries.size, untracked: this.untrackedCount, silent, sources: views };
  }
}
