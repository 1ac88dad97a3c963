/**
 * The births of the edge nodes in use, in memory: resolving a metric by alias costs a map lookup, not a query.
 * The store on disk is the truth; an edge node's births are read from it whole when first needed, kept in step
 * with every birth recorded and every prune, and dropped again, least recently used first, when the births held
 * grow past a bound (the node runs in a small heap).
 */
import type { BirthMetric, DecodedMetric } from './types.js';
import type { BirthStore, StoredBirth } from './births.js';

/** One birth, ready to resolve with. */
export interface Birth {
  spoolSeq: number;
  bdSeq?: bigint;
  byAlias: Map<bigint, BirthMetric>;
  byName: Map<string, BirthMetric>;
  /** Metrics held, for the cache's bound. */
  size: number;
}

/** What a message resolves with: its edge node's NBIRTH and, for a device message, its device's DBIRTH. */
export interface BirthPair {
  node?: Birth;
  device?: Birth;
}

export function birthOf(b: Pick<StoredBirth, 'spoolSeq' | 'bdSeq' | 'metrics'>): Birth {
  const byAlias = new Map<bigint, BirthMetric>();
  const byName = new Map<string, BirthMetric>();
  for (const m of b.metrics) {
    const metric = { name: m.name, datatype: m.datatype };
    byName.set(m.name, metric);
    if (m.alias !== undefined) byAlias.set(m.alias, metric);
  }
  const birth: Birth = { spoolSeq: b.spoolSeq, byAlias, byName, size: b.metrics.length };
  if (b.bdSeq !== undefined) birth.bdSeq = b.bdSeq;
  return birth;
}

/**
 * A metric as the births say it: by alias (aliases are unique per edge node, so a device's DBIRTH first, then
 * its NBIRTH), else by name, with the datatype the birth gave. A name no birth knows resolves from the metric
 * itself when it carries its datatype. `later` is consulted after `pair`: the births a rebirth brought.
 */
export function resolveMetric(m: DecodedMetric, pair: BirthPair, later?: BirthPair): BirthMetric | undefined {
  if (m.alias !== undefined) {
    const a = m.alias;
    const found = pair.device?.byAlias.get(a) ?? pair.node?.byAlias.get(a) ?? later?.device?.byAlias.get(a) ?? later?.node?.byAlias.get(a);
    if (found) return found;
  }
  if (m.name === undefined) return undefined;
  const n = m.name;
  const found = pair.device?.byName.get(n) ?? pair.node?.byName.get(n) ?? later?.device?.byName.get(n) ?? later?.node?.byName.get(n);
  if (found) return found;
  return m.datatype !== 0 ? { name: n, datatype: m.datatype } : undefined;
}

/** The last of `list` (ordered by spool seq) before `seq` and after `after`. */
function latestBefore(list: readonly Birth[] | undefined, seq: number, after = -1): Birth | undefined {
  if (!list) return undefined;
  for (let i = list.length - 1; i >= 0; i--) {
    const b = list[i]!;
    if (b.spoolSeq < seq) return b.spoolSeq > after ? b : undefined;
  }
  return undefined;
}

/** The first of `list` after `seq` and before `before`. */
function firstAfter(list: readonly Birth[] | undefined, seq: number, before = Number.POSITIVE_INFINITY): Birth | undefined {
  if (!list) return undefined;
  for (const b of list) if (b.spoolSeq > seq) return b.spoolSeq < before ? b : undefined;
  return undefined;
}

function insertOrdered(list: Birth[], b: Birth): void {
  let i = list.length;
  while (i > 0 && list[i - 1]!.spoolSeq > b.spoolSeq) i--;
  list.splice(i, 0, b);
}

/** One edge node's births: its NBIRTHs and each device's DBIRTHs, each list ordered by spool seq. */
export class EdgeBirths {
  readonly nodes: Birth[] = [];
  readonly devices = new Map<string, Birth[]>();
  private readonly seqs = new Set<number>();
  size = 0;

  has(spoolSeq: number): boolean {
    return this.seqs.has(spoolSeq);
  }

  add(b: Birth, device?: string): void {
    if (this.seqs.has(b.spoolSeq)) return;
    this.seqs.add(b.spoolSeq);
    this.size += b.size;
    if (device === undefined) return insertOrdered(this.nodes, b);
    let list = this.devices.get(device);
    if (!list) this.devices.set(device, (list = []));
    insertOrdered(list, b);
  }

  /**
   * The births in effect for a message at spool seq `seq`: the last NBIRTH before it, and the last DBIRTH of its
   * device before it and after that NBIRTH (a new NBIRTH replaces its devices' births).
   */
  inEffect(seq: number, device?: string): BirthPair {
    const node = latestBefore(this.nodes, seq);
    if (device === undefined) return { node };
    return { node, device: latestBefore(this.devices.get(device), seq, node?.spoolSeq) };
  }

  /**
   * The births recorded after a message at `seq`, as a rebirth brings them: the first NBIRTH after it, and the
   * first DBIRTH of its device after that (and before the NBIRTH after that one).
   */
  after(seq: number, device?: string): BirthPair {
    const node = firstAfter(this.nodes, seq);
    if (device === undefined) return { node };
    const next = node ? firstAfter(this.nodes, node.spoolSeq) : undefined;
    return { node, device: firstAfter(this.devices.get(device), node?.spoolSeq ?? seq, next?.spoolSeq) };
  }

  /** Drops what no message at `oldest` or later resolves with (as BirthStore.prune does on disk). */
  prune(oldest: number): void {
    const node = latestBefore(this.nodes, oldest)?.spoolSeq ?? -1;
    this.drop(this.nodes, node);
    for (const [device, list] of this.devices) {
      // A device's births before its own latest one, and before the NBIRTH in effect, which replaced them.
      this.drop(list, Math.max(node, latestBefore(list, oldest)?.spoolSeq ?? -1));
      if (list.length === 0) this.devices.delete(device);
    }
  }

  private drop(list: Birth[], before: number): void {
    let n = 0;
    while (n < list.length && list[n]!.spoolSeq < before) n++;
    for (const b of list.splice(0, n)) {
      this.seqs.delete(b.spoolSeq);
      this.size -= b.size;
    }
  }
}

/** The edge nodes' births in memory, at most about `maxMetrics` metrics of births (the one in use always). */
export class BirthCache {
  private readonly edges = new Map<string, EdgeBirths>();
  private size = 0;
  private last: string | undefined;

  constructor(
    private readonly store: BirthStore,
    private readonly maxMetrics: number,
  ) {}

  /** `key`: the edge node's `group/edgeNode` (Sparkplug ids hold no `/`). */
  get(key: string, group: string, edgeNode: string): EdgeBirths {
    let e = this.edges.get(key);
    if (e) {
      if (this.last !== key) {
        // Most recently used last: Map keeps insertion order, so the first entry is the one to evict.
        this.edges.delete(key);
        this.edges.set(key, e);
        this.last = key;
      }
      return e;
    }
    e = new EdgeBirths();
    for (const b of this.store.edgeBirths(group, edgeNode)) e.add(birthOf(b), b.device);
    this.edges.set(key, e);
    this.last = key;
    this.size += e.size;
    this.evict();
    return e;
  }

  /** A birth recorded in the store: held by its edge node's entry too. */
  add(e: EdgeBirths, b: Birth, device?: string): void {
    const before = e.size;
    e.add(b, device);
    this.size += e.size - before;
    this.evict();
  }

  prune(oldest: number): void {
    for (const e of this.edges.values()) {
      const before = e.size;
      e.prune(oldest);
      this.size += e.size - before;
    }
  }

  private evict(): void {
    for (const [key, e] of this.edges) {
      if (this.size <= this.maxMetrics || key === this.last) return;
      this.edges.delete(key);
      this.size -= e.size;
    }
  }
}
