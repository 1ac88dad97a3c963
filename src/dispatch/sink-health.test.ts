import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../core/logger.js';
import { delivered, rejected, retryable } from '../core/outcome.js';
import { errorText, truncate } from '../sinks/shared/error-text.js';
import type { SinkDescription } from '../sinks/sink.js';
import { LOUD_LOG_INTERVAL_MS, SinkHealth } from './sink-health.js';

const WORDS: SinkDescription = {
  context: { topic: 't' },
  words: { failing: 'failing', degraded: 'degraded', recovered: 'recovered', action: 'writing to t' },
};

/** A SinkHealth on a clock the test moves: `advance` moves both clocks, `stepWall` the wall clock alone. */
function setup(describe: SinkDescription = WORDS) {
  const lines: Array<Record<string, unknown>> = [];
  const out = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  let wall = Date.UTC(2026, 0, 1);
  let mono = 1_000;
  const health = new SinkHealth({ sink: 'pubsub', describe, logger: createLogger('info', out), clock: { now: () => wall, monotonic: () => mono } });
  return {
    health,
    lines,
    advance: (ms: number) => {
      wall += ms;
      mono += ms;
    },
    stepWall: (ms: number) => (wall += ms),
  };
}

const down = retryable('unavailable', 'down', 'degraded');
const denied = retryable('permission_denied', 'grant it', 'failing');

describe('SinkHealth', () => {
  it('keeps when the current problem began through changes of its reason, and forgets it on recovery', () => {
    const { health, advance } = setup();
    expect(health.status().problemSince).toBeUndefined();
    health.wrote([down]);
    const began = health.status().problemSince;
    expect(began).toBe(new Date(Date.UTC(2026, 0, 1)).toISOString());
    advance(5_000);
    health.wrote([denied]);
    expect(health.status()).toMatchObject({ state: 'failing', problemSince: began });
    // A write that delivers some and retries others keeps the problem; its delivery is later than problemSince.
    health.wrote([delivered, down]);
    expect(health.status().problemSince).toBe(began);
    expect(Date.parse(health.status().lastDeliveryAt!)).toBeGreaterThan(Date.parse(began!));
    health.wrote([delivered]);
    expect(health.status()).toMatchObject({ state: 'ok', problemSince: undefined });
    advance(1_000);
    health.wrote([down]);
    expect(health.status().problemSince).toBe(new Date(Date.UTC(2026, 0, 1) + 6_000).toISOString());
  });

  it('shows failing and degraded in the status, logging each kind and reason at most once a minute', () => {
    const { health, lines, advance } = setup();
    health.wrote([down, down, rejected('too_large', 'big')]);
    health.wrote([down]);
    expect(health.status()).toMatchObject({ state: 'degraded', detail: 'writing to t failed (unavailable); the dispatcher retries with backoff', lastError: 'unavailable: down' });
    // Failing wins over degraded within one write, wherever it stands.
    health.wrote([down, denied]);
    expect(health.status()).toMatchObject({ state: 'failing', detail: 'grant it', lastError: 'permission_denied: grant it' });
    advance(LOUD_LOG_INTERVAL_MS - 1);
    health.wrote([denied]);
    advance(1);
    health.wrote([denied]);
    expect(lines.map((l) => [l.severity, l.message, l.reason])).toEqual([
      ['WARNING', 'degraded', 'unavailable'],
      ['ERROR', 'failing: grant it', 'permission_denied'],
      ['ERROR', 'failing: grant it', 'permission_denied'],
    ]);
    expect(lines[0]).toMatchObject({ sink: 'pubsub', topic: 't', detail: 'down', failed: 3 });
  });

  it('measures the interval between loud lines on the monotonic clock: a wall clock set back does not silence them', () => {
    const { health, lines, advance, stepWall } = setup();
    health.wrote([denied]);
    stepWall(-3_600_000);
    advance(LOUD_LOG_INTERVAL_MS);
    health.wrote([denied]);
    expect(lines.filter((l) => l.code === 'SINK_FAILING')).toHaveLength(2);
    expect(health.status().lastErrorAt).toBe('2025-12-31T23:01:00.000Z');
  });

  it('logs a recovery once and records the last delivery; a refused or held back message is no destination problem', () => {
    const { health, lines } = setup();
    health.wrote([delivered]);
    expect(lines).toEqual([]);
    health.wrote([retryable('timeout', 'slow', 'degraded')]);
    health.wrote([delivered, rejected('invalid', 'bad row'), retryable('held_back', 'behind a failure')]);
    health.wrote([delivered]);
    expect(lines.map((l) => l.message)).toEqual(['degraded', 'recovered']);
    expect(health.status()).toMatchObject({ state: 'ok', lastDeliveryAt: '2026-01-01T00:00:00.000Z', lastError: 'timeout: slow' });
    expect(health.status().detail).toBeUndefined();
  });

  it('takes the standing condition a sink reports as the latest word, whichever came first', () => {
    const { health, lines } = setup();
    health.condition({ health: 'failing', reason: 'schema_mismatch', detail: 'the table cannot take raw rows: column x' });
    expect(health.status()).toMatchObject({ state: 'failing', detail: 'the table cannot take raw rows: column x', lastError: 'schema_mismatch: the table cannot take raw rows: column x' });
    // The write that follows finds the same: not logged twice.
    health.wrote([retryable('schema_mismatch', 'the table cannot take raw rows: column x', 'failing')]);
    health.condition(undefined);
    expect(health.status().state).toBe('ok');
    health.wrote([down]);
    health.condition(undefined);
    expect(health.status().state).toBe('ok');
    expect(lines.map((l) => [l.severity, l.message])).toEqual([
      ['ERROR', 'failing: the table cannot take raw rows: column x'],
      ['INFO', 'recovered'],
      ['WARNING', 'degraded'],
      ['INFO', 'recovered'],
    ]);
    expect(lines[0]).not.toHaveProperty('failed');
  });

  it('without words logs nothing and keeps the sink\'s own detail; a batch failed whole with nothing said still shows its error', () => {
    const { health, lines } = setup({ detail: 'writing NDJSON under /out' });
    health.wrote([retryable('error', 'EACCES: permission denied', 'degraded')]);
    expect(health.status()).toMatchObject({ state: 'degraded', detail: 'writing NDJSON under /out', lastError: 'error: EACCES: permission denied' });
    health.wrote([delivered]);
    expect(health.status()).toMatchObject({ state: 'ok', detail: 'writing NDJSON under /out' });
    health.wrote([retryable('held_back')]);
    expect(health.status()).toMatchObject({ state: 'ok', lastError: 'held_back' });
    expect(lines).toEqual([]);
  });
});

describe('errorText', () => {
  it('describes an Error with the sink\'s words and anything else as a string, cut to 500 characters', () => {
    expect(errorText(new Error('boom'), (e) => `X: ${e.message}`)).toBe('X: boom');
    expect(errorText('plain', () => 'unused')).toBe('plain');
    expect(errorText(new Error('y'.repeat(900)), (e) => e.message)).toHaveLength(500);
    expect(truncate('abcdef', 4)).toBe('abc…');
  });
});
