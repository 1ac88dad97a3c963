import { DIGEST_BYTES } from './window-digest.js';

/** A journalled entry: the packet id (2 bytes), then the digest. */
export const ENTRY_BYTES = 2 + DIGEST_BYTES;

/**
 * Positions of one connection kept: no broker can have more than 65,535 messages in flight towards one client
 * (packet ids are 16-bit and an id stays taken until its PUBACK), so older positions can never be redelivered.
 */
export const KEEP_POSITIONS = 65_535;

/**
 * One connection's journalled entries, by position: 14-byte slots (packet id, digest) from `base`; packet
 * id 0 (never valid for QoS 1/2) marks a position with no entry (a message that was never committed).
 */
export class ConnectionEntries {
  base = 1;
  last = 0;
  /** Changes with every add or removal: the candidate cache is keyed on it. */
  version = 0;
  private buf = Buffer.alloc(0);

  add(position: number, packetId: number, digest: Buffer): void {
    if (position < this.base) return;
    if (position - this.base >= KEEP_POSITIONS * 2) this.dropBefore(position - KEEP_POSITIONS);
    const at = this.offset(position);
    if (at + ENTRY_BYTES > this.buf.length) {
      const grown = Buffer.alloc(Math.max(at + ENTRY_BYTES, this.buf.length * 2, 1024 * ENTRY_BYTES));
      this.buf.copy(grown);
      this.buf = grown;
    }
    this.buf.writeUInt16BE(packetId, at);
    digest.copy(this.buf, at + 2, 0, DIGEST_BYTES);
    if (position > this.last) this.last = position;
    this.version += 1;
  }

  /** Undoes add() of a rolled-back transaction. */
  remove(position: number, lastBefore: number): void {
    if (position >= this.base && this.offset(position) < this.buf.length) this.buf.writeUInt16BE(0, this.offset(position));
    this.last = lastBefore;
    this.version += 1;
  }

  packetIdAt(position: number): number {
    if (position < this.base || position > this.last) return 0;
    return this.buf.readUInt16BE(this.offset(position));
  }

  digestEquals(position: number, digest: Buffer): boolean {
    const at = this.offset(position) + 2;
    return this.buf.compare(digest, 0, DIGEST_BYTES, at, at + DIGEST_BYTES) === 0;
  }

  digestKey(position: number): string {
    const at = this.offset(position) + 2;
    return this.buf.toString('latin1', at, at + DIGEST_BYTES);
  }

  /** The slots of `count` consecutive positions, as journalled. */
  run(first: number, count: number): Buffer {
    return Buffer.from(this.buf.subarray(this.offset(first), this.offset(first) + count * ENTRY_BYTES));
  }

  dropBefore(position: number): void {
    if (position <= this.base) return;
    const from = Math.min(this.offset(position), this.buf.length);
    const kept = Buffer.alloc(Math.max(this.buf.length - from, 0));
    this.buf.copy(kept, 0, from);
    this.buf = kept;
    this.base = position;
    this.version += 1;
  }

  private offset(position: number): number {
    return (position - this.base) * ENTRY_BYTES;
  }
}
