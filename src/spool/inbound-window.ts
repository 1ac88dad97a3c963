import type Database from 'better-sqlite3';
import { ConnectionEntries, ENTRY_BYTES, KEEP_POSITIONS } from './connection-entries.js';

/** Journal rows are pruned after this many new entries (one pass over the row list, amortised). */
const PRUNE_EVERY = 4096;
/**
 * The in-flight bound W: the Receive Maximum the subscriber advertises (MQTT 5: the broker MUST NOT exceed it,
 * MQTT-4.9.0-2). With MQTT 3.1.1 nothing bounds it in the protocol: the node assumes the broker keeps fewer
 * than 65,535 - W messages in flight towards it (Mosquitto's max_inflight_messages; the node renders 1000).
 */
export const DEFAULT_INFLIGHT_WINDOW = 10_000;

/**
 * Where a QoS 1/2 message came from: the subscriber connection (epoch, counted by the spool across restarts)
 * and its position among that connection's QoS 1/2 PUBLISH packets (1, 2, …, in arrival order).
 */
export interface SessionTag {
  epoch: number;
  position: number;
}

/** What the window needs of a message: packet id and DUP flag as received, and where it came from. */
export interface WindowMessage extends SessionTag {
  packetId: number;
  dup?: boolean;
}

/** Matching state of one subscriber connection against the connection before it. */
interface ConnectionState {
  window: number;
  /** Once a redelivery placed the run: the position of the previous connection the next one must have. */
  next: number | undefined;
  /** The redeliveries did not follow the previous connection's order: nothing more is matched by position. */
  broken: boolean;
  /** Positions of the previous connection already matched (each is redelivered once per connection). */
  consumed: Set<number>;
}

/** The previous connection's entries a redelivery may be: its last `window` positions, with counts. */
interface Candidates {
  epoch: number;
  version: number;
  window: number;
  from: number;
  last: number;
  /** Packet id → its latest position in the window (an id is bound to its latest use). */
  byId: Map<number, number>;
  idCount: Map<number, number>;
  digestCount: Map<string, number>;
}

/**
 * Recognises a broker's DUP redelivery of a message committed just before its connection died (ARCHITECTURE
 * §2.3), and stores everything it cannot be sure of: a duplicate has its own message_id, a loss is final.
 *
 * Why a digest match is not enough: packet ids are reused (Mosquitto counts 1..65,535 per client and wraps),
 * and a repeating sensor gives every message one digest. The message in flight but not yet committed at a
 * crash comes back with DUP under a packet id whose last journalled use, with the same digest, was another
 * message: a skip there is a loss. So a redelivery is matched only where the protocol makes it certain:
 *
 * 1. Previous connection only. The broker resends, with their original packet ids (MQTT-4.4.0-1), exactly the
 *    messages of the previous connection whose PUBACK it never received. An id is bound to one message until
 *    its PUBACK (MQTT-2.2.1-3). Entries are journalled per connection (epoch); a redelivery on connection c is
 *    compared only with the newest connection before c that has entries. (A connection with no entries
 *    committed nothing, so wrote no PUBACK: the broker's in-flight set is as the connection before left it.)
 * 2. Inside the in-flight window. PUBACKs are written in arrival order and TCP keeps it, and the broker holds
 *    at most W unacknowledged (Receive Maximum): when position L arrived, the PUBACKs of positions up to L - W
 *    had reached it. Entries at or below L - W (L: the last position committed) can never be redelivered.
 * 3. In the broker's order. Resends keep the original order (MQTT-4.6.0-1) and are the positions a+1, a+2, …
 *    of the previous connection, a being the PUBACKs the broker received. Once one redelivery is placed at
 *    position e, the next must be e+1, e+2, …: it is skipped only if the entry at that position has its packet
 *    id and digest; a position with no entry is a message never committed (stored); any other disagreement
 *    ends matching for the connection.
 * 4. Placing the run needs a certain first match: the latest entry under the packet id in the window has
 *    the digest, and either its PUBACK was never written (the connection had closed first: recorded by
 *    endConnection; the broker still binds that id to it, so nothing else can come back under it), or both
 *    the packet id and the digest occur once in the window. A redelivery whose packet id or digest repeats
 *    there is stored, and a later one may place the run. A first redelivery that matches no entry at all is a
 *    message never committed, and so is every one after it (the committed run would have come first).
 *
 * What remains assumed: with rules 2-4, a new message mistaken for an entry would need the broker to give it
 * that entry's packet id within 2W messages of the entry, with the same digest, while the digest was unique in
 * the window. A broker that numbers by a counter reuses an id only after 65,535 others, more than
 * 2W = 20,000: Mosquitto (per client, 1..65,535) and Aedes (qos-packet.js) do. A broker that hands a freed
 * id straight back could, for a payload that appears once in W messages and is repeated right after, at the
 * instant of a crash.
 *
 * Journal: one row per commit and connection (packet id + digest per position, consecutive from
 * first_position), in the transaction that stores the messages; replayed at open. Only the two newest
 * connections with entries are kept, each for its last 65,535 positions.
 */
export class InboundWindow {
  private readonly connections = new Map<number, ConnectionEntries>();
  private rows: { id: number; epoch: number; last: number }[] = [];
  private readonly states = new Map<number, ConnectionState>();
  private maxEpoch = 0;
  /** PUBACKs written on a connection that has closed: up to this position (later ones never were). */
  private acksWritten: { epoch: number; position: number } | undefined;
  private cache: Candidates | undefined;
  private sincePrune = 0;
  private tx:
    | {
        /** Epoch and position of each entry the transaction added, in order (two arrays: no object per message). */
        addEpochs: number[];
        addPositions: number[];
        lastBefore: Map<number, number>;
        saved: Map<number, { next: number | undefined; broken: boolean; consumed: number[] }>;
        rows: { id: number; epoch: number; last: number }[];
        pruned: Set<number> | undefined;
        keep: number[];
      }
    | undefined;
  private readonly insert;
  private readonly prune;

  constructor(private readonly db: Database.Database) {
    this.insert = db.prepare('INSERT INTO inbound_window_log (entries, epoch, first_position) VALUES (?, ?, ?)');
    this.prune = db.prepare('DELETE FROM inbound_window_log WHERE id IN (SELECT value FROM json_each(?))');
    const rows = db.prepare('SELECT id, epoch, first_position, entries FROM inbound_window_log ORDER BY id').iterate() as Iterable<{
      id: number;
      epoch: number;
      first_position: number;
      entries: Buffer;
    }>;
    for (const row of rows) {
      const count = Math.floor(row.entries.length / ENTRY_BYTES);
      if (row.epoch <= 0 || count === 0) continue;
      const log = this.entriesOf(row.epoch);
      for (let i = 0; i < count; i++) {
        const at = i * ENTRY_BYTES;
        log.add(row.first_position + i, row.entries.readUInt16BE(at), row.entries.subarray(at + 2, at + ENTRY_BYTES));
      }
      this.rows.push({ id: row.id, epoch: row.epoch, last: row.first_position + count - 1 });
      this.maxEpoch = Math.max(this.maxEpoch, row.epoch);
    }
    const acked = /^(\d+):(\d+)$/.exec((db.prepare("SELECT value FROM meta WHERE key = 'inbound_acks_written'").pluck().get() as string | undefined) ?? '');
    if (acked) {
      this.acksWritten = { epoch: Number(acked[1]), position: Number(acked[2]) };
      this.maxEpoch = Math.max(this.maxEpoch, this.acksWritten.epoch);
    }
  }

  /** A new subscriber connection: its epoch, and the in-flight bound W its broker keeps to. */
  beginConnection(window = DEFAULT_INFLIGHT_WINDOW): number {
    const epoch = ++this.maxEpoch;
    this.states.set(epoch, { window, next: undefined, broken: false, consumed: new Set() });
    for (const e of this.states.keys()) if (e < epoch - 4) this.states.delete(e);
    return epoch;
  }

  /**
   * A connection has closed, having written PUBACKs up to `position`: the messages after it that are (or will
   * be) committed never had their PUBACK written, so the broker still binds their packet ids to them. Kept
   * in meta for the next start; if that write is lost, those entries are simply treated as uncertain.
   */
  endConnection(epoch: number, position: number): void {
    this.acksWritten = { epoch, position };
    try {
      this.db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('inbound_acks_written', ?)").run(`${epoch}:${position}`);
    } catch {
      // Not recorded: after a restart these entries need rule 4's uniqueness, nothing worse.
    }
  }

  /** Call before the transaction that stores a group; then commit() or rollback(). */
  begin(): void {
    this.tx = { addEpochs: [], addPositions: [], lastBefore: new Map(), saved: new Map(), rows: [], pruned: undefined, keep: [] };
  }

  /**
   * True when this DUP message is certainly a redelivery of a committed message (see the class comment).
   * Call inside the transaction; record() the message afterwards, whether skipped or stored.
   */
  isRedelivery(m: WindowMessage, digest: Buffer): boolean {
    if (!m.dup) return false;
    const state = this.stateOf(m.epoch);
    const prev = this.previousEpoch(m.epoch);
    if (prev === undefined) return false;
    const log = this.connections.get(prev)!;
    const c = this.candidates(prev, log, state.window);
    const e = c.byId.get(m.packetId);
    const free = e !== undefined && log.digestEquals(e, digest) && !state.consumed.has(e);
    const unwritten = free && this.acksWritten?.epoch === prev && e > this.acksWritten.position;
    this.save(m.epoch, state);
    if (state.next !== undefined) {
      const n = state.next;
      state.next = n + 1;
      const at = n <= c.last ? log.packetIdAt(n) : 0;
      if (at !== 0 && at === m.packetId && log.digestEquals(n, digest) && !state.consumed.has(n)) return this.consume(m.epoch, state, n);
      // Position n was never committed (a new message: stored), unless the redelivery matches an entry after
      // all, or position n holds another message: either way the broker's order does not hold here.
      if (at !== 0 || unwritten) {
        state.next = undefined;
        state.broken = true;
      }
      return false;
    }
    if (!state.broken) {
      if (free) {
        if (unwritten || (c.idCount.get(m.packetId) === 1 && c.digestCount.get(digest.toString('latin1')) === 1)) {
          state.next = e + 1;
          return this.consume(m.epoch, state, e);
        }
        return false;
      }
      state.broken = true;
      return false;
    }
    return unwritten ? this.consume(m.epoch, state, e!) : false;
  }

  /** Journals a QoS 1/2 message (stored or skipped) in memory; write() puts the transaction's entries in the journal. */
  record(m: SessionTag & { packetId: number }, digest: Buffer): void {
    const tx = this.tx!;
    const log = this.entriesOf(m.epoch);
    if (!tx.lastBefore.has(m.epoch)) tx.lastBefore.set(m.epoch, log.last);
    log.add(m.position, m.packetId, digest);
    tx.addEpochs.push(m.epoch);
    tx.addPositions.push(m.position);
    if (m.epoch > this.maxEpoch) this.maxEpoch = m.epoch;
  }

  /** Writes the transaction's entries (one row per run of consecutive positions) and prunes; inside the transaction. */
  write(): void {
    const tx = this.tx!;
    const n = tx.addEpochs.length;
    let i = 0;
    while (i < n) {
      const epoch = tx.addEpochs[i]!;
      const first = tx.addPositions[i]!;
      let j = i + 1;
      while (j < n && tx.addEpochs[j] === epoch && tx.addPositions[j] === first + (j - i)) j += 1;
      const count = j - i;
      const id = Number(this.insert.run(this.connections.get(epoch)!.run(first, count), epoch, first).lastInsertRowid);
      tx.rows.push({ id, epoch, last: first + count - 1 });
      i = j;
    }
    this.sincePrune += n;
    if (this.sincePrune < PRUNE_EVERY && this.connections.size <= 2) return;
    this.sincePrune = 0;
    const keep = [...this.connections.entries()].filter(([, log]) => log.last > 0).map(([epoch]) => epoch).sort((a, b) => b - a).slice(0, 2);
    const pruned = new Set<number>();
    for (const r of [...this.rows, ...tx.rows]) {
      const log = this.connections.get(r.epoch);
      if (!keep.includes(r.epoch) || !log || r.last <= log.last - KEEP_POSITIONS) pruned.add(r.id);
    }
    if (pruned.size > 0) this.prune.run(JSON.stringify([...pruned]));
    tx.pruned = pruned;
    tx.keep = keep;
  }

  /** The transaction committed: its entries and matches stand. */
  commit(): void {
    const tx = this.tx;
    if (!tx) return;
    this.tx = undefined;
    this.rows.push(...tx.rows);
    if (!tx.pruned) return;
    const pruned = tx.pruned;
    this.rows = this.rows.filter((r) => !pruned.has(r.id));
    // Memory follows the journal: a connection no longer kept cannot be matched after a restart either.
    for (const [epoch, log] of this.connections) {
      if (!tx.keep.includes(epoch)) this.connections.delete(epoch);
      // Compacted only once a quarter of the kept span is waste (each compaction copies the slots).
      else if (log.last - KEEP_POSITIONS + 1 - log.base > KEEP_POSITIONS / 4) log.dropBefore(log.last - KEEP_POSITIONS + 1);
    }
  }

  /** The transaction failed: nothing of it happened. */
  rollback(): void {
    const tx = this.tx;
    if (!tx) return;
    this.tx = undefined;
    for (let i = tx.addEpochs.length - 1; i >= 0; i--) {
      const epoch = tx.addEpochs[i]!;
      this.connections.get(epoch)?.remove(tx.addPositions[i]!, tx.lastBefore.get(epoch) ?? 0);
    }
    for (const [epoch, saved] of tx.saved) {
      const state = this.states.get(epoch);
      if (!state) continue;
      state.next = saved.next;
      state.broken = saved.broken;
      for (const p of saved.consumed) state.consumed.delete(p);
    }
  }

  private consume(epoch: number, state: ConnectionState, position: number): true {
    state.consumed.add(position);
    this.tx!.saved.get(epoch)?.consumed.push(position);
    return true;
  }

  private save(epoch: number, state: ConnectionState): void {
    const saved = this.tx!.saved;
    if (!saved.has(epoch)) saved.set(epoch, { next: state.next, broken: state.broken, consumed: [] });
  }

  private stateOf(epoch: number): ConnectionState {
    let state = this.states.get(epoch);
    if (!state) {
      state = { window: DEFAULT_INFLIGHT_WINDOW, next: undefined, broken: false, consumed: new Set() };
      this.states.set(epoch, state);
    }
    return state;
  }

  private entriesOf(epoch: number): ConnectionEntries {
    let log = this.connections.get(epoch);
    if (!log) {
      log = new ConnectionEntries();
      this.connections.set(epoch, log);
    }
    return log;
  }

  /** The newest connection before `epoch` that has entries. */
  private previousEpoch(epoch: number): number | undefined {
    let best: number | undefined;
    for (const [e, log] of this.connections) if (e < epoch && log.last > 0 && (best === undefined || e > best)) best = e;
    return best;
  }

  private candidates(epoch: number, log: ConnectionEntries, window: number): Candidates {
    const c = this.cache;
    if (c && c.epoch === epoch && c.version === log.version && c.window === window) return c;
    const from = Math.max(log.base, log.last - window + 1);
    const next: Candidates = { epoch, version: log.version, window, from, last: log.last, byId: new Map(), idCount: new Map(), digestCount: new Map() };
    for (let p = from; p <= log.last; p++) {
      const id = log.packetIdAt(p);
      if (id === 0) continue;
      next.byId.set(id, p);
      next.idCount.set(id, (next.idCount.get(id) ?? 0) + 1);
      const key = log.digestKey(p);
      next.digestCount.set(key, (next.digestCount.get(key) ?? 0) + 1);
    }
    this.cache = next;
    return next;
  }
}
