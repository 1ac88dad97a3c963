/**
 * The node as a Sparkplug host (types.ts, SparkplugHost): one object shared by every sink runner's routing.
 * Births are recorded durably, once, by whichever runner routes them first (births.ts), and each message resolves
 * with the births before it in the spool (births-cache.ts), so that a backlog, or three runners far apart,
 * resolve exactly as the edge node meant. The counting caller also counts seq gaps (host-seq.ts) and unresolved
 * metrics, logs stale deaths and, with SPARKPLUG_REBIRTH on, asks for rebirths (host-rebirth.ts).
 */
import { withCode } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import { BirthStore, type StoredBirth } from './births.js';
import { BirthCache, birthOf, resolveMetric, type BirthPair, type EdgeBirths } from './births-cache.js';
import { Rebirths } from './host-rebirth.js';
import { SeqTracker } from './host-seq.js';
import type { BirthMetric, DecodedMetric, DecodedPayload, Resolution, SparkplugHost, SparkplugObservation, SparkplugTopic } from './types.js';

export interface SparkplugHostOptions {
  /** The births file: `birthsFile(DATA_DIR)`. */
  file: string;
  /**
   * The spool's id (its meta `spool_id`). Births are placed by spool seq, and a new spool counts from 1 again: a
   * births file kept from another spool is emptied.
   */
  spoolId: string;
  /** The spool seq of the oldest message still in the spool, undefined when it is empty; a throw skips the prune. */
  oldestSpoolSeq: () => number | undefined;
  /**
   * Publishes NCMD `Node Control/Rebirth` to the edge node (rebirthTopic, rebirthPayload), without waiting for
   * it; it must not throw. Called by the counting caller only, with `rebirth` on.
   */
  requestRebirth: (group: string, edgeNode: string) => void;
  /** SPARKPLUG_REBIRTH. */
  rebirth: boolean;
  /** SPARKPLUG_BIRTH_WAIT_SECONDS, in ms. */
  birthWaitMs: number;
  /** Monotonic milliseconds (DualClock.monotonic): the rebirth deadlines, the log and prune intervals. */
  monotonic: () => number;
  metrics: Pick<Metrics, 'sparkplugSeqGaps' | 'sparkplugUnresolved'>;
  logger: Logger;
  /** Births held in memory, in metrics (default 200,000); more are read again from the file when needed. */
  cacheMetrics?: number;
  /** How often the births no message needs any more are deleted (default 60 s). */
  pruneIntervalMs?: number;
}

type EdgeTopic = Exclude<SparkplugTopic, { type: 'STATE' }>;
type Births = (BirthMetric | undefined)[];

const STALE: Resolution = { kind: 'stale_death' };

export class SparkplugNodeHost implements SparkplugHost {
  private readonly store: BirthStore;
  private readonly cache: BirthCache;
  private readonly seqs: SeqTracker;
  private readonly rebirths: Rebirths;
  private readonly pruneIntervalMs: number;
  private lastPrune: number;

  constructor(private readonly o: SparkplugHostOptions) {
    this.store = new BirthStore(o.file, { spoolId: o.spoolId });
    this.cache = new BirthCache(this.store, o.cacheMetrics ?? 200_000);
    this.seqs = new SeqTracker({ store: this.store, metrics: o.metrics, logger: o.logger, monotonic: o.monotonic });
    this.rebirths = new Rebirths({ birthWaitMs: o.birthWaitMs, monotonic: o.monotonic, requestRebirth: o.requestRebirth, logger: o.logger });
    this.pruneIntervalMs = o.pruneIntervalMs ?? 60_000;
    this.lastPrune = o.monotonic();
  }

  /**
   * Throws only when the births file cannot be read or written (a full disk, a disk error): a birth is then not
   * recorded, and the message should be routed again later, not delivered.
   */
  observe(obs: SparkplugObservation, counting: boolean, mayWait = true): Resolution {
    const t = obs.topic;
    const p = obs.payload;
    if (t.type === 'STATE' || !p) return { kind: 'resolved', births: [] };
    if (this.o.monotonic() - this.lastPrune >= this.pruneIntervalMs) this.prune();
    const key = `${t.group}/${t.edgeNode}`;
    const edge = this.cache.get(key, t.group, t.edgeNode);
    const fresh = counting && this.seqs.fresh(obs.spoolSeq);
    if (fresh) this.seqs.count(obs.spoolSeq, obs.messageId, key, t, p);
    let births: Births;
    switch (t.type) {
      case 'NBIRTH':
      case 'DBIRTH':
        births = this.birth(obs, key, t, p, edge);
        break;
      case 'NDEATH': {
        const pair = edge.inEffect(obs.spoolSeq);
        const bdSeq = bdSeqOf(p.metrics);
        const birthBdSeq = pair.node?.bdSeq;
        if (bdSeq !== undefined && birthBdSeq !== undefined && bdSeq !== birthBdSeq) {
          if (fresh) {
            this.o.logger.info(
              withCode('SPARKPLUG_STALE_DEATH', { group: t.group, edgeNode: t.edgeNode, bdSeq: String(bdSeq), birthBdSeq: String(birthBdSeq), message_id: obs.messageId }),
              `stale NDEATH from ${t.group}/${t.edgeNode} ignored: its bdSeq ${bdSeq} is not the NBIRTH's ${birthBdSeq}`,
            );
          }
          return STALE;
        }
        births = p.metrics.map((m) => resolveMetric(m, pair));
        break;
      }
      default: {
        const r = this.data(obs, key, t, p, edge, counting, fresh, mayWait);
        if (!Array.isArray(r)) return r;
        return { kind: 'resolved', births: r };
      }
    }
    if (fresh) this.countUnresolved(births);
    return { kind: 'resolved', births };
  }

  private birth(obs: SparkplugObservation, key: string, t: EdgeTopic, p: DecodedPayload, edge: EdgeBirths): Births {
    const device = t.type === 'DBIRTH' ? t.device : undefined;
    if (!edge.has(obs.spoolSeq) && (t.type === 'NBIRTH' || device !== undefined)) {
      const stored: StoredBirth = { spoolSeq: obs.spoolSeq, messageId: obs.messageId, group: t.group, edgeNode: t.edgeNode, metrics: [] };
      if (device !== undefined) stored.device = device;
      for (const m of p.metrics) {
        if (m.name === undefined) continue;
        stored.metrics.push(m.alias === undefined ? { name: m.name, datatype: m.datatype } : { name: m.name, alias: m.alias, datatype: m.datatype });
      }
      if (t.type === 'NBIRTH') {
        const bdSeq = bdSeqOf(p.metrics);
        if (bdSeq !== undefined) stored.bdSeq = bdSeq;
      }
      if (this.store.insert(stored)) {
        this.cache.add(edge, birthOf(stored), device);
        if (t.type === 'NBIRTH') this.rebirths.born(key, obs.spoolSeq);
      }
    }
    return p.metrics.map((m) => (m.name === undefined ? undefined : { name: m.name, datatype: m.datatype }));
  }

  /** Data, device deaths and commands: each metric by its births, or a wait for the births a rebirth brings. */
  private data(obs: SparkplugObservation, key: string, t: EdgeTopic, p: DecodedPayload, edge: EdgeBirths, counting: boolean, fresh: boolean, mayWait: boolean): Births | Resolution {
    const seq = obs.spoolSeq;
    const device = t.device;
    const waiting = this.rebirths.waits.get(seq);
    if (waiting) {
      if (!waiting.settled) {
        const pair = edge.inEffect(seq, device);
        const later = edge.after(seq, device);
        const births = p.metrics.map((m) => resolveMetric(m, pair, later));
        if (mayWait && !births.every(Boolean) && !answered(later, device) && this.o.monotonic() < waiting.untilMs) {
          return { kind: 'wait', untilMs: waiting.untilMs };
        }
        waiting.settled = births;
      }
      if (counting && !waiting.counted) {
        waiting.counted = true;
        this.countUnresolved(waiting.settled);
      }
      return waiting.settled.slice();
    }
    const pair = edge.inEffect(seq, device);
    let births = p.metrics.map((m) => resolveMetric(m, pair));
    if (this.o.rebirth && (t.type === 'NDATA' || t.type === 'DDATA')) {
      const noBirth = device === undefined ? !pair.node : !pair.device;
      if (noBirth || !births.every(Boolean)) {
        const later = edge.after(seq, device);
        if (answered(later, device)) births = p.metrics.map((m) => resolveMetric(m, pair, later));
        else if (fresh && mayWait) {
          const untilMs = this.rebirths.need(key, t.group, t.edgeNode, seq, obs.messageId, noBirth ? 'no_birth' : 'unknown_alias');
          if (untilMs !== undefined) return { kind: 'wait', untilMs };
        }
      }
    }
    if (fresh) this.countUnresolved(births);
    return births;
  }

  private countUnresolved(births: Births): void {
    let n = 0;
    for (const b of births) if (b === undefined) n++;
    if (n > 0) this.o.metrics.sparkplugUnresolved.inc(n);
  }

  /** Deletes the births no message still in the spool resolves with (observe does it every pruneIntervalMs). */
  prune(): void {
    this.lastPrune = this.o.monotonic();
    let oldest: number | undefined;
    try {
      oldest = this.o.oldestSpoolSeq();
      this.store.prune(oldest);
    } catch (err) {
      // Births kept longer do no harm: the next prune deletes them.
      this.o.logger.debug({ err: (err as Error).message }, 'Sparkplug births not pruned; tried again later');
      return;
    }
    this.cache.prune(oldest ?? Number.MAX_SAFE_INTEGER);
    this.rebirths.prune(oldest ?? Number.MAX_SAFE_INTEGER);
  }

  /** Writes the seq progress and closes the births file. */
  close(): void {
    this.seqs.flush();
    this.store.close();
  }
}

/** A rebirth came for a message: the NBIRTH after it and, for a device message, its device's DBIRTH after that. */
function answered(later: BirthPair, device: string | undefined): boolean {
  return later.node !== undefined && (device === undefined || later.device !== undefined);
}

/** The `bdSeq` metric of an NBIRTH or NDEATH (Int64 or UInt64, so longValue; intValue from lax edge nodes). */
export function bdSeqOf(metrics: readonly DecodedMetric[]): bigint | undefined {
  for (const m of metrics) {
    if (m.name !== 'bdSeq') continue;
    if (m.raw.field === 'longValue') return m.raw.value;
    if (m.raw.field === 'intValue') return BigInt(m.raw.value);
    return undefined;
  }
  return undefined;
}
