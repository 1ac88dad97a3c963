import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { createLogger, type Logger } from '../../src/core/logger.js';
import type { SpooledMessage } from '../../src/core/message.js';
import { Metrics } from '../../src/core/metrics.js';
import type { DeliveryOutcome } from '../../src/core/outcome.js';
import { SinkHealth } from '../../src/dispatch/sink-health.js';
import { SinkRunner } from '../../src/dispatch/sink-runner.js';
import type { Sink } from '../../src/sinks/sink.js';
import { Spool } from '../../src/spool/spool.js';
import { waitFor } from '../helpers/ports.js';

/**
 * What every sink promises its runner (src/sinks/sink.ts), run against each sink and its real destination, as
 * aedes-persistence's abstract.js runs one suite against every persistence. A sink's own test file describes how
 * to reach its destination (SinkTarget) and calls sinkContract inside its describe block.
 */

/** A sink (not started) on a fresh destination, and a way to read what that destination holds. */
export interface Destination {
  sink: Sink;
  /** The message_ids the destination holds once `count` have arrived (whatever arrived within its time limit). */
  stored(count: number): Promise<string[]>;
}

/** A destination that fails every write, and what the runner must show for it. */
export interface Failure {
  what: string;
  /** A sink (not started) on that destination. */
  sink(): Promise<Sink>;
  state: 'degraded' | 'failing';
  /** The reason the outcomes carry (and a thrown write's `error`). */
  reason: RegExp;
}

export interface SinkTarget {
  /** A sink on a fresh destination that works. */
  working(): Promise<Destination>;
  failures: Failure[];
  /** Turns a message into one the destination can never take (too large, refused by it); absent when it takes anything. */
  refused?(m: SpooledMessage): SpooledMessage;
  /** `stored` reports the order of arrival (Pub/Sub's pull does not). */
  keepsOrder: boolean;
}

let counter = 0;
const run = Date.now().toString(36).toUpperCase().padStart(9, '0').slice(-9);

/** A message with a message_id no other test uses. */
export function contractMessage(payload: Buffer | string = `{"reading":${counter + 1}}`, topic = 'plant/line-1/temp'): SpooledMessage {
  counter += 1;
  return {
    seq: counter,
    messageId: `01K${run}${String(counter).padStart(14, '0')}`,
    topic,
    payload: Buffer.isBuffer(payload) ? payload : Buffer.from(payload),
    qos: 1,
    retain: false,
    receivedAt: Date.now(),
  };
}

/**
 * A sink's status as its runner keeps it (src/dispatch/sink-health.ts), fed with what the sink reports: for
 * tests of one sink that check what its outcomes and conditions amount to, without a spool.
 */
export function observed<S extends Sink>(sink: S, logger: Logger = createLogger('silent')): { write(batch: SpooledMessage[]): Promise<DeliveryOutcome[]>; status: SinkHealth['status'] } {
  const health = new SinkHealth({ sink: sink.name, describe: sink.describe, logger, clock: { now: () => Date.now(), monotonic: () => performance.now() } });
  sink.watchCondition?.((c) => health.condition(c));
  return {
    async write(batch) {
      const outcomes = await sink.write(batch);
      health.wrote(outcomes);
      return outcomes;
    },
    status: () => health.status(),
  };
}

const kinds = (outcomes: DeliveryOutcome[]) => outcomes.map((o) => o.kind);

export function sinkContract(target: SinkTarget): void {
  const sinks: Sink[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(sinks.splice(0).map((s) => s.close().catch(() => undefined)));
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const working = async () => {
    const d = await target.working();
    sinks.push(d.sink);
    return d;
  };

  it('answers one outcome per message in the batch\'s order, and the destination holds exactly the delivered ones', async () => {
    const { sink, stored } = await working();
    await sink.start();
    const batch = [
      contractMessage(),
      contractMessage(Buffer.from([0xff, 0x00, 0xc3, 0x28]), 'bin/ary'),
      contractMessage(),
      contractMessage(Buffer.alloc(0), 'empty/payload'),
      contractMessage('{"t":21.5}', 'ünïcode/°C'),
    ];
    if (target.refused) batch[2] = target.refused(batch[2]!);
    const outcomes = await sink.write(batch);
    const refusedAt = target.refused ? 2 : -1;
    expect(kinds(outcomes)).toEqual(batch.map((_, i) => (i === refusedAt ? 'rejected' : 'delivered')));
    if (target.refused) {
      const o = outcomes[2] as { reason: string; detail: string };
      expect(o.reason).toMatch(/^[a-z_]+$/); // a metric label, never error text
      expect(o.detail.length).toBeGreaterThan(0);
    }
    const expected = batch.filter((_, i) => i !== refusedAt).map((m) => m.messageId);
    const got = await stored(expected.length);
    if (target.keepsOrder) expect(got).toEqual(expected);
    else expect([...got].sort()).toEqual([...expected].sort());
  });

  it('refuses a write before start', async () => {
    const { sink } = await working();
    await expect(sink.write([contractMessage()])).rejects.toThrow();
  });

  it('refuses a write after close', async () => {
    const { sink, stored } = await working();
    await sink.start();
    const first = contractMessage();
    expect(kinds(await sink.write([first]))).toEqual(['delivered']);
    await sink.close();
    await expect(sink.write([contractMessage()])).rejects.toThrow();
    expect(await stored(1)).toEqual([first.messageId]);
  });

  it('closes idempotently, started or not', async () => {
    const { sink } = await working();
    await sink.close();
    await sink.start();
    await sink.close();
    await sink.close();
  });

  it('starts and closes cleanly without a write: nothing arrives, nothing is wrong', async () => {
    const { sink, stored } = await working();
    const spool = openSpool(sink);
    const runner = new SinkRunner(sink, spool, createLogger('silent'), new Metrics({ defaultMetrics: false }), { retryBaseMs: 20, retryCapMs: 100 });
    try {
      await sink.start();
      runner.start();
      expect(await runner.stop(1000)).toBe(true);
      await sink.close();
      expect(runner.status()).toMatchObject({ state: 'ok', lastError: undefined, inFlight: 0, consecutiveFailures: 0 });
      expect(await stored(0)).toEqual([]);
    } finally {
      spool.close();
    }
  });

  for (const failure of target.failures) {
    it(`answers a destination failure (${failure.what}) retryable, and its runner shows it and keeps the messages`, async () => {
      const sink = await failure.sink();
      sinks.push(sink);
      await sink.start(); // must not fail or block on the destination
      const batch = [contractMessage(), contractMessage()];
      // A thrown write is allowed (the runner makes the whole batch retryable): it must not reach past the runner.
      const answer = await sink.write(batch).catch((err: unknown) => err);
      if (Array.isArray(answer)) {
        expect(answer).toHaveLength(2);
        for (const o of answer as DeliveryOutcome[]) {
          expect(o).toMatchObject({ kind: 'retryable', reason: expect.stringMatching(failure.reason), health: failure.state });
        }
      } else expect(answer).toBeInstanceOf(Error);

      const spool = openSpool(sink);
      const metrics = new Metrics({ defaultMetrics: false });
      const runner = new SinkRunner(sink, spool, createLogger('silent'), metrics, { retryBaseMs: 20, retryCapMs: 100 });
      try {
        spool.append(batch.map((m) => ({ topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain, receivedAt: m.receivedAt })));
        runner.start();
        const status = await waitFor(() => {
          const s = runner.status();
          return s.consecutiveFailures >= 2 && s.state === failure.state ? s : undefined;
        }, 20_000, `${sink.name} ${failure.state} after two failed writes`);
        expect(status.lastError).toMatch(failure.reason);
        expect(Date.parse(status.lastErrorAt!)).toBeGreaterThan(Date.now() - 60_000);
        expect(status.detail).toBeTruthy();
        expect(status.lastDeliveryAt).toBeUndefined();
        expect(await runner.stop(10_000)).toBe(true);
        expect(spool.stats().pending[sink.name]).toBe(2);
        expect(spool.stats().deadLetters).toBe(0);
        const failures = (await metrics.deliveryFailures.get()).values.filter((v) => v.labels.sink === sink.name);
        expect(failures.reduce((n, v) => n + v.value, 0)).toBeGreaterThanOrEqual(4);
      } finally {
        spool.close();
      }
    });
  }

  function openSpool(sink: Sink): Spool {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sink-contract-'));
    dirs.push(dir);
    return Spool.open({ dir, maxBytes: 1e9, sinks: [sink.name] });
  }
}
