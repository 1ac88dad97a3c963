import { describe, expect, it } from 'vitest';
import { crc32c, crc32cText, crc32cUint } from './crc32c.js';

/** The plain one-table definition, to check the sliced one against. */
function reference(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? 0x82f63b78 ^ (crc >>> 1) : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

describe('crc32c', () => {
  it('gives the Castagnoli check values (RFC 3720 B.4 and the standard "123456789" vector)', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(Buffer.alloc(32, 0))).toBe(0x8a9136aa);
    expect(crc32c(Buffer.alloc(32, 0xff))).toBe(0x62a8ab43);
    expect(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => i)))).toBe(0x46dd794e);
    expect(crc32c(new Uint8Array())).toBe(0);
  });

  it('matches the bit-by-bit definition at every length and alignment, and continues from a seed', () => {
    const data = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 151 + 7) & 0xff));
    for (let start = 0; start < 9; start++) {
      for (let len = 0; len < 40; len++) {
        const part = data.subarray(start, start + len);
        expect(crc32c(part)).toBe(reference(part));
      }
    }
    for (const cut of [0, 1, 7, 8, 9, 150, 300]) {
      expect(crc32c(data.subarray(cut), crc32c(data.subarray(0, cut)))).toBe(crc32c(data));
    }
  });

  it('continues over text code units and integer bytes as over the same bytes in a buffer', () => {
    const id = '01JCZ8Q0K2W5V7M9N1P3R5T7X9';
    expect(crc32cText(id, 123)).toBe(crc32c(Buffer.from(id, 'latin1'), 123));
    expect(crc32cText('°C', 5)).toBe(crc32c(Buffer.from([0xb0, 0x43]), 5));
    expect(crc32cText('€', 5)).toBe(crc32c(Buffer.from([0xac, 0x20]), 5));
    const at = 1_764_000_000_123;
    const bytes = Buffer.alloc(6);
    bytes.writeUIntLE(at, 0, 6);
    expect(crc32cUint(at, 6, 9)).toBe(crc32c(bytes, 9));
  });
});
