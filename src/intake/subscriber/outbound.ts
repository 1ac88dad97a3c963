import type { IPubackPacket, IPublishPacket } from 'mqtt-packet';
import { monotonicMs } from '../../core/clock.js';
import { topicNameProblem } from '../../core/mqtt-topic.js';
import { PublishError, type PublishOptions } from '../intake.js';

/** Packet ids 1 and 2 are the session's SUBSCRIBE and UNSUBSCRIBE (connection.ts); publishes take the others. */
const FIRST_ID = 3;
const LAST_ID = 65535;
/**
 * QoS 1 publishes awaiting their PUBACK on one connection, at most; a lower Receive Maximum of the broker (MQTT 5
 * CONNACK) lowers it. A publish beyond it is refused (`busy`), not queued.
 */
export const MAX_OUTBOUND_IN_FLIGHT = 100;

interface Waiting {
  resolve: () => void;
  reject: (err: PublishError) => void;
}

/**
 * The node's own publishes on the subscriber's session (the Sparkplug commands it sends): PUBLISH packets written on
 * the connection, a QoS 0 one settled once the socket took it, a QoS 1 one once the broker's PUBACK came. They die
 * with the connection: whatever has not settled when it closes is rejected (`lost`), never resent on the next one,
 * since the caller decides whether a command is still wanted.
 */
export class OutboundPublishes {
  private readonly waiting = new Map<number, Waiting>();
  /** QoS 0 publishes handed to the socket and not yet written. */
  private readonly writing = new Set<(err: PublishError) => void>();
  private nextId = FIRST_ID;
  private limit = MAX_OUTBOUND_IN_FLIGHT;
  private closedWith: string | undefined;

  constructor(
    private readonly o: {
      /** Generates and writes the packet; `done` once the stream took it (with an error if it could not). */
      write: (packet: IPublishPacket, done: (err?: Error | null) => void) => void;
    },
  ) {}

  /** The broker's Receive Maximum from its CONNACK (MQTT 5), when it sent one. */
  brokerReceiveMaximum(n: number | undefined): void {
    if (n !== undefined && n > 0) this.limit = Math.min(MAX_OUTBOUND_IN_FLIGHT, n);
  }

  get inFlight(): number {
    return this.waiting.size;
  }

  publish(topic: string, payload: Buffer, opts: PublishOptions): Promise<void> {
    if (this.closedWith !== undefined) return Promise.reject(new PublishError('lost', `not published: ${this.closedWith}`));
    const problem = topicNameProblem(topic);
    if (problem) return Promise.reject(new PublishError('refused', `not published: the topic ${problem}`));
    if (opts.qos === 1 && this.waiting.size >= this.limit) {
      return Promise.reject(new PublishError('busy', `not published: ${this.waiting.size} publishes already await their PUBACK`));
    }
    const packet: IPublishPacket = { cmd: 'publish', topic, payload, qos: opts.qos, retain: opts.retain ?? false, dup: false };
    return new Promise<void>((resolve, reject) => {
      if (opts.qos === 0) {
        const fail = (err: PublishError) => {
          if (this.writing.delete(fail)) reject(err);
        };
        this.writing.add(fail);
        this.o.write(packet, (err) => {
          if (!this.writing.delete(fail)) return;
          if (err) reject(new PublishError('lost', `not published: ${err.message}`));
          else resolve();
        });
        return;
      }
      const id = this.allocate();
      packet.messageId = id;
      this.waiting.set(id, { resolve, reject });
      this.o.write(packet, (err) => {
        if (err) this.settle(id, new PublishError('lost', `not published: ${err.message}`));
      });
    });
  }

  /** A PUBACK from the broker: an MQTT 5 reason code of 0x80 or more refuses the publish (0x87: not authorised). */
  acked(p: IPubackPacket): void {
    const id = p.messageId;
    if (id === undefined || !this.waiting.has(id)) return;
    const code = p.reasonCode ?? 0;
    if (code < 0x80) return this.settle(id);
    const why = p.properties?.reasonString ?? `reason code 0x${code.toString(16)}`;
    this.settle(id, new PublishError('refused', `the broker refused the publish: ${why}`));
  }

  /** The connection closed: what has not settled is rejected, and later publishes are refused. */
  close(reason: string): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = reason;
    const err = new PublishError('lost', `the connection closed before the publish was confirmed: ${reason}`);
    for (const fail of [...this.writing]) fail(err);
    for (const id of [...this.waiting.keys()]) this.settle(id, err);
  }

  private settle(id: number, err?: PublishError): void {
    const w = this.waiting.get(id);
    if (!w) return;
    this.waiting.delete(id);
    if (err) w.reject(err);
    else w.resolve();
  }

  /** The next packet id not awaiting a PUBACK (there are at most `limit` of those, far fewer than the ids). */
  private allocate(): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = id === LAST_ID ? FIRST_ID : id + 1;
      if (!this.waiting.has(id)) return id;
    }
  }
}

/**
 * The node's own publishes, until the broker delivers them back: the session's filters (MQTT_TOPICS, `#` by default)
 * usually match the command topics, and a command from the node is not a message to it (MQTT 3.1.1 has no No Local).
 * An incoming PUBLISH with the same topic and bytes as one of them is that echo: acknowledged (QoS 1) but not
 * stored, once per publish. The entries outlive a connection (the echo can come after a reconnect, queued by the
 * broker), but not `ttlMs` (a publish that no filter matches never comes back), and there are at most `max`.
 * Another client publishing the very same bytes to the same topic within that time would be taken for the echo;
 * the echo itself is then stored in its place, with the same topic and payload.
 */
export class OwnEchoes {
  private entries: Array<{ topic: string; payload: Buffer; at: number }> = [];

  constructor(
    private readonly max = 256,
    private readonly ttlMs = 60_000,
    private readonly now: () => number = monotonicMs,
  ) {}

  /** Remembers a publish about to be sent; returns it, to forget it when the publish fails. */
  remember(topic: string, payload: Buffer): object {
    const entry = { topic, payload: Buffer.from(payload), at: this.now() };
    this.entries.push(entry);
    if (this.entries.length > this.max) this.entries.shift();
    return entry;
  }

  forget(entry: object): void {
    const i = this.entries.indexOf(entry as (typeof this.entries)[number]);
    if (i >= 0) this.entries.splice(i, 1);
  }

  /** Whether an incoming message is the echo of a publish of ours; it is recognised once. */
  take(topic: string, payload: Buffer): boolean {
    if (this.entries.length === 0) return false;
    const oldest = this.now() - this.ttlMs;
    while (this.entries.length > 0 && this.entries[0]!.at < oldest) this.entries.shift();
    const i = this.entries.findIndex((e) => e.topic === topic && e.payload.equals(payload));
    if (i < 0) return false;
    this.entries.splice(i, 1);
    return true;
  }

  get size(): number {
    return this.entries.length;
  }
}
