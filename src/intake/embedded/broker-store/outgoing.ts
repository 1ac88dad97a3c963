import type Database from 'better-sqlite3';
import { Readable } from 'node:stream';
import { decodePacket, encodePacket, Packet, sqlKey, type AnyPacket } from './packet-codec.js';
import { pages, PAGE_ROWS } from './store-file.js';

export interface QueueLimit {
  /** Messages one client's queue holds at most; a message for a full queue is not queued. */
  maxPerClient: number;
  /** Called once per client and enqueue call that dropped messages, after the others were stored. */
  onDropped?: (clientId: string, count: number) => void;
}

interface FoundRow {
  seq: number;
  sameBroker: number;
  packet: Buffer;
}

/**
 * Each client's queue of outgoing QoS 1 and 2 messages (and the PUBRELs that replace them), in order, with the
 * message counts in memory (read at open) so that the limit costs no query.
 *
 * Aedes enqueues a message for every persistent session, connected or not, and for a connected one then asks
 * outgoingUpdate to give it its packet id. A message dropped by the limit is not in the queue, and the reference's
 * answer, "no such packet", would make Aedes close that client's connection. So the ids of dropped messages are
 * remembered (per client, at most maxPerClient of them): their update, their PUBREL and their acknowledgement
 * succeed without touching the queue, and Aedes still writes them to a connected client, unqueued (lost if the
 * connection drops, as a message beyond Mosquitto's max_queued_messages is).
 */
export class OutgoingQueues {
  private readonly counts = new Map<string, number>();
  private total = 0;
  /** Per client: `p` + brokerId/brokerCounter of dropped messages, `m` + packet id once Aedes gave them one. */
  private readonly untracked = new Map<string, Set<string>>();
  private readonly insert: Database.Statement<[string, unknown, unknown, unknown, Buffer]>;
  private readonly find: Database.Statement<[Record<string, unknown>], FoundRow>;
  private readonly setId: Database.Statement<[unknown, Buffer, number]>;
  private readonly replace: Database.Statement<[unknown, unknown, unknown, Buffer, number]>;
  private readonly findId: Database.Statement<[string, unknown], { seq: number; packet: Buffer }>;
  private readonly removeSeq: Database.Statement<[number]>;
  private readonly removeClient: Database.Statement<[string]>;
  private readonly lastSeq: Database.Statement<[string], number | null>;
  private readonly page: Database.Statement<[string, number, number, number], { seq: number; packet: Buffer }>;

  constructor(
    private readonly db: Database.Database,
    private readonly limit: QueueLimit,
  ) {
    this.insert = db.prepare('INSERT INTO outgoing (client_id, broker_id, broker_counter, message_id, packet) VALUES (?, ?, ?, ?, ?)');
    // The reference's walk through the queue, in one statement: the first packet of the same broker and counter
    // (its packet id is set), or else of another broker with the same packet id (replaced: a PUBREL).
    this.find = db.prepare(
      `SELECT seq, (broker_id IS @bid AND broker_counter IS @bc) AS sameBroker, packet FROM outgoing
       WHERE client_id = @client AND ((broker_id IS @bid AND broker_counter IS @bc) OR (broker_id IS NOT @bid AND message_id IS @mid))
       ORDER BY seq LIMIT 1`,
    );
    this.setId = db.prepare('UPDATE outgoing SET message_id = ?, packet = ? WHERE seq = ?');
    this.replace = db.prepare('UPDATE outgoing SET broker_id = ?, broker_counter = ?, message_id = ?, packet = ? WHERE seq = ?');
    this.findId = db.prepare('SELECT seq, packet FROM outgoing WHERE client_id = ? AND message_id IS ? ORDER BY seq LIMIT 1');
    this.removeSeq = db.prepare('DELETE FROM outgoing WHERE seq = ?');
    this.removeClient = db.prepare('DELETE FROM outgoing WHERE client_id = ?');
    this.lastSeq = db.prepare<[string], number | null>('SELECT max(seq) FROM outgoing WHERE client_id = ?').pluck();
    this.page = db.prepare('SELECT seq, packet FROM outgoing WHERE client_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?');
    const rows = db.prepare('SELECT client_id, count(*) FROM outgoing GROUP BY client_id').raw().all() as Array<[string, number]>;
    for (const [clientId, n] of rows) this.count(clientId, n);
  }

  /** Messages queued, all clients together. */
  get queued(): number {
    return this.total;
  }

  /** Queues a copy (an aedes-packet Packet, without packet id) of `packet` for each subscription's client. */
  enqueue(subs: Array<{ clientId: string }>, packet: AnyPacket): void {
    // Aedes calls this for every publish, mostly with no subscription: then nothing is copied or encoded.
    if (subs.length === 0) return;
    const copy = new Packet(packet);
    const blob = encodePacket(copy);
    const keys = [sqlKey(copy.brokerId), sqlKey(copy.brokerCounter), sqlKey(copy.messageId)] as const;
    const taken = new Map<string, number>();
    const dropped = new Map<string, number>();
    for (const { clientId } of subs) {
      const n = taken.get(clientId) ?? 0;
      if ((this.counts.get(clientId) ?? 0) + n < this.limit.maxPerClient) taken.set(clientId, n + 1);
      else dropped.set(clientId, (dropped.get(clientId) ?? 0) + 1);
    }
    if (taken.size > 0) {
      this.db.transaction(() => {
        for (const [clientId, n] of taken) for (let i = 0; i < n; i++) this.insert.run(clientId, ...keys, blob);
      })();
    }
    for (const [clientId, n] of taken) this.count(clientId, n);
    for (const [clientId, n] of dropped) {
      this.remember(clientId, `p${String(copy.brokerId)}\u0000${String(copy.brokerCounter)}`);
      this.limit.onDropped?.(clientId, n);
    }
  }

  /** aedes-persistence's outgoingUpdate: the packet id of a queued message set, or a message replaced by its PUBREL. */
  update(clientId: string, packet: AnyPacket): void {
    const bid = sqlKey(packet.brokerId);
    const bc = sqlKey(packet.brokerCounter);
    const mid = sqlKey(packet.messageId);
    const row = this.find.get({ client: clientId, bid, bc, mid });
    if (row !== undefined) {
      if (row.sameBroker === 1) {
        const stored = decodePacket(row.packet);
        stored.messageId = packet.messageId;
        this.setId.run(mid, encodePacket(stored), row.seq);
      } else {
        this.replace.run(bid, bc, mid, encodePacket(packet), row.seq);
      }
      return;
    }
    const untracked = this.untracked.get(clientId);
    const droppedKey = `p${String(packet.brokerId)}\u0000${String(packet.brokerCounter)}`;
    if (untracked?.delete(droppedKey) === true) {
      this.remember(clientId, `m${String(packet.messageId)}`);
      return;
    }
    if (untracked?.has(`m${String(packet.messageId)}`) === true) return;
    throw new Error('no such packet');
  }

  /** aedes-persistence's outgoingClearMessageId: removes and returns the first queued packet with this packet id. */
  clear(clientId: string, packet: AnyPacket | undefined): AnyPacket | undefined {
    const messageId = packet?.messageId;
    const row = this.findId.get(clientId, sqlKey(messageId));
    if (row === undefined) {
      this.untracked.get(clientId)?.delete(`m${String(messageId)}`);
      return undefined;
    }
    this.removeSeq.run(row.seq);
    this.count(clientId, -1);
    return decodePacket(row.packet);
  }

  /** The client's queue as it is now (messages queued later are not in it), read a page at a time. */
  stream(clientId: string): Readable {
    const last = this.lastSeq.get(clientId) ?? 0;
    return Readable.from(this.queue(clientId, last));
  }

  private *queue(clientId: string, last: number): Generator<AnyPacket> {
    for (const row of pages(0, (after) => this.page.all(clientId, after, last, PAGE_ROWS), (r) => r.seq)) yield decodePacket(row.packet);
  }

  /** Deletes the client's queue (inside the caller's transaction; forget() once it committed). */
  deleteRows(clientId: string): void {
    this.removeClient.run(clientId);
  }

  forget(clientId: string): void {
    this.total -= this.counts.get(clientId) ?? 0;
    this.counts.delete(clientId);
    this.untracked.delete(clientId);
  }

  private count(clientId: string, n: number): void {
    const now = (this.counts.get(clientId) ?? 0) + n;
    if (now > 0) this.counts.set(clientId, now);
    else this.counts.delete(clientId);
    this.total += n;
  }

  private remember(clientId: string, key: string): void {
    let keys = this.untracked.get(clientId);
    if (keys === undefined) this.untracked.set(clientId, (keys = new Set()));
    keys.add(key);
    // The oldest go first: a message dropped for a client that stays away never comes back to be updated.
    if (keys.size > this.limit.maxPerClient) keys.delete(keys.values().next().value!);
  }
}
