import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startNode, type NodeProcess } from './helpers/node-process.js';
import { blockFileSink, CountingPublisher } from './helpers/disk.js';
import { readFileSink } from './helpers/file-output.js';
import { seqOf } from './helpers/load.js';
import { serviceAvailable } from './helpers/skip.js';
import { waitFor } from './helpers/ports.js';

/** Debian's libfaketime (package faketime), under its multiarch directory. */
function libfaketime(): string | undefined {
  for (const arch of existsSync('/usr/lib') ? readdirSync('/usr/lib') : []) {
    const lib = path.join('/usr/lib', arch, 'faketime', 'libfaketime.so.1');
    if (existsSync(lib)) return lib;
  }
  return undefined;
}

const lib = libfaketime();
const run = serviceAvailable('libfaketime', lib !== undefined, 'apt-get install faketime');

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe.runIf(run)('the node under a wall clock stepped back one hour (libfaketime)', () => {
  it('a sink in backoff still retries, and messages committed after the step are delivered', async () => {
    const work = mkdtempSync(path.join(os.tmpdir(), 'clock-step-'));
    cleanups.push(() => rmSync(work, { recursive: true, force: true }));
    const outDir = path.join(work, 'out');
    const offset = path.join(work, 'faketime');
    writeFileSync(offset, '+0');
    const unblock = blockFileSink(outDir);
    const node: NodeProcess = await startNode({
      MQTT_BROKER_MODE: 'embedded',
      FILE_SINK: 'on',
      FILE_SINK_DIR: outDir,
      RETRY_INITIAL_DELAY_MS: '200',
      RETRY_MAX_DELAY_MS: '1000',
      // The wall clock (CLOCK_REALTIME) follows the offset in the file, re-read every second; the monotonic clock is left alone.
      LD_PRELOAD: lib,
      FAKETIME_TIMESTAMP_FILE: offset,
      FAKETIME_CACHE_DURATION: '1',
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
    });
    cleanups.push(() => node.kill());
    await node.waitReady();
    const pub = await CountingPublisher.connect(`mqtt://127.0.0.1:${node.mqttPort}`, 200);
    cleanups.push(() => pub.end().catch(() => undefined));
    pub.send(20);
    await waitFor(() => pub.acked === 20, 10_000, '20 PUBACKs');
    // The file sink fails (its file names are directories) and backs off; then the clock steps back an hour.
    await waitFor(async () => (await node.metric('mqtt_ingest_delivery_failures_total', { sink: 'file', reason: 'error' })) >= 40, 15_000, 'two failed writes');
    writeFileSync(offset, '-3600');
    // The runner retries after its backoff although the wall clock is now an hour behind its deadline: the next
    // failure is stamped with the stepped clock (before the fix, no attempt came for that hour).
    await waitFor(
      async () => {
        const sinks = (await node.readiness()).body.sinks as Record<string, { lastErrorAt?: string }>;
        return Date.parse(sinks.file?.lastErrorAt ?? '') < Date.now() - 3_500_000;
      },
      10_000,
      'a write retried on the stepped clock',
    );
    unblock();
    await waitFor(() => readFileSink(outDir).length >= 20, 15_000, 'the 20 messages delivered after the step');

    pub.send(20);
    await waitFor(() => pub.acked === 40, 10_000, '40 PUBACKs');
    const records = await waitFor(
      () => {
        const r = readFileSink(outDir);
        return r.length >= 40 ? r : undefined;
      },
      15_000,
      'the 20 messages committed after the step delivered',
    );
    expect(new Set(records.map((r) => seqOf(r.payload))).size).toBe(40);
    // The node's wall clock did step back: the later messages were stamped an hour behind.
    const late = records.filter((r) => seqOf(r.payload) >= 20).map((r) => Date.parse(r.received_at));
    expect(Math.max(...late)).toBeLessThan(Date.now() - 3_500_000);
    await waitFor(async () => (await node.metric('mqtt_ingest_spool_messages')) === 0, 10_000, 'the spool drained');
  });
});
