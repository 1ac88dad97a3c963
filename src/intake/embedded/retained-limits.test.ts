import { describe, expect, it } from 'vitest';
import { RetainedLimits } from './retained-limits.js';

describe('RetainedLimits', () => {
  it('keeps new topics up to the count, then refuses new ones but still takes replacements', () => {
    const r = new RetainedLimits({ maxMessages: 2, maxBytes: 1000 });
    expect(r.admit('a', 10)).toEqual({ keep: true });
    expect(r.admit('b', 10)).toEqual({ keep: true });
    expect(r.admit('c', 10)).toEqual({ keep: false, reason: 'max_messages', dropOld: false });
    expect(r.admit('a', 20)).toEqual({ keep: true }); // same topic: no new place needed
    expect([r.messages, r.bytes]).toEqual([2, 1 + 20 + 1 + 10]);
  });

  it('always takes a deletion, which frees the topic and its bytes, and ignores one for a topic it does not hold', () => {
    const r = new RetainedLimits({ maxMessages: 1, maxBytes: 1000 });
    r.admit('plant/é', 5);
    expect(r.bytes).toBe(Buffer.byteLength('plant/é') + 5);
    expect(r.admit('other', 0)).toEqual({ keep: true });
    expect(r.admit('plant/é', 0)).toEqual({ keep: true });
    expect([r.messages, r.bytes]).toEqual([0, 0]);
    expect(r.admit('next', 1)).toEqual({ keep: true });
  });

  it('refuses what would pass the bytes limit, counting a replacement by its difference, and drops the message it would replace', () => {
    const r = new RetainedLimits({ maxMessages: 10, maxBytes: 100 });
    r.admit('a', 49); // 50 bytes
    r.admit('b', 39); // 40 bytes
    expect(r.admit('c', 20)).toEqual({ keep: false, reason: 'max_bytes', dropOld: false });
    expect(r.admit('a', 59)).toEqual({ keep: true }); // 60 + 40 = 100: at the limit
    expect(r.bytes).toBe(100);
    expect(r.admit('b', 40)).toEqual({ keep: false, reason: 'max_bytes', dropOld: true });
    expect([r.messages, r.bytes]).toEqual([1, 60]);
  });

  it('keeps nothing with a limit of 0', () => {
    const r = new RetainedLimits({ maxMessages: 0, maxBytes: 1000 });
    expect(r.admit('a', 1)).toMatchObject({ keep: false, reason: 'max_messages' });
    expect(r.admit('a', 0)).toEqual({ keep: true });
  });
});
