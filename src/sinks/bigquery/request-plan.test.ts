import { describe, expect, it } from 'vitest';
import { encodeRows, planRequests } from './request-plan.js';
import type { RawRow } from './schema.js';

const row = (payload: string): RawRow => ({
  message_id: 'm',
  topic: 't',
  received_at: '2026-01-01T00:00:00.000Z',
  qos: 1,
  retain: false,
  payload,
  payload_encoding: 'utf8',
  data: null,
  user_properties: null,
  content_type: null,
});

describe('request planning', () => {
  it('measures each row as the request body will carry it, escapes included', () => {
    const [plain, quoted] = encodeRows([row('ab'), row('"b')], ['1', '2']);
    expect(quoted!.bytes - plain!.bytes).toBe(1); // `"` is sent as `\"`
    expect(plain!.raw).toEqual({ insertId: '1', json: row('ab') });
    const [multibyte] = encodeRows([row('é')], ['1']);
    expect(multibyte!.bytes - plain!.bytes).toBe(0); // 2 bytes of UTF-8 for 2 bytes of ASCII
  });

  it('cuts by rows and by bytes, in order, and sends a row larger than the byte budget alone', () => {
    const rows = encodeRows(Array.from({ length: 7 }, (_, i) => row(i === 4 ? 'x'.repeat(5000) : 'y')), Array.from({ length: 7 }, (_, i) => String(i)));
    const all = [0, 1, 2, 3, 4, 5, 6];
    expect(planRequests(all, rows, 3, 1_000_000)).toEqual([[0, 1, 2], [3, 4, 5], [6]]);
    expect(planRequests(all, rows, 100, 1_000)).toEqual([[0, 1, 2, 3], [4], [5, 6]]);
    expect(planRequests([], rows, 100, 1_000)).toEqual([]);
  });
});
