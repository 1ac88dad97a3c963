import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { Writable } from 'node:stream';
import os from 'node:os';
import path from 'node:path';
import { Spool } from '../spool/spool.js';
import { Metrics } from '../core/metrics.js';
import { createLogger, type Logger } from '../core/logger.js';
import { delivered, rejected, retryable, type DeliveryOutcome } from '../core/outcome.js';
import type { SpooledMessage } from '../core/message.js';
import type { ConditionReport, Sink, SinkDescription } from '../sinks/sink.js';
import { Dispatcher } from './dispatcher.js';
import type { RunnerClock, RunnerOptions } from './sink-runner.js';

/** A sink whose answer per message is decided by the test (the dispatcher's logic is what is tested). */
class ScriptedSink implements Sink {
  readonly name = 'pubsub' as const;
  readonly maxBatchMessages = 10;
  readonly maxBatchBytes = 1e6;
  readonly maxInFlight = 2;
  describe: SinkDescription = {};
  writes: number[][] = [];
  report: ConditionReport | undefined;
  watchCondition?: (report: ConditionReport) => void;
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
  async close() {}
}

/**
 * Every wait of the runner is a timer and every time it reads comes from its clock: with vitest's fake timers
 * (Date and performance included) the tests move time themselves and sleep on none of it.
 */
beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'], now: Date.UTC(2026, 0, 1) });
});

const dirs: string[] = [];
afterEach(() => {
  vi.useRealTimers();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** The runner's clock on the fake timers: the wall clock from Date, the monotonic one from performance. */
const fakeClock: RunnerClock = { now: () => Date.now(), monotonic: () => performance.now() };

const OPTS: RunnerOptions = { retryBaseMs: 5, retryCapMs: 20, idlePollMs: 5, clock: fakeClock };

function dispatcher(spool: Spool, sink: ScriptedSink, opts: Partial<RunnerOptions> = {}, metrics = new Metrics({ defaultMetrics: false }), logger: Logger = createLogger('silent')) {
  return new Dispatcher([sink], spool, logger, metrics, { ...OPTS, ...opts });
}

/** Moves fake time on in steps of 5 ms until `done` or `limitMs` of fake time has passed. */
async function until(done: () => boolean, limitMs = 5000): Promise<void> {
  for (let t = 0; !done() && t < limitMs; t += 5) await vi.advanceTimersByTimeAsync(5);
}

async function runUntil(spool: Spool, sink: ScriptedSink, done: () => boolean, metrics = new Metrics({ defaultMetrics: false })) {
  const d = dispatcher(spool, sink, {}, metrics);
  d.start();
  await until(done);
  await d.stop(1000);
  return { d, metrics };
}

function openSpool(): Spool {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dispatch-'));
  dirs.push(dir);
  return Spool.open({ dir, maxBytes: 1e9, sinks: ['pubsub'], sync: 'normal' });
}

function fill(spool: Spool, n: number) {
  spool.append(Array.from({ length: n }, (_, i) => ({ topic: `t/${i}`, payload: Buffer.from(String(i)), qos: 1 as const, retain: false, receivedAt: Date.now() })));
}

function captureLogs(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const out = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger('info', out), lines };
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
    const sink = new ScriptedSink(() => (down ? retryable('unavailable', 'connection refused', 'degraded') : delivered));
    const { logger, lines } = captureLogs();
    const d = dispatcher(spool, sink, {}, undefined, logger);
    d.start();
    await vi.advanceTimersByTimeAsync(150);
    expect(spool.stats().messages).toBe(25);
    const during = d.status().pubsub;
    expect(during).toMatchObject({ state: 'degraded', lastError: 'unavailable: connection refused' });
    // Stamped by the runner's clock at the latest failure, which came at most one capped backoff (20 ms) ago.
    expect(Date.parse(during.lastErrorAt!)).toBeGreaterThanOrEqual(Date.UTC(2026, 0, 1) + 150 - 20);
    expect(Date.parse(during.lastErrorAt!)).toBeLessThanOrEqual(Date.UTC(2026, 0, 1) + 150);
    // The backoff (2.5-20 ms after each failure of a slot) spaces the attempts: 2 slots over 150 ms.
    expect(sink.writes.length).toBeGreaterThanOrEqual(2 * (150 / 20));
    expect(sink.writes.length).toBeLessThanOrEqual(2 * (1 + 150 / 2.5));
    // While backing off, only the failed batches are retried: nothing new is leased.
    expect(new Set(sink.writes.flat()).size).toBeLessThanOrEqual(sink.maxBatchMessages * sink.maxInFlight);
    down = false;
    await until(() => spool.stats().messages === 0);
    expect(spool.stats().messages).toBe(0);
    expect(d.status().pubsub).toMatchObject({ state: 'ok', consecutiveFailures: 0, lastDeliveryAt: expect.stringMatching(/^2026-01-01T00:00:00\.\d{3}Z$/) });
    // The first failure of a run is logged (then every 10th), with its code, reason and wait.
    const backingOff = lines.filter((l) => l.code === 'SINK_BACKING_OFF');
    expect(backingOff[0]).toMatchObject({ severity: 'WARNING', sink: 'pubsub', reason: 'unavailable', detail: 'connection refused', failures: 1, retryInMs: expect.any(Number) });
    expect(backingOff.length).toBeLessThan(sink.writes.length);
    await d.stop(1000);
    spool.close();
  });

  it('shows what the outcomes say about the destination, logs it in the sink\'s words, and the condition the sink reports', async () => {
    const spool = openSpool();
    fill(spool, 3);
    let answer: DeliveryOutcome = retryable('topic_not_found', 'create the topic', 'failing');
    const sink = new ScriptedSink(() => answer);
    sink.describe = { context: { topic: 'projects/p/topics/t' }, words: { failing: 'X is failing', degraded: 'X failed', recovered: 'X recovered', action: 'publishing to t' } };
    sink.watchCondition = (report) => {
      sink.report = report;
      report({ health: 'degraded', reason: 'unavailable', detail: 'found at start' });
    };
    const { logger, lines } = captureLogs();
    const d = dispatcher(spool, sink, {}, undefined, logger);
    // The condition the sink knew before the runner took it is shown at once.
    expect(d.status().pubsub).toMatchObject({ state: 'degraded', detail: 'publishing to t failed (unavailable); the dispatcher retries with backoff', lastError: 'unavailable: found at start' });
    d.start();
    await vi.advanceTimersByTimeAsync(100);
    expect(d.status().pubsub).toMatchObject({ state: 'failing', detail: 'create the topic', lastError: 'topic_not_found: create the topic' });
    expect(d.status().pubsub.consecutiveFailures).toBeGreaterThan(2);
    answer = delivered;
    await until(() => spool.stats().messages === 0);
    expect(d.status().pubsub).toMatchObject({ state: 'ok', detail: undefined });
    sink.report!({ health: 'failing', reason: 'schema_mismatch', detail: 'change the table' });
    expect(d.status().pubsub).toMatchObject({ state: 'failing', detail: 'change the table' });
    sink.report!(undefined);
    expect(d.status().pubsub.state).toBe('ok');
    await d.stop(1000);
    const health = lines.filter((l) => String(l.message).startsWith('X '));
    expect(health.map((l) => [l.severity, l.code, l.message, l.reason])).toEqual([
      ['WARNING', 'SINK_DEGRADED', 'X failed', 'unavailable'],
      ['ERROR', 'SINK_FAILING', 'X is failing: create the topic', 'topic_not_found'], // once, however often the writes failed
      ['INFO', 'SINK_RECOVERED', 'X recovered', undefined],
      ['ERROR', 'SINK_FAILING', 'X is failing: change the table', 'schema_mismatch'],
      ['INFO', 'SINK_RECOVERED', 'X recovered', undefined],
    ]);
    expect(health[1]).toMatchObject({ sink: 'pubsub', topic: 'projects/p/topics/t', component: 'sink.pubsub', failed: 3 });
    spool.close();
  });

  it('a write that throws is retryable for its whole batch and shown with its error', async () => {
    const spool = openSpool();
    fill(spool, 2);
    let broken = true;
    const sink = new ScriptedSink(() => delivered);
    const write = sink.write.bind(sink);
    sink.write = async (batch) => {
      if (broken) throw new Error('EACCES: permission denied');
      return write(batch);
    };
    sink.describe = { detail: 'writing under /out' };
    const d = dispatcher(spool, sink);
    d.start();
    await vi.advanceTimersByTimeAsync(50);
    expect(d.status().pubsub).toMatchObject({ state: 'degraded', detail: 'writing under /out', lastError: 'error: EACCES: permission denied' });
    expect(spool.stats().messages).toBe(2);
    broken = false;
    await until(() => spool.stats().messages === 0);
    expect(d.status().pubsub).toMatchObject({ state: 'ok', detail: 'writing under /out' });
    await d.stop(1000);
    spool.close();
  });

  it('shows a sink as degraded while a write has been pending for longer than slowWriteMs', async () => {
    const spool = openSpool();
    fill(spool, 1);
    let release: () => void = () => undefined;
    const sink = new ScriptedSink(() => delivered);
    const write = sink.write.bind(sink);
    sink.write = (batch) => new Promise((resolve) => (release = () => resolve(write(batch))));
    const d = dispatcher(spool, sink, { slowWriteMs: 10_000, idlePollMs: 1000 });
    d.start();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(d.status().pubsub).toMatchObject({ state: 'ok', inFlight: 1 });
    await vi.advanceTimersByTimeAsync(2_000);
    expect(d.status().pubsub).toMatchObject({ state: 'degraded', detail: 'a write has been waiting for 12 s', inFlight: 1 });
    release();
    await until(() => spool.stats().messages === 0);
    expect(d.status().pubsub).toMatchObject({ state: 'ok', inFlight: 0 });
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
    const d = dispatcher(spool, sink, {}, metrics);
    d.start();
    await vi.advanceTimersByTimeAsync(300);
    // The first batches (one per write slot) were written once each; none again, nothing new leased.
    expect(sink.writes.length).toBeLessThanOrEqual(sink.maxInFlight);
    const written = sink.writes.flat();
    expect(new Set(written).size).toBe(written.length);
    // The recording was retried, with backoff (at least 2.5 ms apart, up to 20 ms), not on every turn of the event loop.
    expect(attempts).toBeGreaterThanOrEqual(300 / 20);
    expect(attempts).toBeLessThanOrEqual(1 + 300 / 2.5);
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
    let down = true;
    const sink = new ScriptedSink(() => (down ? retryable('unavailable', 'connection refused', 'degraded') : delivered));
    const d = dispatcher(spool, sink, { retryBaseMs: 50, retryCapMs: 50, idlePollMs: 20 });
    d.start();
    await until(() => sink.writes.length >= 1);
    // The first write failed and set its backoff (25-50 ms); now the wall clock (Date, and the runner's `now`) is
    // set back one hour while the monotonic clock goes on.
    vi.setSystemTime(Date.now() - 3_600_000);
    down = false;
    await until(() => spool.stats().messages === 0, 2000);
    expect(sink.writes.length).toBeGreaterThanOrEqual(2);
    expect(spool.stats().messages).toBe(0);
    expect(Date.parse(d.status().pubsub.lastDeliveryAt!)).toBeLessThan(Date.UTC(2026, 0, 1) - 3_500_000);
    // Rows committed after the step are leased and delivered too.
    fill(spool, 3);
    d.notify();
    await until(() => spool.stats().messages === 0, 2000);
    expect(spool.stats().messages).toBe(0);
    await d.stop(1000);
    spool.close();
  });
});
