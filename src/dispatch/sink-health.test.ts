import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../core/logger.js';
import { errorText, truncate } from '../sinks/shared/error-text.js';
import { LOUD_LOG_INTERVAL_MS, SinkHealth } from './sink-health.js';

function setup() {
  const lines: Array<Record<string, unknown>> = [];
  const out = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  let now = Date.UTC(2026, 0, 1);
  const health = new SinkHealth({
    logger: createLogger('info', out),
    clock: { now: () => now },
    context: { sink: 'test', topic: 't' },
    recovered: 'recovered',
    failing: (detail) => `failing: ${detail}`,
    degraded: 'degraded',
    degradedDetail: (reason) => `retrying (${reason})`,
  });
  return { health, lines, advance: (ms: number) => (now += ms) };
}

describe('SinkHealth', () => {
  it('shows failing and degraded in the status, logging each kind and reason at most once a minute', () => {
    const { health, lines, advance } = setup();
    health.record({ kind: 'degraded', reason: 'unavailable', detail: 'down' }, false, { failed: 3 });
    health.record({ kind: 'degraded', reason: 'unavailable', detail: 'down' }, false);
    expect(health.status()).toMatchObject({ state: 'degraded', detail: 'retrying (unavailable)', lastError: 'unavailable: down' });
    health.record({ kind: 'failing', reason: 'permission_denied', detail: 'grant it' }, false);
    expect(health.status()).toMatchObject({ state: 'failing', detail: 'grant it' });
    advance(LOUD_LOG_INTERVAL_MS);
    health.record({ kind: 'failing', reason: 'permission_denied', detail: 'grant it' }, false);
    expect(lines.map((l) => [l.severity, l.message, l.reason])).toEqual([
      ['WARNING', 'degraded', 'unavailable'],
      ['ERROR', 'failing: grant it', 'permission_denied'],
      ['ERROR', 'failing: grant it', 'permission_denied'],
    ]);
    expect(lines[0]).toMatchObject({ sink: 'test', topic: 't', failed: 3 });
  });

  it('logs a recovery once and records the last delivery', () => {
    const { health, lines } = setup();
    health.record(undefined, true);
    expect(lines).toEqual([]);
    health.record({ kind: 'degraded', reason: 'timeout', detail: 'slow' }, false);
    health.record(undefined, true);
    health.record(undefined, true);
    expect(lines.map((l) => l.message)).toEqual(['degraded', 'recovered']);
    expect(health.status()).toMatchObject({ state: 'ok', lastDeliveryAt: '2026-01-01T00:00:00.000Z' });
    expect(health.status().detail).toBeUndefined();
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
