import { afterEach, describe, expect, it, vi } from 'vitest';
import { ServiceCalls, ServiceTimeoutError, waitNoticeMs } from './waiting.js';

const pubsub = { name: 'Pub/Sub', at: 'pubsub.googleapis.com' };
const never = () => new Promise<never>(() => undefined);

describe('calls to a service that keeps a command waiting', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('says every 15 s what it still waits for, then fails at the deadline naming the service', async () => {
    vi.useFakeTimers();
    const lines: string[] = [];
    const calls = new ServiceCalls({ say: (l) => lines.push(l), noticeMs: waitNoticeMs({}), deadlineMs: 60_000 });
    const call = calls.call(pubsub, 'projects/x/topics/y: get', never);
    const failed = expect(call).rejects.toThrow('Pub/Sub at pubsub.googleapis.com did not answer within 60 s (projects/x/topics/y: get)');
    await vi.advanceTimersByTimeAsync(14_999);
    expect(lines).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(lines).toEqual(['still waiting for Pub/Sub at pubsub.googleapis.com (projects/x/topics/y: get) after 15 s…']);
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
    const calls = new ServiceCalls({ say: (l) => lines.push(l), noticeMs: 15_000, deadlineMs: 60_000 });
    await expect(calls.call(pubsub, 'a: get', () => Promise.resolve(7))).resolves.toBe(7);
    const notFound = Object.assign(new Error('5 NOT_FOUND: Resource not found'), { code: 5 });
    await expect(calls.call(pubsub, 'b: get', () => Promise.reject(notFound))).rejects.toBe(notFound);
    await vi.advanceTimersByTimeAsync(120_000);
    expect(lines).toEqual([]);
    // A NOT_FOUND is an answer: the service is asked again.
    await expect(calls.call(pubsub, 'c: get', () => Promise.resolve('c'))).resolves.toBe('c');
  });

  it("names the service when the client library's own deadline passes first", async () => {
    const calls = new ServiceCalls({ say: () => undefined, noticeMs: 15_000, deadlineMs: 60_000 });
    const deadline = Object.assign(new Error('4 DEADLINE_EXCEEDED: Deadline exceeded after 30.007s,Waiting for LB pick'), { code: 4 });
    await expect(calls.call(pubsub, 't: testIamPermissions', () => Promise.reject(deadline))).rejects.toThrow(
      /^Pub\/Sub at pubsub\.googleapis\.com did not answer within \d+ s \(t: testIamPermissions\): 4 DEADLINE_EXCEEDED/,
    );
  });

  it('takes its interval from MQTTINGEST_WAIT_NOTICE_MS (tests only), else 15 s', () => {
    expect(waitNoticeMs({})).toBe(15_000);
    expect(waitNoticeMs({ MQTTINGEST_WAIT_NOTICE_MS: '500' })).toBe(500);
    for (const bad of ['', '0', '-5', 'soon', '1.5']) expect(waitNoticeMs({ MQTTINGEST_WAIT_NOTICE_MS: bad })).toBe(15_000);
  });
});
