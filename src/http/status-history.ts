import type { Registry } from 'prom-client';
import type { DeadLetterCounts } from './dead-letter-counts.js';

/** Seconds between samples, and how many are kept: one hour. */
export const SAMPLE_SECONDS = 10;
const KEPT = 3600 / SAMPLE_SECONDS;
/** The windows of the rates, in minutes. */
const WINDOWS = [1, 5, 15] as const;

interface Sample {
  at: number;
  received: number;
  delivered: Record<string, number>;
  spoolMessages: number;
  oldestAgeSeconds: number;
}

export interface Rates {
  m1: number | null;
  m5: number | null;
  m15: number | null;
}

/** What the status page shows over time, read from the node's own metrics (kept in memory, lost at a restart). */
export interface StatusHistoryView {
  /**
   * Messages per second taken into the spool, and delivered per sink, over the last 1, 5 and 15 minutes (since the
   * start when the node ran less long; null until two samples).
   */
  rates: { in: Rates; sinks: Record<string, Rates> };
  /** The spool's depth and oldest age, one point per SAMPLE_SECONDS, the last hour. */
  spool: Array<{ at: string; messages: number; oldestAgeSeconds: number }>;
  /** Dead letters written since the start, by sink and reason. */
  deadLetters: Record<string, Record<string, number>>;
  /**
   * Dead letters the store holds now, by sink and reason (dead-letter-counts.ts: counted at most every 10 s), whoever
   * made them: before a restart, or put back by `dlq replay` and gone after `dlq purge`.
   */
  deadLettersHeld: Record<string, Record<string, number>>;
  /** When `deadLettersHeld` was counted; null before the first count. */
  deadLettersCountedAt: string | null;
  /** Clients connected to the node's own broker now (`mqtt_ingest_broker_clients_connected`; null in external mode). */
  brokerClients: number | null;
}

/**
 * Samples the node's counters every SAMPLE_SECONDS for the status page: rates are differences of the counters
 * Prometheus would scrape (`mqtt_ingest_messages_received_total`, `_delivered_total{sink}`), so the page and a
 * dashboard agree. Reading the registry needs no hook in the data path.
 */
export class StatusHistory {
  private readonly samples: Sample[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly o: { registry: Registry; refresh: () => void; now?: () => number; deadLetters?: DeadLetterCounts },
  ) {}

  start(): void {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), SAMPLE_SECONDS * 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  private async values(name: string): Promise<Array<{ labels: Record<string, string | number>; value: number }>> {
    const metric = this.o.registry.getSingleMetric(name);
    if (!metric) return [];
    return (await metric.get()).values as Array<{ labels: Record<string, string | number>; value: number }>;
  }

  async sample(): Promise<void> {
    this.o.refresh();
    const sum = (vs: Array<{ value: number }>) => vs.reduce((n, v) => n + v.value, 0);
    const delivered: Record<string, number> = {};
    for (const v of await this.values('mqtt_ingest_messages_delivered_total')) {
      const sink = String(v.labels.sink ?? '');
      delivered[sink] = (delivered[sink] ?? 0) + v.value;
    }
    this.samples.push({
      at: this.now(),
      received: sum(await this.values('mqtt_ingest_messages_received_total')),
      delivered,
      spoolMessages: sum(await this.values('mqtt_ingest_spool_messages')),
      oldestAgeSeconds: sum(await this.values('mqtt_ingest_spool_oldest_age_seconds')),
    });
    if (this.samples.length > KEPT) this.samples.shift();
  }

  /** The rates, the last hour of the spool, and the dead letters (the counter read now, the store's count cached). */
  async view(): Promise<StatusHistoryView> {
    const last = this.samples.at(-1);
    const rate = (pick: (s: Sample) => number | undefined): Rates => {
      const out: Rates = { m1: null, m5: null, m15: null };
      if (!last) return out;
      for (const m of WINDOWS) {
        // The oldest sample within the window (since the start when the node ran less long); null before two samples.
        const from = this.samples.find((s) => last.at - s.at <= m * 60_000 + 1);
        if (!from || last.at - from.at < SAMPLE_SECONDS * 1000) continue;
        const a = pick(from) ?? 0;
        const b = pick(last) ?? 0;
        out[`m${m}` as keyof Rates] = Math.max(0, b - a) / ((last.at - from.at) / 1000);
      }
      return out;
    };
    const sinks: Record<string, Rates> = {};
    for (const sink of Object.keys(last?.delivered ?? {})) sinks[sink] = rate((s) => s.delivered[sink]);
    const deadLetters: Record<string, Record<string, number>> = {};
    for (const v of await this.values('mqtt_ingest_dead_letters_total')) {
      const sink = String(v.labels.sink ?? '');
      const reason = String(v.labels.reason ?? '');
      if (v.value > 0) (deadLetters[sink] ??= {})[reason] = v.value;
    }
    const clients = await this.values('mqtt_ingest_broker_clients_connected');
    const held = this.o.deadLetters?.held() ?? { bySink: {}, countedAt: null };
    return {
      brokerClients: clients.length > 0 ? clients.reduce((n, v) => n + v.value, 0) : null,
      rates: { in: rate((s) => s.received), sinks },
      spool: this.samples.map((s) => ({ at: new Date(s.at).toISOString(), messages: s.spoolMessages, oldestAgeSeconds: s.oldestAgeSeconds })),
      deadLetters,
      deadLettersHeld: held.bySink,
      deadLettersCountedAt: held.countedAt,
    };
  }
}
