import { describe, expect, it } from 'vitest';
import { Backoff, backoffDelay } from './backoff.js';

describe('backoff', () => {
  it('grows exponentially with jitter and never passes the cap', () => {
    const lo = (n: number) => backoffDelay(n, { baseMs: 100, capMs: 30_000, random: () => 0 });
    const hi = (n: number) => backoffDelay(n, { baseMs: 100, capMs: 30_000, random: () => 1 });
    expect([hi(1), hi(2), hi(3), hi(4)]).toEqual([100, 200, 400, 800]);
    expect(hi(20)).toBe(30_000);
    expect(hi(1000)).toBe(30_000);
    expect(lo(10)).toBe(50);
  });

  it('counts failures and starts again after reset', () => {
    const b = new Backoff({ baseMs: 10, capMs: 1000, random: () => 1 });
    expect([b.next(), b.next(), b.next()]).toEqual([10, 20, 40]);
    expect(b.failures).toBe(3);
    b.reset();
    expect(b.next()).toBe(10);
  });
});
