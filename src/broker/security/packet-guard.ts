import { Duplex } from 'node:stream';

/**
 * Finds MQTT packets larger than a limit from their fixed headers alone, before their bodies arrive.
 *
 * Aedes (with mqtt-packet's parser) has no packet size limit: it buffers a packet until the length in its fixed
 * header has arrived, so one client declaring 256 MiB can make the node hold 256 MiB. The guard reads the byte
 * stream before Aedes does, tracking packet boundaries: a fixed header is one type byte and a Remaining Length
 * of 1 to 4 bytes, 7 bits each, least significant first (MQTT 3.1.1 §2.2.3); the packet is that header plus the
 * Remaining Length. Mosquitto's max_packet_size counts the same whole packet.
 */
export class PacketSizeGuard {
  /** Bytes of the current packet's body still to skip. */
  private remaining = 0;
  /** Header bytes seen of the current packet (0 = expecting a type byte). */
  private headerBytes = 0;
  private length = 0;
  private multiplier = 1;
  /** A malformed length was seen: the MQTT parser closes the connection; the guard stops tracking. */
  private lost = false;

  constructor(private readonly maxBytes: number) {}

  /**
   * Feeds the next chunk of the stream. Returns the first packet over the limit (its header is enough to tell):
   * its size and where in this chunk it starts (0 when its header began in an earlier chunk), or undefined
   * while every packet fits. A malformed length is left to the MQTT parser.
   */
  feed(chunk: Buffer): { size: number; start: number } | undefined {
    if (this.lost) return undefined;
    let start = 0;
    let i = 0;
    while (i < chunk.length) {
      if (this.remaining > 0) {
        const skip = Math.min(this.remaining, chunk.length - i);
        this.remaining -= skip;
        i += skip;
        continue;
      }
      const byte = chunk[i++]!;
      if (this.headerBytes === 0) {
        // The packet type byte.
        start = i - 1;
        this.headerBytes = 1;
        this.length = 0;
        this.multiplier = 1;
        continue;
      }
      this.length += (byte & 0x7f) * this.multiplier;
      this.multiplier *= 128;
      this.headerBytes += 1;
      if (byte & 0x80) {
        // More length bytes follow; a fifth is malformed (MQTT 3.1.1 §2.2.3), which the parser reports.
        if (this.headerBytes > 4) {
          this.lost = true;
          return undefined;
        }
        continue;
      }
      const size = this.headerBytes + this.length;
      if (size > this.maxBytes) return { size, start };
      this.remaining = this.length;
      this.headerBytes = 0;
    }
    return undefined;
  }
}

/**
 * The connection as the broker reads it: bytes pass only after the guard has seen their packet's header, and
 * the stream stops before the first packet over the limit, which the broker never receives (a whole packet can
 * arrive in one read, so watching the reads of the broker would be too late).
 */
export class GuardedStream extends Duplex {
  constructor(
    private readonly inner: Duplex,
    maxBytes: number,
    onOversize: (size: number) => void,
  ) {
    super({ allowHalfOpen: false });
    const guard = new PacketSizeGuard(maxBytes);
    inner.on('data', (chunk: Buffer) => {
      const hit = guard.feed(chunk);
      if (hit) {
        if (hit.start > 0) this.push(chunk.subarray(0, hit.start));
        onOversize(hit.size);
        this.destroy();
        return;
      }
      if (!this.push(chunk)) inner.pause();
    });
    inner.once('end', () => this.push(null));
    inner.once('error', (err: Error) => this.destroy(err));
    inner.once('close', () => this.destroy());
  }

  override _read(): void {
    this.inner.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.inner.write(chunk, callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.inner.end(callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.inner.destroy();
    callback(err);
  }
}
