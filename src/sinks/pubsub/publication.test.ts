import { describe, it, expect } from 'vitest';
import { HELD_BACK, Publication, type PublishRequestMessage } from './publication.js';

describe('Publication: requests, refusals and ordering', () => {
  /** A stand-in for the Publish RPC: refuses any request holding a message whose data is "bad", fails on "down". */
  function publisher(isOrdered: boolean) {
    const requests: string[][] = [];
    return {
      requests,
      isOrdered,
      async publishRequest(messages: PublishRequestMessage[]) {
        const datas = messages.map((m) => m.data.toString());
        requests.push(datas);
        if (datas.includes('down')) return Object.assign(new Error('14 UNAVAILABLE: down'), { code: 14 });
        if (datas.includes('bad')) return Object.assign(new Error('3 INVALID_ARGUMENT: bad'), { code: 3, details: 'bad' });
        return undefined;
      },
      isRefusal: (err: unknown) => (err as { code?: number }).code === 3,
    };
  }
  const messages = (datas: string[]) => datas.map((d) => ({ data: Buffer.from(d), attributes: {} }));

  it('splits at 1,000 messages and at 9 MiB', async () => {
    const p = publisher(false);
    const sizes = [...Array(2500).fill(10), 9 * 1024 * 1024 - 100, 200];
    const results = await new Publication(p, messages(sizes.map(String)), sizes).run();
    expect(results.every((r) => r === undefined)).toBe(true);
    expect(p.requests.map((r) => r.length).sort((a, b) => a - b)).toEqual([1, 1, 500, 1000, 1000]);
  });

  it('halves a refused request until the refused message stands alone, keeping the order with ordering keys', async () => {
    const p = publisher(true);
    const datas = ['a', 'b', 'bad', 'c', 'd', 'e', 'f'];
    const results = await new Publication(p, messages(datas), datas.map(() => 1)).run();
    expect(results.map((r) => (r === undefined ? 'ok' : (r as Error).message))).toEqual(['ok', 'ok', '3 INVALID_ARGUMENT: bad', 'ok', 'ok', 'ok', 'ok']);
    const sentOk = p.requests.filter((r) => !r.includes('bad')).flat();
    expect(sentOk).toEqual(['a', 'b', 'c', 'd', 'e', 'f']); // in order, each once
    expect(p.requests.length).toBeLessThan(datas.length + 2);
  });

  it('with ordering keys, a failure holds back everything after it; without, the other requests still go', async () => {
    const datas = [...Array(1000).fill('x'), 'down', ...Array(1500).fill('y')];
    const ordered = publisher(true);
    const held = await new Publication(ordered, messages(datas), datas.map(() => 1)).run();
    expect(held.slice(0, 1000).every((r) => r === undefined)).toBe(true);
    expect(held.slice(1000, 2000).every((r) => (r as Error)?.message === '14 UNAVAILABLE: down')).toBe(true);
    expect(held.slice(2000).every((r) => r === HELD_BACK)).toBe(true);
    expect(ordered.requests).toHaveLength(2); // the third request was never sent

    const unordered = publisher(false);
    const all = await new Publication(unordered, messages(datas), datas.map(() => 1)).run();
    expect(all.slice(2000).every((r) => r === undefined)).toBe(true);
    expect(unordered.requests).toHaveLength(3);
  });
});
