/**
 * The connection as the embedded broker reads it: the packet guard (packet-guard.ts) in front of Aedes, the
 * budget of incomplete packets shared by all connections, and the stall timeout.
 */
import { Duplex } from 'node:stream';
import { PacketGuard, type PacketLimits, type PacketRefusal } from './packet-guard.js';

/**
 * The bytes of incomplete packets that the broker's parsers hold, counted across all connections against
 * MQTT_MAX_PARTIAL_BYTES. Complete packets are not counted: they leave the parser at once.
 */
export class PartialPacketBudget {
  private used = 0;

  constructor(readonly maxBytes: number) {}

  get bytes(): number {
    return this.used;
  }

  /** Takes `n` more bytes; false, taking nothing, when that would pass the budget. */
  take(n: number): boolean {
    if (this.used + n > this.maxBytes) return false;
    this.used += n;
    return true;
  }

  give(n: number): void {
    this.used = Math.max(0, this.used - n);
  }
}

/** Why a guarded connection was stopped: a packet the guard refused, the budget, or an incomplete packet that stalled. */
export type StreamRefusal =
  | PacketRefusal
  | { reason: 'partial_packet_budget'; bytes: number; limit: number }
  | { reason: 'partial_packet_timeout'; bytes: number; ms: number };

export interface GuardedStreamOptions extends PacketLimits {
  /** Shared by all the broker's connections. */
  budget: PartialPacketBudget;
  /** An incomplete packet that receives no byte for this long, while the broker is reading, is dropped. */
  stallMs: number;
  /** Called once, just before the stream is destroyed. */
  onRefused(refusal: StreamRefusal): void;
}

/**
 * The connection as the broker reads it: bytes pass only after the guard has seen them, and the stream stops
 * before the first packet the guard refuses, which the broker never receives (a whole packet can arrive in one
 * read, so watching the reads of the broker would be too late). It also stops a connection whose incomplete packet
 * would take the partial-packet budget over its limit, or makes no progress for `stallMs`; while the broker does
 * not read (back-pressure, e.g. a full spool holding PUBACKs), the stall clock does not run.
 */
export class GuardedStream extends Duplex {
  private held = 0;
  private released = false;
  private paused = false;
  private stallTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly inner: Duplex,
    private readonly o: GuardedStreamOptions,
  ) {
    super({ allowHalfOpen: false });
    const guard = new PacketGuard(o);
    inner.on('data', (chunk: Buffer) => {
      if (this.destroyed) return;
      const r = guard.feed(chunk);
      if (r.refusal) return this.stop(chunk.subarray(0, r.refusal.start), r.refusal);
      const more = r.partialBytes - this.held;
      if (more > 0 && !o.budget.take(more)) {
        // The complete packets before the incomplete one pass; the incomplete one is the one that does not fit.
        return this.stop(chunk.subarray(0, r.partialStart), { reason: 'partial_packet_budget', bytes: r.partialBytes, limit: o.budget.maxBytes });
      }
      if (more < 0) o.budget.give(-more);
      this.held = r.partialBytes;
      if (!this.push(chunk)) {
        this.paused = true;
        inner.pause();
      }
      this.watchStall();
    });
    inner.once('end', () => this.push(null));
    // `on`, not `once`: an 'error' with no listener left is thrown, and would end the process.
    inner.on('error', (err: Error) => this.destroy(err));
    inner.once('close', () => this.destroy());
  }

  /** Bytes of the incomplete packet this connection holds (as last seen, also after it closed). */
  get partialBytes(): number {
    return this.held;
  }

  private stop(before: Buffer, refusal: StreamRefusal): void {
    if (before.length > 0) this.push(before);
    this.o.onRefused(refusal);
    this.destroy();
  }

  /** Runs the stall clock while an incomplete packet is held and the broker reads; each new byte restarts it. */
  private watchStall(): void {
    if (this.held === 0 || this.paused || this.destroyed) {
      clearTimeout(this.stallTimer);
      this.stallTimer = undefined;
      return;
    }
    if (this.stallTimer) {
      this.stallTimer.refresh();
      return;
    }
    this.stallTimer = setTimeout(() => {
      this.stallTimer = undefined;
      if (!this.destroyed) this.stop(Buffer.alloc(0), { reason: 'partial_packet_timeout', bytes: this.held, ms: this.o.stallMs });
    }, this.o.stallMs);
    this.stallTimer.unref();
  }

  override _read(): void {
    if (this.paused) {
      this.paused = false;
      this.watchStall();
    }
    this.inner.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.inner.write(chunk, callback);
  }

  /**
   * What Aedes wrote in one tick, in one write to the socket: mqtt-packet corks the stream for each packet until the
   * next tick, and without _writev the buffered packets (a group commit's PUBACKs to one publisher) would go one
   * write(2) each, a quarter of the embedded broker's CPU at 64 publishers (bench broker).
   */
  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    this.inner.write(chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk)), callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.inner.end(callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    if (!this.released) {
      this.released = true;
      this.o.budget.give(this.held);
    }
    this.inner.destroy();
    callback(err);
  }
}
