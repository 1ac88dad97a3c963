import { afterEach, describe, expect, it, vi } from 'vitest';
import { REACH_NOTICE_MS, REACH_PROBE_MS, ServiceCalls, ServiceTimeoutError, waitNoticeMs } from './waiting.js';
import type { Reach } from './reach.js';

const pubsub = { name: 'Pub/Sub', at: 'pubsub.googleapis.com' };
const never = () => new Promise<never>(() => undefined);
/** The address answers the TCP connection (the service itself stays silent). */
const connects = async (): Promise<Reach> => ({ reached: true });

describe('calls to a service that keeps a command waiting', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('says at 10 s that the service is silent, every 15 s what it still waits for, then fails at the deadline naming the service', async () => {
    vi.useFakeTimers();
    const lines: string[] = [];
    const calls = new ServiceCalls({ say: (l) => lines.push(l), noticeMs: waitNoticeMs({}), deadlineMs: 60_000, reach: connects });
    const call = calls.call(pubsub, 'projects/x/topics/y: get', never);
    const failed = expect(call).rejects.toThrow('Pub/Sub at pubsub.googleapis.com did not answer within 60 s (projects/x/topics/y: get)');
    await vi.advanceTimersByTimeAsync(REACH_NOTICE_MS - 1);
    expect(lines).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(lines).toEqual([
      expect.stringMatching(
        /^no answer from Pub\/Sub at pubsub\.googleapis\.com after 10 s: it takes connections but has not answered \(projects\/x\/topics\/y: get\); still trying until \d\d:\d\d:\d\d \(50 s more\), then gives up$/,
      ),
    ]);
    await vi.advanceTimersByTimeAsync(14_999 - REACH_NOTICE_MS);
    expect(lines).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(lines.at(-1)).toBe('still waiting for Pub/Sub at pubsub.googleapis.com (projects/x/topics/y: get) after 15 s…');
    await vi.advanceTimersByTimeAsync(30_000);
    expect(lines.at(-1)).toBe('still waiting for Pub/Sub at pubsub.googleapis.com (projects/x/topics/y: get) after 45 s…');
    await vi.advanceTimersByTimeAsync(15_000);
    await failed;
    // Nothing more is said once the call has failed.
    const said = lines.length;
    await vi.advanceTimersByTimeAsync(60_000);
    expect(lines).toHaveLength(said);

    // The same service is not asked again by this command: the next call fails at once.
    const next = calls.call(pubsub, 'projects/x/subscriptions/s: get', () => Promise.resolve('answered'));
    await expect(next).rejects.toThrow('not asked: Pub/Sub at pubsub.googleapis.com did not answer an earlier call (projects/x/topics/y: get)');
    await expect(next).rejects.toBeInstanceOf(ServiceTimeoutError);
    // Another service still is.
    await expect(calls.call({ name: 'BigQuery', at: 'https://bigquery.googleapis.com' }, 'dataset p:d: get', () => Promise.resolve('answered'))).resolves.toBe('answered');
  });

  it('says nothing about a call that answers in time, and passes its result and its errors through', async () => {
    vi.useFakeTimers();
    const lines: string[] = [];
    const calls = new ServiceCalls({ say: (l) => lines.push(l), noticeMs: 15_000, deadlineMs: 60_000, reach: connects });
    await expect(calls.call(pubsub, 'a: get', () => Promise.resolve(7))).resolves.toBe(7);
    const notFound = Object.assign(new Error('5 NOT_FOUND: Resource not found'), { code: 5 });
    await expect(calls.call(pubsub, 'b: get', () => Promise.reject(notFound))).rejects.toBe(notFound);
    await vi.advanceTimersByTimeAsync(120_000);
    expect(lines).toEqual([]);
    // A NOT_FOUND is an answer: the service is asked again.
    await expect(calls.call(pubsub, 'c: get', () => Promise.resolve('c'))).resolves.toBe('c');
  });

  it("names the service when the client library's own deadline passes first", async () => {
    const calls = new ServiceCalls({ say: () => undefined, noticeMs: 15_000, deadlineMs: 60_000, reach: connects });
    const deadline = Object.assign(new Error('4 DEADLINE_EXCEEDED: Deadline exceeded after 30.007s,Waiting for LB pick'), { code: 4 });
    await expect(calls.call(pubsub, 't: testIamPermissions', () => Promise.reject(deadline))).rejects.toThrow(
      /^Pub\/Sub at pubsub\.googleapis\.com did not answer within \d+ s \(t: testIamPermissions\): 4 DEADLINE_EXCEEDED/,
    );
  });

  it('tries the address of a call still waiting after 2 s, and says at once, naming what chose it, that it cannot be reached', async () => {
    vi.useFakeTimers();
    const lines: string[] = [];
    const tried: [string, number][] = [];
    const refused = async (s: { at: string }, timeoutMs: number): Promise<Reach> => {
      tried.push([s.at, timeoutMs]);
      return { reached: false, why: 'connection refused (nothing listens on 127.0.0.1:9)' };
    };
    const calls = new ServiceCalls({ say: (l) => lines.push(l), noticeMs: 15_000, deadlineMs: 30_000, reach: refused });
    const emulator = { name: 'the Pub/Sub emulator', at: '127.0.0.1:9', from: 'PUBSUB_EMULATOR_HOST' };
    const call = calls.call(emulator, 't: get', never);
    const failed = expect(call).rejects.toThrow('the Pub/Sub emulator at 127.0.0.1:9 did not answer within 30 s (t: get): connection refused (nothing listens on 127.0.0.1:9)');
    await vi.advanceTimersByTimeAsync(REACH_PROBE_MS - 1);
    expect(tried).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(tried).toEqual([['127.0.0.1:9', REACH_NOTICE_MS - REACH_PROBE_MS - 250]]);
    expect(lines).toEqual([
      expect.stringMatching(
        /^cannot reach the Pub\/Sub emulator at 127\.0\.0\.1:9 \(PUBSUB_EMULATOR_HOST\) after 2 s: connection refused \(nothing listens on 127\.0\.0\.1:9\); still trying until \d\d:\d\d:\d\d \(28 s more\), then gives up$/,
      ),
    ]);
    // Said once: not again at 10 s.
    await vi.advanceTimersByTimeAsync(REACH_NOTICE_MS);
    expect(lines).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(30_000);
    await failed;
  });

  it('a try of the address that has not connected by 10 s counts as no connection, not as a silent service', async () => {
    vi.useFakeTimers();
    const lines: string[] = [];
    const calls = new ServiceCalls({ say: (l) => lines.push(l), noticeMs: 15_000, deadlineMs: 20_000, reach: () => new Promise<Reach>(() => undefined) });
    const failed = expect(calls.call({ name: 'BigQuery', at: 'https://10.255.255.1' }, 'dataset p:d: get', never)).rejects.toThrow(
      'BigQuery at https://10.255.255.1 did not answer within 20 s (dataset p:d: get): no TCP connection within 7.8 s',
    );
    await vi.advanceTimersByTimeAsync(REACH_NOTICE_MS);
    expect(lines).toEqual([expect.stringMatching(/^cannot reach BigQuery at https:\/\/10\.255\.255\.1 after 10 s: no TCP connection within 7\.8 s; still trying until /)]);
    await vi.advanceTimersByTimeAsync(10_000);
    await failed;
  });

  it('says nothing about reaching a service that answers within 2 s, and does not try its address', async () => {
    vi.useFakeTimers();
    const lines: string[] = [];
    let tries = 0;
    const calls = new ServiceCalls({
      say: (l) => lines.push(l),
      noticeMs: 15_000,
      deadlineMs: 60_000,
      reach: async () => {
        tries += 1;
        return { reached: false, why: 'x' };
      },
    });
    const answer = calls.call(pubsub, 'a: get', () => new Promise((resolve) => setTimeout(() => resolve('late but fine'), 1_900)));
    await vi.advanceTimersByTimeAsync(1_900);
    await expect(answer).resolves.toBe('late but fine');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(tries).toBe(0);
    expect(lines).toEqual([]);
  });

  it('through a proxy it does not try the address, and says at 10 s that no answer came through the proxy', async () => {
    vi.useFakeTimers();
    const lines: string[] = [];
    let tries = 0;
    const reach = async (): Promise<Reach> => {
      tries += 1;
      return { reached: true };
    };
    const calls = new ServiceCalls({ say: (l) => lines.push(l), noticeMs: 15_000, deadlineMs: 20_000, proxy: 'HTTPS_PROXY', reach });
    const failed = expect(calls.call(pubsub, 'a: get', never)).rejects.toBeInstanceOf(ServiceTimeoutError);
    await vi.advanceTimersByTimeAsync(REACH_NOTICE_MS);
    expect(tries).toBe(0);
    expect(lines).toEqual([expect.stringMatching(/^no answer from Pub\/Sub at pubsub\.googleapis\.com after 10 s: through the proxy in HTTPS_PROXY it has not answered \(a: get\); still trying until /)]);
    await vi.advanceTimersByTimeAsync(10_000);
    await failed;
  });

  it('fails a call whose library could not reach the service, and asks that service no more', async () => {
    const calls = new ServiceCalls({ say: () => undefined, noticeMs: 15_000, deadlineMs: 60_000, reach: connects });
    const bigquery = { name: 'BigQuery', at: 'http://127.0.0.1:9', from: 'BIGQUERY_API_ENDPOINT' };
    const refused = Object.assign(new Error('request to http://127.0.0.1:9/bigquery/v2/projects/p/datasets/d failed, reason: connect ECONNREFUSED 127.0.0.1:9'), {
      code: 'ECONNREFUSED',
    });
    await expect(calls.call(bigquery, 'dataset p:d: get', () => Promise.reject(refused))).rejects.toThrow(
      'cannot reach BigQuery at http://127.0.0.1:9 (BIGQUERY_API_ENDPOINT): request to http://127.0.0.1:9/bigquery/v2/projects/p/datasets/d failed, reason: connect ECONNREFUSED 127.0.0.1:9 (dataset p:d: get)',
    );
    await expect(calls.call(bigquery, 'table p:d.t: get', () => Promise.resolve('answered'))).rejects.toThrow('not asked: BigQuery at http://127.0.0.1:9 did not answer an earlier call (dataset p:d: get)');
    // An answer that is an error (not found, denied) is no failure to reach.
    const notFound = Object.assign(new Error('Not found: Dataset p:d'), { code: 404 });
    await expect(calls.call(pubsub, 'x', () => Promise.reject(notFound))).rejects.toBe(notFound);
  });

  it('takes its interval from MQTTINGEST_WAIT_NOTICE_MS (tests only), else 15 s', () => {
    expect(waitNoticeMs({})).toBe(15_000);
    expect(waitNoticeMs({ MQTTINGEST_WAIT_NOTICE_MS: '500' })).toBe(500);
    for (const bad of ['', '0', '-5', 'soon', '1.5']) expect(waitNoticeMs({ MQTTINGEST_WAIT_NOTICE_MS: bad })).toBe(15_000);
  });
});
