import { afterEach, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Spool } from '../spool/spool.js';
import { Metrics } from '../core/metrics.js';
import { createLogger } from '../core/logger.js';
import { delivered, rejected, retryable, type DeliveryOutcome } from '../core/outcome.js';
import type { SpooledMessage } from '../core/message.js';
import type { Sink, SinkStatus } from '../sinks/sink.js';
import { Dispatcher } from './dispatcher.js';

/** A sink whose answer per message is decided by the test (the dispatcher's logic is what is tested). */
class ScriptedSink implements Sink {
  readonly name = 'pubsub' as const;
  readonly maxBatchMessages = 10;
  readonly maxBatchBytes = 1e6;
  readonly maxInFlight = 2;
  writes: number[][] = [];
  constructor(public answer: (m: SpooledMessage, attempt: number) => DeliveryOutcome) {}
  private attempts = new Map<string, number>();
  async start() {}
  async write(batch: SpooledMessage[]) {
    this.writes.push(batch.map((m) => m.seq));
    return batch.map((m) => {
      const n = (this.attempts.get(m.messageId) ?? 0) + 1;
      this.attempts.set(m.messageId, n);
      return this.answer(m, n);
    });
  }
  status(): SinkStatus {
    return { state: 'ok' };
  }
  async close() {}
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function runUntil(spool: Spool, sink: ScriptedSink, done: () => boolean, metrics = new Metrics({ defaultMetrics: false })) {
  const d = new Dispatcher([sink], spool, createLogger('silent'), metrics, { retryBaseMs: 5, retryCapMs: 20, idlePollMs: 5 });
  d.start();
  const deadline = Date.now() + 5000;
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  await d.stop(1000);
  return { d, metrics };
}

function openSpool(): Spool {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dispatch-'));
  dirs.push(dir);
  return Spool.open({ dir, maxBytes: 1e9, sinks: ['pubsub'] });
}

/** Waits on a monotonic clock: the tests below set Date.now back. */
async function until(done: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!done() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
}

function fill(spool: Spool, n: number) {
  spool.append(Array.from({ length: n }, (_, i) => ({ topic: `t/${i}`, payload: Buffer.from(String(i)), qos: 1 as const, retain: false, receivedAt: Date.now() })));
}

describe('dispatcher', () => {
  it('delivers in batches within the sink limits and empties the spool', async () => {
    const spool = openSpool();
    fill(spool, 35);
    const sink = new ScriptedSink(() => delivered);
    const { metrics } = await runUntil(spool, sink, () => spool.stats().messages === 0);
    expect(spool.stats().messages).toBe(0);
    expect(Math.max(...sink.writes.map((w) => w.length))).toBeLessThanOrEqual(10);
    expect((await metrics.messagesDelivered.get()).values[0].value).toBe(35);
    spool.close();
  });

  it('dead-letters rejected messages with their reason and keeps delivering the rest of the batch', async () => {
    const spool = openSpool();
    fill(spool, 10);
    const sink = new ScriptedSink((m) => (m.topic === 't/3' ? rejected('invalid', 'no such field: x') : delivered));
    await runUntil(spool, sink, () => spool.stats().messages === 0);
    const dead = spool.deadLetters.list();
    expect(dead.map((d) => [d.topic, d.reason, d.detail])).toEqual([['t/3', 'invalid', 'no such field: x']]);
    spool.close();
  });

  it('retries a message answered retryable until it is delivered, without losing or re-leasing others', async () => {
    const spool = openSpool();
    fill(spool, 10);
    const sink = new ScriptedSink((m, attempt) => (m.topic === 't/5' && attempt < 3 ? retryable('stopped') : delivered));
    await runUntil(spool, sink, () => spool.stats().messages === 0);
    expect(spool.stats().messages).toBe(0);
    const all = sink.writes.flat();
    // Every message written once, except t/5's retries.
    expect(all.length).toBe(12);
    spool.close();
  });

  it('backs off on whole-batch failures, keeps the rows, and recovers', async () => {
    const spool = openSpool();
    fill(spool, 25);
    let down = true;
    const sink = new ScriptedSink(() => (down ? retryable('unavailable', 'connection refused') : delivered));
    const d = new Dispatcher([sink], spool, createLogger('silent'), new Metrics({ defaultMetrics: false }), { retryBaseMs: 5, retryCapMs: 20, idlePollMs: 5 });
    d.start();
    await new Promise((r) => setTimeout(r, 150));
    expect(spool.stats().messages).toBe(25);
    expect(d.status().pubsub.state).toBe('degraded');
    // While backing off, only the failed batches are retried: nothing new is leased.
    expect(new Set(sink.writes.flat()).size).toBeLessThanOrEqual(sink.maxBatchMessages * sink.maxInFlight);
    down = false;
    const deadline = Date.now() + 5000;
    while (spool.stats().messages > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(spool.stats().messages).toBe(0);
    expect(d.status().pubsub.state).toBe('ok');
    await d.stop(1000);
    spool.close();
  });

  it('when deliveries cannot be recorded (SQLITE_FULL), keeps the outcome and retries only the recording, with backoff: nothing is sent twice', async () => {
    const spool = openSpool();
    fill(spool, 35);
    const sink = new ScriptedSink(() => delivered);
    const ack = spool.ack.bind(spool);
    let diskFull = true;
    let attempts = 0;
    spool.ack = (name, messages) => {
      attempts += 1;
      if (diskFull) throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
      ack(name, messages);
    };
    const metrics = new Metrics({ defaultMetrics: false });
    const d = new Dispatcher([sink], spool, createLogger('silent'), metrics, { retryBaseMs: 5, retryCapMs: 20, idlePollMs: 5 });
    d.start();
    await new Promise((r) => setTimeout(r, 300));
    // The first batches (one per write slot) were written once each; none again, nothing new leased.
    expect(sink.writes.length).toBeLessThanOrEqual(sink.maxInFlight);
    const written = sink.writes.flat();
    expect(new Set(written).size).toBe(written.length);
    // The recording was retried, with backoff (at least 2.5 ms apart, up to 20 ms), not on every turn of the event loop.
    expect(attempts).toBeGreaterThan(3);
    expect(attempts).toBeLessThanOrEqual(300 / 2.5);
    expect(d.status().pubsub).toMatchObject({ state: 'degraded', unrecorded: written.length });
    expect(d.status().pubsub.detail).toContain('database or disk is full');
    expect(spool.stats().messages).toBe(35);
    expect((await metrics.messagesDelivered.get()).values.reduce((n, v) => n + v.value, 0)).toBe(0);

    diskFull = false;
    await until(() => spool.stats().messages === 0);
    expect(spool.stats().messages).toBe(0);
    expect(sink.writes.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: 35 }, (_, i) => i + 1));
    expect((await metrics.messagesDelivered.get()).values[0].value).toBe(35);
    expect(d.status().pubsub).toMatchObject({ state: 'ok', unrecorded: undefined });
    await d.stop(1000);
    spool.close();
  });

  it('a wall clock stepped back one hour neither holds a sink in backoff nor stops leasing new rows (monotonic deadlines)', async () => {
    const spool = openSpool();
    fill(spool, 5);
    const wall = Date.now.bind(Date);
    let behind = 0;
    // The runner's own clock and Date.now both step back; the monotonic clock goes on.
    const dateNow = vi.spyOn(Date, 'now').mockImplementation(() => wall() - behind);
    try {
      let down = true;
      const sink = new ScriptedSink(() => (down ? retryable('unavailable', 'connection refused') : delivered));
      const clock = { now: () => wall() - behind, monotonic: () => performance.now() };
      const d = new Dispatcher([sink], spool, createLogger('silent'), new Metrics({ defaultMetrics: false }), {
        retryBaseMs: 50,
        retryCapMs: 50,
        idlePollMs: 20,
        clock,
      });
      d.start();
      await until(() => sink.writes.length >= 1);
      // The first write failed and set its backoff (25-50 ms); now the wall clock is set back one hour.
      behind = 3_600_000;
      down = false;
      await until(() => spool.stats().messages === 0, 2000);
      expect(sink.writes.length).toBeGreaterThanOrEqual(2);
      expect(spool.stats().messages).toBe(0);
      // Rows committed after the step are leased and delivered too.
      fill(spool, 3);
      d.notify();
      await until(() => spool.stats().messages === 0, 2000);
      expect(spool.stats().messages).toBe(0);
      await d.stop(1000);
    } finally {
      dateNow.mockRestore();
      spool.close();
    }
  });
});
