import mqttPacket, { type Packet, type IPublishPacket, type IConnackPacket, type ISubackPacket } from 'mqtt-packet';
import type { Duplex } from 'node:stream';
import type { AppendResult, SourcedMessage } from '../../spool/spool.js';
import { SpoolClosedError } from '../../core/errors.js';
import { PublishError, type PublishOptions } from '../intake.js';
import { encodeAcks } from './encode-acks.js';
import { OutboundPublishes } from './outbound.js';
import { SessionLeave } from './session-leave.js';
import { CONNACK_V4, propertiesOf } from './packet-fields.js';

export interface ConnectionOptions {
  clientId: string;
  username?: string;
  password?: string;
  topics: string[];
  protocolVersion: 4 | 5;
  sessionExpirySeconds: number;
  keepaliveSeconds: number;
  /** MQTT 5 Receive Maximum advertised to the broker: how many QoS 1/2 messages may be unacknowledged. */
  receiveMaximum: number;
  /**
   * The spool's number for this connection (SpoolWriter.beginConnection); each QoS 1/2 message carries it. None for
   * a connection of another session (session-handover.ts): the spool's window matches the node's own session only.
   */
  epoch?: number;
  /** Commits the messages of one socket read; their PUBACKs are sent only after this resolves. */
  submit: (m: SourcedMessage[]) => Promise<AppendResult[]>;
  /** Messages and payload bytes waiting for a commit; above either limit the socket stops being read (TCP back-pressure). */
  waiting: () => { messages: number; bytes: number };
  pauseAbove: { messages: number; bytes: number };
  /** A commit failed for another reason than shutdown: the connection is dropped so the broker redelivers. */
  onCommitFailed: (err: Error) => void;
  /** Called after each commit, so the dispatcher leases new rows at once. */
  onCommitted: () => void;
  onEvent: (event: ConnectionEvent) => void;
  /** The filters the broker's session was last subscribed to (undefined: not known). */
  previousTopics: () => string[] | undefined;
  /** Called once the broker granted `topics`, to remember them across restarts. */
  onSubscribed: (topics: string[]) => void;
  /** Whether an incoming message is the echo of the node's own publish (outbound.ts, OwnEchoes): not stored. */
  ownEcho?: (topic: string, payload: Buffer) => boolean;
  /** Connect with a clean session and disconnect at once: an MQTT 3.1.1 broker then discards the session (leave). */
  forget?: boolean;
}

export type ConnectionEvent =
  | { type: 'connected'; sessionPresent: boolean }
  | { type: 'subscribed'; granted: number[] }
  | { type: 'subscribe-refused'; topics: string[] }
  | { type: 'downgraded'; topics: string[] }
  | { type: 'refused'; reason: string }
  | { type: 'server-disconnect'; reason: string }
  | { type: 'protocol-error'; reason: string };

/** The QoS 1/2 PUBLISH packets of one socket read, waiting for their commit; acknowledgements leave in arrival order. */
interface PendingAcks {
  ids: number[];
  /** 1 for PUBACK, 2 for PUBREC, per id. */
  qos: (1 | 2)[];
  committed: boolean;
  /** Position of the last of these messages on the connection. */
  last: number;
}

/**
 * One MQTT session over one stream, on mqtt-packet (the parser and generator MQTT.js itself uses).
 *
 * Why not MQTT.js for the subscriber: MQTT.js handles incoming packets one at a time and sends each
 * PUBACK after its handler's callback, so acknowledging after the commit meant one commit per message.
 * Here the parser keeps reading PUBLISH packets while earlier ones wait for their group commit, and the
 * acknowledgements are written as soon as their commit resolves, in the order the PUBLISH packets arrived
 * (MQTT 3.1.1 §4.6, MQTT 5 §4.6: PUBACKs in the order of the PUBLISH packets received). Still: no PUBACK
 * before the commit (MQTT-4.3.2 "ack after the message is stored" is our invariant 1).
 *
 * A connection's pending acknowledgements die with it: messages committed after the socket closed get no
 * PUBACK; the broker redelivers them (DUP) to the persistent session and the spool recognises them. To
 * tell which, each QoS 1/2 message carries the connection's epoch and its position on the connection, and
 * `acksWrittenUpTo` says where the PUBACKs stopped.
 */
export class Connection {
  private readonly parser;
  private readonly acks: PendingAcks[] = [];
  /** QoS 1/2 PUBLISH packets received on this connection: each message's position is its count. */
  private received = 0;
  private written = 0;
  /** Messages of the socket read being parsed; submitted together when the read is parsed. */
  private reading: SourcedMessage[] | undefined;
  private readingAcks: PendingAcks | undefined;
  private closed = false;
  private paused = false;
  private pingOutstanding = false;
  private ackFlushScheduled = false;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private connackTimer: NodeJS.Timeout | undefined;
  private connected = false;
  readonly done: Promise<string>;
  private finish!: (reason: string) => void;
  private readonly outbound = new OutboundPublishes({ write: (packet, done) => this.sendThen(packet, done) });
  private leaving: SessionLeave | undefined;
  /** The session's UNSUBSCRIBE (packet id 2) awaits its UNSUBACK. */
  private unsubscribeOutstanding = false;

  constructor(
    private readonly stream: Duplex,
    private readonly o: ConnectionOptions,
  ) {
    this.done = new Promise((resolve) => (this.finish = resolve));
    this.parser = mqttPacket.parser({ protocolVersion: o.protocolVersion });
    this.parser.on('packet', (p: Packet) => this.onPacket(p));
    this.parser.on('error', (err: Error) => this.fail(`malformed packet from the broker: ${err.message}`, true));
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('error', (err) => this.close(err.message));
    stream.on('close', () => this.close('connection closed'));
  }

  /** Sends CONNECT; the session is live once CONNACK accepts it. */
  start(connectTimeoutMs: number): void {
    const o = this.o;
    this.send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: o.protocolVersion,
      clientId: o.clientId,
      // Clean start off: the broker keeps our subscriptions and queues QoS 1 messages while we are away.
      clean: o.forget === true,
      keepalive: o.keepaliveSeconds,
      username: o.username,
      password: o.password === undefined ? undefined : Buffer.from(o.password),
      properties:
        o.protocolVersion === 5 ? { sessionExpiryInterval: o.forget ? 0 : o.sessionExpirySeconds, receiveMaximum: o.receiveMaximum } : undefined,
    });
    this.connackTimer = setTimeout(() => this.fail(`no CONNACK within ${connectTimeoutMs} ms`), connectTimeoutMs);
  }

  private onPacket(p: Packet): void {
    if (this.closed) return;
    this.pingOutstanding = false; // any packet shows the broker is alive
    switch (p.cmd) {
      case 'connack':
        return this.onConnack(p);
      case 'publish':
        return this.onPublish(p);
      case 'suback':
        return this.onSuback(p);
      case 'pubrel':
        // QoS 2 (only if a broker sends it despite our QoS 1 subscriptions): the message was stored
        // before PUBREC, so PUBCOMP can go at once.
        return this.send({ cmd: 'pubcomp', messageId: p.messageId });
      case 'puback':
        return this.outbound.acked(p);
      case 'unsuback':
        if (p.messageId !== 2) return;
        this.unsubscribeOutstanding = false;
        return this.leaving?.unsubacked();
      case 'pingresp':
        return;
      case 'disconnect': {
        const reason = p.properties?.reasonString ?? `reason code ${p.reasonCode ?? 0}`;
        this.o.onEvent({ type: 'server-disconnect', reason });
        return this.close(`broker disconnected us: ${reason}`);
      }
      default:
        return;
    }
  }

  private onConnack(p: IConnackPacket): void {
    clearTimeout(this.connackTimer);
    const code = this.o.protocolVersion === 5 ? (p.reasonCode ?? 0) : (p.returnCode ?? 0);
    if ((this.o.protocolVersion === 5 && code >= 0x80) || (this.o.protocolVersion === 4 && code !== 0)) {
      const reason =
        this.o.protocolVersion === 5 ? (p.properties?.reasonString ?? `reason code 0x${code.toString(16)}`) : (CONNACK_V4[code] ?? `return code ${code}`);
      this.o.onEvent({ type: 'refused', reason });
      return this.close(`broker refused the connection: ${reason}`);
    }
    this.connected = true;
    this.outbound.brokerReceiveMaximum(p.properties?.receiveMaximum);
    this.startKeepalive();
    this.o.onEvent({ type: 'connected', sessionPresent: p.sessionPresent });
    if (this.o.forget) this.leave(0);
    if (this.leaving) return this.leaving.up(p.sessionPresent && !this.o.forget);
    const previous = this.o.previousTopics();
    if (!p.sessionPresent || previous === undefined) return this.subscribe(this.o.topics);
    // The broker kept the session: change its subscriptions only where MQTT_TOPICS changed since.
    const removed = previous.filter((t) => !this.o.topics.includes(t));
    const added = this.o.topics.filter((t) => !previous.includes(t));
    if (removed.length > 0) this.unsubscribe(removed);
    if (added.length > 0) return this.subscribe(added);
    if (removed.length > 0) this.o.onSubscribed(this.o.topics);
    this.o.onEvent({ type: 'subscribed', granted: [] });
  }

  private subscribing: string[] = [];

  private unsubscribe(filters: string[]): void {
    this.unsubscribeOutstanding = true;
    this.send({ cmd: 'unsubscribe', messageId: 2, unsubscriptions: filters });
  }

  private subscribe(topics: string[]): void {
    const v5 = this.o.protocolVersion === 5;
    this.subscribing = topics;
    this.send({
      cmd: 'subscribe',
      messageId: 1,
      // rh 1 (MQTT 5): retained messages only for a new subscription, not again on every re-subscribe.
      subscriptions: topics.map((topic) => (v5 ? { topic, qos: 1 as const, rh: 1, nl: false, rap: false } : { topic, qos: 1 as const })),
    });
  }

  private onSuback(p: ISubackPacket): void {
    const granted = p.granted.map((g) => (typeof g === "number" ? g : (g as { qos: number }).qos));
    const topics = this.subscribing;
    const refused = topics.filter((_, i) => (granted[i] ?? 0x80) >= 0x80);
    if (refused.length > 0) return this.o.onEvent({ type: 'subscribe-refused', topics: refused });
    const downgraded = topics.filter((_, i) => granted[i] === 0);
    if (downgraded.length > 0) this.o.onEvent({ type: 'downgraded', topics: downgraded });
    this.o.onSubscribed(this.o.topics);
    this.o.onEvent({ type: 'subscribed', granted });
  }

  /** Parses one socket read; its PUBLISH packets go to the spool together, with one promise. */
  private onData(chunk: Buffer): void {
    this.reading = [];
    this.readingAcks = { ids: [], qos: [], committed: false, last: 0 };
    this.parser.parse(chunk);
    const messages = this.reading;
    const acks = this.readingAcks;
    this.reading = undefined;
    this.readingAcks = undefined;
    if (messages.length === 0) {
      // Only echoes of the node's own publishes: nothing to store, their PUBACKs go after those before them.
      if (acks.ids.length === 0) return;
      acks.committed = true;
      this.acks.push(acks);
      return this.scheduleAckFlush();
    }
    if (acks.ids.length > 0) this.acks.push(acks);
    this.o.submit(messages).then(
      () => {
        this.o.onCommitted();
        acks.committed = true;
        this.scheduleAckFlush();
        this.maybeResume();
      },
      (err: Error) => {
        // Not stored, so never acknowledged. At shutdown that is all; any other failure (disk, I/O, a
        // lock held too long) ends the connection: the acknowledgements queued behind this read could
        // never be sent in order, and the broker redelivers everything unacknowledged on reconnect.
        if (err instanceof SpoolClosedError || this.closed) return;
        this.o.onCommitFailed(err);
        this.fail(`spool commit failed: ${err.message}`);
      },
    );
    const w = this.o.waiting();
    if (!this.paused && (w.messages > this.o.pauseAbove.messages || w.bytes > this.o.pauseAbove.bytes)) {
      this.paused = true;
      this.stream.pause();
    }
  }

  private onPublish(p: IPublishPacket): void {
    if (!this.reading) return;
    this.leaving?.arrived();
    const acked = p.qos > 0;
    const payload = typeof p.payload === 'string' ? Buffer.from(p.payload) : p.payload;
    if (acked) this.received += 1;
    if (acked && this.readingAcks) {
      this.readingAcks.ids.push(p.messageId as number);
      this.readingAcks.qos.push(p.qos as 1 | 2);
      this.readingAcks.last = this.received;
    }
    // The echo of the node's own publish is acknowledged in its turn but not stored; its position stays unused.
    if (this.o.ownEcho?.(p.topic, payload)) return;
    this.reading.push({
      topic: p.topic,
      payload,
      qos: p.qos,
      retain: p.retain,
      receivedAt: Date.now(),
      packetId: acked ? p.messageId : undefined,
      dup: p.dup,
      epoch: acked ? this.o.epoch : undefined,
      position: acked ? this.received : undefined,
      properties: p.properties === undefined ? undefined : propertiesOf(p.properties),
    });
  }

  /**
   * A group commit resolves many messages in one turn; their acknowledgements go out in one socket write,
   * queued behind the promise reactions of the same group (a write per message cost a third of the CPU).
   */
  private scheduleAckFlush(): void {
    if (this.ackFlushScheduled) return;
    this.ackFlushScheduled = true;
    queueMicrotask(() => {
      this.ackFlushScheduled = false;
      this.flushAcks();
    });
  }

  /** Writes every acknowledgement whose commit is done, up to the first that is not: arrival order. */
  private flushAcks(): void {
    if (this.closed) return;
    let n = 0;
    while (n < this.acks.length && this.acks[n].committed) n += 1;
    if (n === 0) return;
    const groups = this.acks.splice(0, n);
    this.written = groups[groups.length - 1]!.last;
    this.stream.write(encodeAcks(groups, this.o.protocolVersion));
  }

  /**
   * The position up to which PUBACKs were handed to the socket. Once the connection has closed, the messages
   * after it never had theirs written (spool/inbound-window.ts relies on that: SpoolWriter.endConnection).
   */
  get acksWrittenUpTo(): number {
    return this.written;
  }

  private maybeResume(): void {
    const w = this.o.waiting();
    if (this.paused && w.messages <= this.o.pauseAbove.messages / 2 && w.bytes <= this.o.pauseAbove.bytes / 2) {
      this.paused = false;
      this.stream.resume();
    }
  }

  /** PINGREQ every keep-alive period; a second period without any packet from the broker ends the connection. */
  private startKeepalive(): void {
    const ms = this.o.keepaliveSeconds * 1000;
    this.keepaliveTimer = setInterval(() => {
      if (this.pingOutstanding) return this.fail(`no answer from the broker within ${this.o.keepaliveSeconds} s (keep-alive)`);
      this.pingOutstanding = true;
      this.send({ cmd: 'pingreq' });
    }, ms);
    this.keepaliveTimer.unref();
  }

  get isConnected(): boolean {
    return this.connected && !this.closed;
  }

  private send(packet: Packet): void {
    if (this.closed) return;
    this.stream.write(mqttPacket.generate(packet, { protocolVersion: this.o.protocolVersion }));
  }

  private sendThen(packet: Packet, done: (err?: Error | null) => void): void {
    if (this.closed) return done(new Error('the connection is closed'));
    this.stream.write(mqttPacket.generate(packet, { protocolVersion: this.o.protocolVersion }), done);
  }

  /** A PUBLISH of the node's own on this session (outbound.ts): after CONNACK, until the connection closes. */
  publish(topic: string, payload: Buffer, opts: PublishOptions): Promise<void> {
    if (!this.isConnected) return Promise.reject(new PublishError('unavailable', 'not published: the session is not connected'));
    return this.outbound.publish(topic, payload, opts);
  }

  private fail(reason: string, protocol = false): void {
    if (protocol) this.o.onEvent({ type: 'protocol-error', reason });
    this.close(reason);
    this.stream.destroy();
  }

  /**
   * Leaves the broker for good (session-leave.ts): unsubscribe every filter, drain, then DISCONNECT with Session
   * Expiry Interval 0. `done` resolves then, with `hasLeft` true. Asked before CONNACK, it starts once the session is up.
   */
  leave(quietMs: number): void {
    if (this.leaving) return;
    this.leaving = new SessionLeave({
      quietMs,
      settled: () => this.acks.length === 0 && !this.paused && this.reading === undefined,
      unsubscribe: () => {
        // One packet id for the session's UNSUBSCRIBE: a changed MQTT_TOPICS' one is answered first.
        if (this.unsubscribeOutstanding) return false;
        this.unsubscribe([...new Set([...this.o.topics, ...(this.o.previousTopics() ?? [])])]);
        return true;
      },
      disconnect: () => {
        const o = this.o;
        // Allowed only when CONNECT's interval was not 0 (MQTT-3.14.2-2); with 0 the session ends with the connection.
        const expire = o.protocolVersion === 5 && !o.forget && o.sessionExpirySeconds > 0;
        this.send(expire ? { cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 0 } } : { cmd: 'disconnect' });
        this.stream.end();
        setTimeout(() => this.stream.destroy(), 1000).unref();
      },
    });
    if (this.connected) this.leaving.sendUnsubscribe();
  }

  /** The broker was told to discard the session and the connection closed (or is closing) after it. */
  get hasLeft(): boolean {
    return this.leaving?.left === true;
  }

  /** Ends the session politely: DISCONNECT (the session and its queue stay at the broker), then close. */
  async disconnect(): Promise<void> {
    if (this.closed) return;
    if (this.connected) this.send({ cmd: 'disconnect' });
    this.stream.end();
    const timer = setTimeout(() => this.stream.destroy(), 1000);
    await this.done;
    clearTimeout(timer);
  }

  private close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.connected = false;
    clearTimeout(this.connackTimer);
    clearInterval(this.keepaliveTimer);
    this.leaving?.close();
    this.acks.length = 0;
    this.outbound.close(reason);
    if (!this.stream.destroyed) this.stream.destroy();
    this.finish(reason);
  }
}
