import type Database from 'better-sqlite3';
import { statSync } from 'node:fs';
import { Readable } from 'node:stream';
import { decodePacket, decodeValue, encodePacket, encodeValue, Packet, sqlKey, type AnyPacket } from './packet-codec.js';
import { OutgoingQueues } from './outgoing.js';
import { RetainedMessages } from './retained.js';
import { openStoreFile, pages, PAGE_ROWS } from './store-file.js';
import { optionsOf, SubscriptionIndex, type Subscription, type SubscriptionOptions, type TopicSubscription } from './subscriptions.js';

export type { AnyPacket, Subscription, SubscriptionOptions, TopicSubscription };

/** Mosquitto's max_queued_messages default. */
export const DEFAULT_MAX_QUEUED_PER_CLIENT = 1000;

export interface BrokerStoreOptions {
  /** The SQLite file; its directory is created. */
  file: string;
  /** A client's outgoing queue holds at most this many messages (default 1000); a message for a full queue is not queued. */
  maxQueuedPerClient?: number;
  /** Called with the client and the number of its messages not queued, once per enqueue that dropped any. */
  onQueueDropped?: (clientId: string, count: number) => void;
}

/** For metrics. */
export interface BrokerStoreStats {
  retainedMessages: number;
  /** Clients with at least one stored subscription. */
  sessions: number;
  /** Outgoing messages queued, all clients together. */
  queuedMessages: number;
  /** The file and its write-ahead log, on disk. */
  fileBytes: number;
}

/** What the store needs of Aedes: its id (wills) and whatever aedes-persistence's tests give as a broker. */
export interface StoreBroker {
  id: string;
}

interface Client {
  id: string;
}

/**
 * The embedded broker's persistence (Aedes 2's async API) on SQLite, so that its state survives a restart or a crash
 * of the node: retained messages, persistent sessions' subscriptions, the queue of outgoing QoS 1/2 messages of each
 * client, incoming QoS 2 packets awaiting their PUBREL, and wills. It implements exactly the methods and semantics of
 * aedes-persistence 10.3.1's memory store (asyncPersistence.js) and passes its abstract test suite unchanged
 * (test/broker-store.test.ts). Subscriptions are also kept in memory, matched by a QlobberSub trie (subscriptions.ts),
 * and each client's queue length too (outgoing.ts); both are read from the file when it is opened.
 *
 * Where it differs from the reference:
 * - The file is opened, checked and read by the constructor, which throws a BrokerError (BROKER_START_FAILED) naming it
 *   (an unwritable directory, a damaged file, another format); `setup(broker)` only records the broker.
 * - Every packet returned is a copy decoded from the file (packet-codec.ts: Buffers, MQTT 5 properties, brokerId,
 *   brokerCounter, messageId, messageExpiry kept as they were; aedes-packet `Packet` instances come back as such).
 *   Changing a returned packet changes nothing stored (the reference hands out the objects it keeps). Members that
 *   are functions (Aedes's writeCallback) are not stored; a PUBREL that replaced a message comes back as a plain
 *   object with its fields.
 * - Retained messages come in topic order (the reference: the order first stored), read only from the rows the
 *   filter's literal prefix allows (retained.ts). After a reopen, other orders (a client's subscriptions, the client
 *   list) are those of their rows, which match the reference's, but a client that unsubscribed from its first topic
 *   may move in the client list.
 * - Queue limit (maxQueuedPerClient): a message for a full queue is not queued and onQueueDropped is called. Its
 *   outgoingUpdate, PUBREL and acknowledgement then succeed without effect, so a connected client still gets it,
 *   unqueued, instead of being disconnected by Aedes for "no such packet" (outgoing.ts).
 * - outgoingStream reads the queue a page at a time: it holds the packets queued when it was called, less any that
 *   were acknowledged before the stream reached them (the reference copies the whole queue at the call).
 * - addSubscriptions with no subscriptions counts the client (countOffline) as the reference does, until the file is
 *   reopened: nothing was stored for it.
 * - No `broadcastSubscriptions` (cluster only).
 *
 * Beyond the reference: cleanIncoming (Aedes 2 never removes a clean session's incoming QoS 2 packets), session
 * expiry across restarts (noteSessionEnd, noteSessionResumed, expiredSessions, wipeSession: Aedes's timers are in
 * memory only), stats() and retainedSizes() (to count the retained limits from what is stored).
 *
 * For the broker: keep Aedes's id random per start (its default). Queued messages are matched by (brokerId,
 * brokerCounter), and the counter starts again from 0; a will left by the previous run carries that run's id, so
 * Aedes's will sweep publishes it, as it should for a client whose broker died. Aedes's close() does not destroy its
 * persistence: the owner calls destroy() after it, which closes the file (a second call throws, as the reference's).
 */
export class BrokerStore {
  private readonly db: Database.Database;
  private readonly file: string;
  private readonly retained: RetainedMessages;
  private readonly subscriptions = new SubscriptionIndex();
  private readonly queues: OutgoingQueues;
  private currentBroker: StoreBroker | undefined;
  private destroyed = false;
  private readonly st: ReturnType<typeof statements>;
  private readonly subscribe: (clientId: string, subs: Array<{ topic: string; options: SubscriptionOptions }>) => void;
  private readonly unsubscribe: (clientId: string, topics: string[]) => void;
  private readonly wipe: (clientId: string) => void;

  constructor(opts: BrokerStoreOptions) {
    this.file = opts.file;
    this.db = openStoreFile(opts.file);
    try {
      const maxPerClient = opts.maxQueuedPerClient ?? DEFAULT_MAX_QUEUED_PER_CLIENT;
      if (!Number.isInteger(maxPerClient) || maxPerClient < 0) throw new RangeError(`maxQueuedPerClient must be an integer >= 0, not ${maxPerClient}`);
      this.st = statements(this.db);
      this.retained = new RetainedMessages(this.db);
      this.queues = new OutgoingQueues(this.db, { maxPerClient, onDropped: opts.onQueueDropped });
      for (const row of this.st.allSubs.iterate()) {
        this.subscriptions.add(row.client_id, [{ topic: row.topic, options: decodeValue<SubscriptionOptions>(row.options) }]);
      }
    } catch (err) {
      this.db.close();
      throw err;
    }
    this.subscribe = this.db.transaction((clientId, subs) => {
      for (const { topic, options } of subs) this.st.upsertSub.run(clientId, topic, encodeValue(options));
    });
    this.unsubscribe = this.db.transaction((clientId, topics) => {
      for (const topic of topics) this.st.deleteSub.run(clientId, topic);
    });
    this.wipe = this.db.transaction((clientId) => {
      this.st.deleteSubsOf.run(clientId);
      this.queues.deleteRows(clientId);
      this.st.deleteIncomingOf.run(clientId);
      this.st.deleteWill.run(clientId);
      this.st.deleteExpiry.run(clientId);
    });
  }

  /** The broker given to setup (aedes-persistence's tests read it). */
  get broker(): StoreBroker | undefined {
    return this.currentBroker;
  }

  async setup(broker: StoreBroker): Promise<void> {
    this.currentBroker = broker;
  }

  async storeRetained(packet: AnyPacket): Promise<void> {
    this.retained.store(packet);
  }

  createRetainedStream(pattern: string): Readable {
    return this.retained.stream([pattern]);
  }

  createRetainedStreamCombi(patterns: string[]): Readable {
    return this.retained.stream(patterns);
  }

  async addSubscriptions(client: Client, subs: Subscription[]): Promise<void> {
    const rows = subs.map((sub) => ({ topic: sub.topic, options: optionsOf(sub) }));
    this.subscribe(client.id, rows);
    this.subscriptions.add(client.id, rows);
  }

  async removeSubscriptions(client: Client, topics: string[]): Promise<void> {
    this.unsubscribe(client.id, topics);
    this.subscriptions.remove(client.id, topics);
  }

  async subscriptionsByClient(client: Client): Promise<Array<Subscription & SubscriptionOptions>> {
    return this.subscriptions.byClient(client.id);
  }

  async countOffline(): Promise<{ subsCount: number; clientsCount: number }> {
    return this.subscriptions.counts();
  }

  async subscriptionsByTopic(topic: string): Promise<TopicSubscription[]> {
    return this.subscriptions.byTopic(topic);
  }

  async cleanSubscriptions(client: Client): Promise<void> {
    this.st.deleteSubsOf.run(client.id);
    this.subscriptions.clean(client.id);
  }

  async outgoingEnqueue(sub: { clientId: string }, packet: AnyPacket): Promise<void> {
    this.queues.enqueue([sub], packet);
  }

  async outgoingEnqueueCombi(subs: Array<{ clientId: string }>, packet: AnyPacket): Promise<void> {
    this.queues.enqueue(subs, packet);
  }

  async outgoingUpdate(client: Client, packet: AnyPacket): Promise<void> {
    this.queues.update(client.id, packet);
  }

  async outgoingClearMessageId(client: Client, packet: AnyPacket): Promise<AnyPacket | undefined> {
    return this.queues.clear(client.id, packet);
  }

  outgoingStream(client: Client): Readable {
    return this.queues.stream(client.id);
  }

  async incomingStorePacket(client: Client, packet: AnyPacket): Promise<void> {
    const copy = new Packet(packet);
    copy.messageId = packet.messageId;
    this.st.putIncoming.run(client.id, sqlKey(packet.messageId), encodePacket(copy));
  }

  async incomingGetPacket(client: Client, packet: AnyPacket): Promise<AnyPacket> {
    const blob = this.st.getIncoming.get(client.id, sqlKey(packet.messageId));
    if (blob === undefined) throw new Error('no such packet');
    return decodePacket(blob);
  }

  async incomingDelPacket(client: Client, packet: AnyPacket): Promise<void> {
    if (this.st.deleteIncoming.run(client.id, sqlKey(packet.messageId)).changes === 0) throw new Error('no such packet');
  }

  /**
   * Deletes every incoming QoS 2 packet of the client. Aedes 2 keeps them after a clean session ends (1.2.0 deleted
   * them), so a later session reusing a packet id would be answered as a duplicate and its message dropped: the broker
   * calls this when a clean session disconnects.
   */
  async cleanIncoming(client: Client): Promise<void> {
    this.st.deleteIncomingOf.run(client.id);
  }

  /** Stores the will with the broker's id and the client's (set on `packet` itself, as the reference does). */
  async putWill(client: Client, packet: AnyPacket): Promise<void> {
    if (this.currentBroker === undefined) throw new Error('putWill before setup: the will needs the broker id');
    packet.brokerId = this.currentBroker.id;
    packet.clientId = client.id;
    this.st.putWill.run(client.id, encodePacket(packet));
  }

  async getWill(client: Client): Promise<AnyPacket | undefined> {
    const blob = this.st.getWill.get(client.id);
    return blob === undefined ? undefined : decodePacket(blob);
  }

  async delWill(client: Client): Promise<AnyPacket | undefined> {
    const will = await this.getWill(client);
    this.st.deleteWill.run(client.id);
    return will;
  }

  /** The wills of brokers not in `brokers` (Aedes's live brokers: id → last heartbeat). */
  streamWill(brokers: Record<string, unknown> = {}): Readable {
    return Readable.from(this.willsOf(brokers));
  }

  private *willsOf(brokers: Record<string, unknown>): Generator<AnyPacket> {
    for (const row of pages('', (lo) => this.st.willsFrom.all(lo, PAGE_ROWS), (r) => `${r.client_id}\u0000`)) {
      const will = decodePacket(row.packet);
      if (!brokers[will.brokerId as string]) yield will;
    }
  }

  /** The clients subscribed to exactly `topic`. */
  getClientList(topic: string): Readable {
    return Readable.from(this.subscriptions.clientsWith(topic));
  }

  /**
   * A session that outlives its connection (MQTT 5 Session Expiry Interval, or a 3.1.1 persistent session given an
   * expiry by the broker) ends at `expiresAtMs` (epoch ms) unless resumed: kept in the file, so it still ends after a
   * restart. A session that never expires needs no note.
   */
  noteSessionEnd(clientId: string, expiresAtMs: number): void {
    if (!Number.isFinite(expiresAtMs)) throw new RangeError(`expiresAtMs must be a finite number, not ${expiresAtMs}`);
    this.st.putExpiry.run(clientId, expiresAtMs);
  }

  /** The client connected again: its session no longer ends. */
  noteSessionResumed(clientId: string): void {
    this.st.deleteExpiry.run(clientId);
  }

  /**
   * Clients with subscriptions and no expiry note: sessions connected when a previous run ended by a crash (their
   * disconnect was never seen), or that never expire.
   */
  sessionsWithoutExpiry(): string[] {
    return this.st.withoutExpiry.all();
  }

  /** Clients whose session ended at or before `nowMs`, the earliest first. */
  expiredSessions(nowMs: number): string[] {
    return this.st.expiredBy.all(nowMs);
  }

  /** Deletes everything of a session: subscriptions (and their matching), outgoing queue, incoming packets, will, expiry note. */
  wipeSession(clientId: string): void {
    this.wipe(clientId);
    this.subscriptions.clean(clientId);
    this.queues.forget(clientId);
  }

  stats(): BrokerStoreStats {
    return {
      retainedMessages: this.retained.count(),
      sessions: this.subscriptions.counts().clientsCount,
      queuedMessages: this.queues.queued,
      fileBytes: fileSize(this.file) + fileSize(`${this.file}-wal`),
    };
  }

  /** [topic, payload bytes] of each retained message, to count them against the retained limits at start. */
  retainedSizes(): Array<[string, number]> {
    return this.retained.sizes();
  }

  /** Closes the file. */
  async destroy(): Promise<void> {
    if (this.destroyed) throw new Error('destroyed called twice!');
    this.destroyed = true;
    this.db.close();
  }
}

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function statements(db: Database.Database) {
  return {
    allSubs: db.prepare<[], { client_id: string; topic: string; options: Buffer }>('SELECT client_id, topic, options FROM subscriptions ORDER BY rowid'),
    upsertSub: db.prepare<[string, string, Buffer]>(
      'INSERT INTO subscriptions (client_id, topic, options) VALUES (?, ?, ?) ON CONFLICT (client_id, topic) DO UPDATE SET options = excluded.options',
    ),
    deleteSub: db.prepare<[string, string]>('DELETE FROM subscriptions WHERE client_id = ? AND topic = ?'),
    deleteSubsOf: db.prepare<[string]>('DELETE FROM subscriptions WHERE client_id = ?'),
    putIncoming: db.prepare<[string, unknown, Buffer]>('INSERT OR REPLACE INTO incoming (client_id, message_id, packet) VALUES (?, ?, ?)'),
    getIncoming: db.prepare<[string, unknown], Buffer>('SELECT packet FROM incoming WHERE client_id = ? AND message_id IS ?').pluck(),
    deleteIncoming: db.prepare<[string, unknown]>('DELETE FROM incoming WHERE client_id = ? AND message_id IS ?'),
    deleteIncomingOf: db.prepare<[string]>('DELETE FROM incoming WHERE client_id = ?'),
    putWill: db.prepare<[string, Buffer]>('INSERT OR REPLACE INTO wills (client_id, packet) VALUES (?, ?)'),
    getWill: db.prepare<[string], Buffer>('SELECT packet FROM wills WHERE client_id = ?').pluck(),
    deleteWill: db.prepare<[string]>('DELETE FROM wills WHERE client_id = ?'),
    willsFrom: db.prepare<[string, number], { client_id: string; packet: Buffer }>('SELECT client_id, packet FROM wills WHERE client_id >= ? ORDER BY client_id LIMIT ?'),
    putExpiry: db.prepare<[string, number]>(
      'INSERT INTO session_expiry (client_id, expires_at) VALUES (?, ?) ON CONFLICT (client_id) DO UPDATE SET expires_at = excluded.expires_at',
    ),
    deleteExpiry: db.prepare<[string]>('DELETE FROM session_expiry WHERE client_id = ?'),
    withoutExpiry: db
      .prepare<[], string>('SELECT DISTINCT client_id FROM subscriptions WHERE client_id NOT IN (SELECT client_id FROM session_expiry)')
      .pluck(),
    expiredBy: db.prepare<[number], string>('SELECT client_id FROM session_expiry WHERE expires_at <= ? ORDER BY expires_at, client_id').pluck(),
  };
}
