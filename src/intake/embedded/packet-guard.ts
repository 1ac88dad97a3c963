import { mqttStringProblem } from '../../core/mqtt-topic.js';

/** Control packet types: the high four bits of the first byte (MQTT 3.1.1 §2.2.1). */
const CONNECT = 1;
const PUBLISH = 3;
const SUBSCRIBE = 8;
const UNSUBSCRIBE = 10;

/** Why the guard stops a connection before the broker reads a packet. */
export type PacketRefusal =
  | { reason: 'packet_too_large'; size: number; limit: number }
  /** The first packet of a connection, which must be its CONNECT, over its own lower limit. */
  | { reason: 'connect_too_large'; size: number; limit: number }
  /** A PUBLISH whose topic's bytes are not a valid MQTT string; `topic` holds them as they came. */
  | { reason: 'invalid_topic'; problem: string; topic: Buffer }
  /** Another MQTT string (a client id, user name, will topic, topic filter) that is not valid. */
  | { reason: 'invalid_string'; packet: 'CONNECT' | 'SUBSCRIBE' | 'UNSUBSCRIBE'; field: string; problem: string };

export interface PacketLimits {
  /** MQTT_MAX_PACKET_BYTES: the largest packet, its fixed header included (as Mosquitto's max_packet_size). */
  maxPacketBytes: number;
  /** MQTT_MAX_CONNECT_BYTES: the largest first packet (the CONNECT), which anyone may send before authenticating. */
  maxConnectBytes: number;
}

/** What the guard makes of one chunk of the stream. */
export interface FeedResult {
  /** The first packet the broker must not receive, and where in this chunk it starts (0 when it began in an earlier chunk). */
  refusal?: PacketRefusal & { start: number };
  /**
   * Bytes received so far of the packet still incomplete at the end of the chunk, its header included (0 when the
   * chunk ends on a packet boundary): the MQTT parser holds them until the packet is complete.
   */
  partialBytes: number;
  /** Where in this chunk that incomplete packet starts (0 when it began in an earlier chunk). */
  partialStart: number;
}


/**
 * A field of a packet body that the guard reads: a length-prefixed UTF-8 string it checks, length-prefixed binary
 * data or a fixed number of bytes it passes over, or a single byte it looks at.
 */
type Step =
  | { kind: 'string'; field: string }
  | { kind: 'binary' }
  | { kind: 'skip'; bytes: number }
  | { kind: 'byte'; use: (byte: number) => void };

type Phase = 'type' | 'length' | 'body';

/**
 * Reads a connection's byte stream before the broker does, tracking packet boundaries, and finds what Aedes (with
 * mqtt-packet's parser) would take in without a check:
 *
 * - A packet over the size limit, from its fixed header alone, before its body arrives. The parser buffers a
 *   packet until the length in its fixed header has arrived, so one client declaring 256 MiB could make the node
 *   hold 256 MiB. A fixed header is one type byte and a Remaining Length of 1 to 4 bytes, 7 bits each, least
 *   significant first (MQTT 3.1.1 §2.2.3); the packet is that header plus the Remaining Length. The first packet
 *   of a connection (the CONNECT, sent before any authentication) has a lower limit of its own.
 * - How many bytes of an incomplete packet the parser holds, for the connection's share of the node's budget.
 * - MQTT strings that are not valid UTF-8 or hold U+0000: a server must close the connection on them
 *   (MQTT-1.5.3-1, -2), and the parser would decode them into a JavaScript string with U+FFFD in place of the bad
 *   bytes, so a topic would be stored as something the device did not send. Checked on the raw bytes: PUBLISH
 *   topics; client id, will topic and user name of a 3.1/3.1.1 CONNECT; SUBSCRIBE and UNSUBSCRIBE topic filters
 *   once the CONNECT said 3.1/3.1.1. Fields may be split across chunks. A field whose length does not fit its
 *   packet is left to the parser, which reports the packet malformed.
 */
export class PacketGuard {
  private phase: Phase = 'type';
  /** The current packet's type, Remaining Length (as read so far) and bytes received, header included. */
  private type = 0;
  private length = 0;
  private lengthBytes = 0;
  private multiplier = 1;
  private received = 0;
  /** Body bytes of the current packet still to come. */
  private bodyLeft = 0;
  /** The fields of the current body still to read, and where a repeated group (topic filters) starts again. */
  private steps: Step[] = [];
  private stepAt = 0;
  private repeatFrom = -1;
  /** Within a length-prefixed field: bytes of its length read, the length, bytes still to come, and the pieces. */
  private prefixBytes = 0;
  private fieldLength = 0;
  private fieldLeft = 0;
  private pieces: Buffer[] = [];
  private skipLeft = 0;
  /** No packet has completed yet: the current one is the first, which must be the CONNECT. */
  private first = true;
  /** The protocol level of the CONNECT (4 is MQTT 3.1.1); 0 until known. */
  private level = 0;
  /** A malformed length was seen: the MQTT parser closes the connection; the guard stops tracking. */
  private lost = false;
  /** Where readBody stopped in the chunk. */
  private at = 0;

  constructor(private readonly limits: PacketLimits) {}

  /** Feeds the next chunk of the stream; see FeedResult. A malformed length is left to the MQTT parser. */
  feed(chunk: Buffer): FeedResult {
    if (this.lost) return { partialBytes: 0, partialStart: 0 };
    let start = 0;
    let i = 0;
    while (i < chunk.length) {
      if (this.phase === 'type') {
        start = i;
        this.type = chunk[i++]! >> 4;
        this.phase = 'length';
        this.received = 1;
        this.length = 0;
        this.lengthBytes = 0;
        this.multiplier = 1;
        continue;
      }
      if (this.phase === 'length') {
        const byte = chunk[i++]!;
        this.received += 1;
        this.length += (byte & 0x7f) * this.multiplier;
        this.multiplier *= 128;
        this.lengthBytes += 1;
        if (byte & 0x80) {
          // More length bytes follow; a fifth is malformed (MQTT 3.1.1 §2.2.3), which the parser reports.
          if (this.lengthBytes >= 4) {
            this.lost = true;
            return { partialBytes: 0, partialStart: 0 };
          }
          continue;
        }
        const size = 1 + this.lengthBytes + this.length;
        if (size > this.limits.maxPacketBytes) return this.refuse({ reason: 'packet_too_large', size, limit: this.limits.maxPacketBytes }, start);
        if (this.first && size > this.limits.maxConnectBytes) {
          return this.refuse({ reason: 'connect_too_large', size, limit: this.limits.maxConnectBytes }, start);
        }
        this.beginBody();
        continue;
      }
      const refusal = this.readBody(chunk, i);
      if (refusal) return this.refuse(refusal, start);
      i = this.at;
    }
    const incomplete = this.phase !== 'type';
    return { partialBytes: incomplete ? this.received : 0, partialStart: incomplete ? start : chunk.length };
  }

  private refuse(refusal: PacketRefusal, start: number): FeedResult {
    return { refusal: { ...refusal, start }, partialBytes: 0, partialStart: start };
  }

  /** The fields to read in the body just announced by a fixed header. */
  private beginBody(): void {
    this.phase = 'body';
    this.bodyLeft = this.length;
    this.stepAt = 0;
    this.repeatFrom = -1;
    this.steps = [];
    if (this.first) {
      if (this.type === CONNECT) this.steps = this.connectSteps();
    } else if (this.level === 0) {
      // The first packet was no CONNECT: the broker closes the connection (MQTT-3.1.0-1).
    } else if (this.type === PUBLISH) {
      // The topic comes first in every version (MQTT 3.1.1 §3.3.2.1, MQTT 5 §3.3.2.1).
      this.steps = [{ kind: 'string', field: 'topic' }];
    } else if ((this.type === SUBSCRIBE || this.type === UNSUBSCRIBE) && (this.level === 3 || this.level === 4)) {
      // The packet identifier, then topic filters (each with an options byte in a SUBSCRIBE) to the end.
      this.steps = [{ kind: 'skip', bytes: 2 }, { kind: 'string', field: 'topic filter' }];
      if (this.type === SUBSCRIBE) this.steps.push({ kind: 'skip', bytes: 1 });
      this.repeatFrom = 1;
    }
    this.resetField();
    if (this.bodyLeft === 0) this.endPacket();
  }

  /**
   * A 3.1/3.1.1 CONNECT (MQTT 3.1.1 §3.1.2, §3.1.3): protocol name, level, flags, keep-alive, client id, then the
   * will topic and message, user name and password as the flags say. Other levels are the broker's to refuse.
   */
  private connectSteps(): Step[] {
    const steps: Step[] = [
      { kind: 'binary' }, // the protocol name: the parser checks it is "MQTT" or "MQIsdp"
      { kind: 'byte', use: (level) => (this.level = level) },
      {
        kind: 'byte',
        use: (flags) => {
          if (this.level !== 3 && this.level !== 4) return;
          steps.push({ kind: 'skip', bytes: 2 }, { kind: 'string', field: 'client id' });
          if (flags & 0x04) steps.push({ kind: 'string', field: 'will topic' }, { kind: 'binary' });
          if (flags & 0x80) steps.push({ kind: 'string', field: 'user name' });
          if (flags & 0x40) steps.push({ kind: 'binary' });
        },
      },
    ];
    return steps;
  }

  /** Reads body bytes from chunk[i]: at most one field, or all that is left to pass over. */
  private readBody(chunk: Buffer, i: number): PacketRefusal | undefined {
    const step = this.steps[this.stepAt];
    const available = Math.min(this.bodyLeft, chunk.length - i);
    if (!step || step.kind === 'skip') {
      const n = step ? Math.min(this.skipLeft, available) : available;
      this.consume(n);
      this.at = i + n;
      if (step) {
        this.skipLeft -= n;
        if (this.skipLeft === 0) this.nextStep();
      }
      this.endIfDone();
      return undefined;
    }
    if (step.kind === 'byte') {
      this.consume(1);
      this.at = i + 1;
      step.use(chunk[i]!);
      this.nextStep();
      this.endIfDone();
      return undefined;
    }
    if (this.prefixBytes < 2) {
      this.fieldLength = this.fieldLength * 256 + chunk[i]!;
      this.prefixBytes += 1;
      this.consume(1);
      this.at = i + 1;
      if (this.prefixBytes === 2) {
        this.fieldLeft = this.fieldLength;
        // A field longer than what is left of the packet: malformed, the parser's to report.
        if (this.fieldLength > this.bodyLeft) this.steps = [];
        else if (this.fieldLength === 0) this.nextStep();
      }
      this.endIfDone();
      return undefined;
    }
    const n = Math.min(this.fieldLeft, available);
    const piece = chunk.subarray(i, i + n);
    this.consume(n);
    this.at = i + n;
    this.fieldLeft -= n;
    let refusal: PacketRefusal | undefined;
    if (step.kind === 'string') {
      if (this.fieldLeft > 0) this.pieces.push(piece);
      else {
        // A field in one chunk is checked in place; one split across chunks is put together first (at most 64 KiB).
        const bytes = this.pieces.length === 0 ? piece : Buffer.concat([...this.pieces, piece]);
        const problem = mqttStringProblem(bytes);
        if (problem) refusal = this.stringRefusal(step.field, problem, bytes);
      }
    }
    if (refusal) return refusal;
    if (this.fieldLeft === 0) this.nextStep();
    this.endIfDone();
    return undefined;
  }

  private stringRefusal(field: string, problem: string, bytes: Buffer): PacketRefusal {
    if (this.type === PUBLISH) return { reason: 'invalid_topic', problem, topic: Buffer.from(bytes) };
    const packet = this.type === CONNECT ? 'CONNECT' : this.type === SUBSCRIBE ? 'SUBSCRIBE' : 'UNSUBSCRIBE';
    return { reason: 'invalid_string', packet, field, problem };
  }

  private consume(n: number): void {
    this.bodyLeft -= n;
    this.received += n;
  }

  private resetField(): void {
    this.prefixBytes = 0;
    this.fieldLength = 0;
    this.fieldLeft = 0;
    this.pieces = [];
    const step = this.steps[this.stepAt];
    this.skipLeft = step?.kind === 'skip' ? step.bytes : 0;
  }

  private nextStep(): void {
    this.stepAt += 1;
    if (this.stepAt >= this.steps.length && this.repeatFrom >= 0 && this.bodyLeft > 0) this.stepAt = this.repeatFrom;
    this.resetField();
  }

  private endIfDone(): void {
    if (this.bodyLeft === 0) this.endPacket();
  }

  private endPacket(): void {
    this.phase = 'type';
    this.first = false;
    this.received = 0;
    this.steps = [];
    this.pieces = [];
  }
}
