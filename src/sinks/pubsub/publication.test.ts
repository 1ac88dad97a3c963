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

  /** Like `publisher`, and records each request's topic; fails every request to the topic `missing` with NOT_FOUND. */
  function topicPublisher(isOrdered: boolean) {
    const inner = publisher(isOrdered);
    const requests: { topic: string | undefined; datas: string[] }[] = [];
    return {
      requests,
      isOrdered,
      async publishRequest(messages: PublishRequestMessage[], topic?: string) {
        const datas = messages.map((m) => m.data.toString());
        requests.push({ topic, datas });
        if (topic === 'missing') return Object.assign(new Error('5 NOT_FOUND: Topic not found'), { code: 5 });
        return inner.publishRequest(messages);
      },
      isRefusal: inner.isRefusal,
    };
  }
  const outcome = (r: unknown) => (r === undefined ? 'ok' : r === HELD_BACK ? 'held' : (r as Error).message.split(':')[0]);

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

  it('sends each topic its own requests, in spool order within the topic, split at the limits per topic', async () => {
    const p = topicPublisher(false);
    const datas = ['a1', 'b1', 'a2', 'c1', 'b2', 'a3'];
    const topics = datas.map((d) => d[0]!);
    const results = await new Publication(p, messages(datas), datas.map(() => 1), topics).run();
    expect(results.every((r) => r === undefined)).toBe(true);
    expect(p.requests.sort((x, y) => x.topic!.localeCompare(y.topic!))).toEqual([
      { topic: 'a', datas: ['a1', 'a2', 'a3'] },
      { topic: 'b', datas: ['b1', 'b2'] },
      { topic: 'c', datas: ['c1'] },
    ]);

    const big = topicPublisher(false);
    const many = [...Array(1500).fill('x'), ...Array(10).fill('y')];
    await new Publication(big, messages(many), many.map(() => 1), many.map((_, j) => (j % 2 ? 'odd' : 'even'))).run();
    expect(big.requests.map((r) => `${r.topic}:${r.datas.length}`).sort()).toEqual(['even:755', 'odd:755']);
    const heavy = topicPublisher(false);
    const sizes = [9 * 1024 * 1024 - 10, 20, 5, 5];
    await new Publication(heavy, messages(['h1', 'h2', 'l1', 'l2']), sizes, ['heavy', 'heavy', 'light', 'light']).run();
    expect(heavy.requests.map((r) => `${r.topic}:${r.datas.join(',')}`).sort()).toEqual(['heavy:h1', 'heavy:h2', 'light:l1,l2']);
  });

  it('a missing topic fails only its own messages; the other topics of the write are delivered', async () => {
    for (const ordered of [false, true]) {
      const p = topicPublisher(ordered);
      const datas = ['m1', 'a1', 'm2', 'a2', 'b1'];
      const topics = ['missing', 'a', 'missing', 'a', 'b'];
      const results = await new Publication(p, messages(datas), datas.map(() => 1), topics).run();
      expect(results.map(outcome), `ordered: ${ordered}`).toEqual(['5 NOT_FOUND', 'ok', '5 NOT_FOUND', 'ok', 'ok']);
    }
  });

  it('ordered: topics go one after another in the order the batch names them; a failure holds back the rest of its topic only', async () => {
    const p = topicPublisher(true);
    let inFlight = 0;
    let most = 0;
    const publishRequest = p.publishRequest;
    p.publishRequest = async (m, topic) => {
      most = Math.max(most, ++inFlight);
      await new Promise((r) => setTimeout(r, 5));
      inFlight -= 1;
      return publishRequest(m, topic);
    };
    // Topic b, named first: a request of 1,000 good ones, then one holding 'down', then 500 more; topic a among them.
    const datas = [...Array(1000).fill('b'), 'a1', 'down', 'a2', ...Array(999).fill('b'), ...Array(500).fill('late'), 'a3'];
    const topics = datas.map((d) => (d.startsWith('a') ? 'a' : 'b'));
    const results = await new Publication(p, messages(datas), datas.map(() => 1), topics).run();
    expect(most).toBe(1);
    expect(p.requests.map((r) => `${r.topic}:${r.datas.length}`)).toEqual(['b:1000', 'b:1000', 'a:3']); // the third of b never sent
    const at = (data: string) => datas.flatMap((d, j) => (d === data ? [results[j]] : [])).map(outcome);
    expect(at('a1').concat(at('a2'), at('a3'))).toEqual(['ok', 'ok', 'ok']);
    expect(new Set(results.slice(0, 1000).map(outcome))).toEqual(new Set(['ok']));
    expect(new Set([results[1001], ...results.slice(1003, 2002)].map(outcome))).toEqual(new Set(['14 UNAVAILABLE']));
    expect(new Set(at('late'))).toEqual(new Set(['held']));

    // Named the other way round, the topics go in that order.
    const q = topicPublisher(true);
    await new Publication(q, messages(['x', 'y', 'x']), [1, 1, 1], ['second', 'first', 'second']).run();
    expect(q.requests.map((r) => r.topic)).toEqual(['second', 'first']);
  });

  it('a refused request on one topic is halved there alone; the other topic goes whole', async () => {
    for (const ordered of [false, true]) {
      const p = topicPublisher(ordered);
      const datas = ['a1', 'b1', 'a2', 'bad', 'b2', 'a3', 'b3'];
      const topics = datas.map((d) => (d.startsWith('a') ? 'a' : 'b'));
      const results = await new Publication(p, messages(datas), datas.map(() => 1), topics).run();
      expect(results.map(outcome), `ordered: ${ordered}`).toEqual(['ok', 'ok', 'ok', '3 INVALID_ARGUMENT', 'ok', 'ok', 'ok']);
      expect(p.requests.filter((r) => r.topic === 'a')).toEqual([{ topic: 'a', datas: ['a1', 'a2', 'a3'] }]);
      const b = p.requests.filter((r) => r.topic === 'b');
      expect(b[0]).toEqual({ topic: 'b', datas: ['b1', 'bad', 'b2', 'b3'] });
      const sent = b.filter((r) => !r.datas.includes('bad')).flatMap((r) => r.datas);
      expect(ordered ? sent : sent.sort()).toEqual(['b1', 'b2', 'b3']); // each once (in order, with ordering keys)
    }
  });
});
