import * as zlib from 'node:zlib';

// zlib.crc32 (Node 20.15+) is the CRC-32 the inbound window's digest uses; @types/node 20 may not declare it.
const crc32 = (zlib as unknown as { crc32: (data: Buffer) => number }).crc32;

/**
 * Payloads that are all different yet share their length and CRC-32: what a sensor that repeats itself
 * ("1", "ON", a heartbeat) looks like to the inbound window's digest, but with each message still
 * identifiable by the sequence number it carries.
 *
 * CRC-32 is affine over GF(2): for messages of one length, crc(m || b) = crc(m || 0000) xor L(b), with L
 * linear in the 4 appended bytes b and independent of m. L is inverted once; then for any prefix the 4
 * bytes that bring the CRC to the target are L⁻¹(target xor crc(m || 0000)).
 */
const inverse = (() => {
  const zero = crc32(Buffer.alloc(4));
  // basis[p]: a combination of appended-byte bits whose effect on the CRC has its highest set bit at p.
  const basis: ({ effect: number; bits: number } | undefined)[] = new Array(32);
  for (let k = 0; k < 32; k++) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE((1 << k) >>> 0);
    let effect = (crc32(b) ^ zero) >>> 0;
    let bits = (1 << k) >>> 0;
    for (let p = 31; p >= 0 && effect !== 0; p--) {
      if (!((effect >>> p) & 1)) continue;
      const e = basis[p];
      if (!e) {
        basis[p] = { effect, bits };
        effect = 0;
      } else {
        effect = (effect ^ e.effect) >>> 0;
        bits = (bits ^ e.bits) >>> 0;
      }
    }
  }
  return (wanted: number): number => {
    let rest = wanted >>> 0;
    let bits = 0;
    for (let p = 31; p >= 0; p--) {
      if (!((rest >>> p) & 1)) continue;
      const e = basis[p];
      if (!e) throw new Error('CRC-32 forging: the linear map is not invertible');
      rest = (rest ^ e.effect) >>> 0;
      bits = (bits ^ e.bits) >>> 0;
    }
    return bits;
  };
})();

/** `prefix` followed by the 4 bytes that make the CRC-32 of the whole equal `target`. */
export function forgeCrc32(prefix: Buffer, target: number): Buffer {
  const out = Buffer.alloc(prefix.length + 4);
  prefix.copy(out);
  const base = crc32(out);
  out.writeUInt32LE(inverse((base ^ target) >>> 0), prefix.length);
  if (crc32(out) !== target >>> 0) throw new Error('CRC-32 forging failed');
  return out;
}

const TEXT_BYTES = 28;
export const FORGED_TARGET = 0x1ee7c0de;

/** Message `seq` of a stream whose payloads all have 32 bytes and CRC-32 FORGED_TARGET. */
export function sameDigestPayload(seq: number): Buffer {
  const text = `relay-7 ON seq=${String(seq).padStart(9, '0')}`.padEnd(TEXT_BYTES, '.');
  return forgeCrc32(Buffer.from(text, 'latin1'), FORGED_TARGET);
}

export function seqOfSameDigest(payload: Buffer): number {
  const m = /seq=(\d{9})/.exec(payload.subarray(0, TEXT_BYTES).toString('latin1'));
  if (!m) throw new Error(`not a same-digest payload: ${payload.toString('hex')}`);
  return Number(m[1]);
}
