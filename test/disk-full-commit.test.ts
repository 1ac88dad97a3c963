import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startNode, type NodeProcess } from './helpers/node-process.js';
import { blockFileSink, CountingPublisher, fillDisk, isRoot, mountTmpfs, unmountTmpfs } from './helpers/disk.js';
import { readFileSink } from './helpers/file-output.js';
import { serviceAvailable } from './helpers/skip.js';
import { waitFor } from './helpers/ports.js';

const run = serviceAvailable('root (to mount a tmpfs)', isRoot, 'run the tests as root, as CI does');
const MESSAGES = 4000;
const LATE = 50;
const WINDOW_MS = 6000;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Rows in the spool file, as another connection reads them (what the metrics must agree with). */
function countRows(db: string): { messages: number; pendingFile: number } {
  const conn = new Database(db, { readonly: true });
  try {
    const n = (sql: string) => conn.prepare(sql).pluck().get() as number;
    return { messages: n('SELECT COUNT(*) FROM messages'), pendingFile: n('SELECT COUNT(*) FROM messages WHERE pending & 4') };
  } finally {
    conn.close();
  }
}

describe.runIf(run)('commits refused by a full disk (SQLITE_FULL)', () => {
  it('counters stay equal to the rows, deliveries do not multiply, and everything is delivered once the disk has room', async () => {
    const dataDir = mountTmpfs('96m');
    cleanups.push(() => unmountTmpfs(dataDir));
    const outDir = mkdtempSync(path.join(os.tmpdir(), 'disk-full-commit-out-'));
    cleanups.push(() => rmSync(outDir, { recursive: true, force: true }));
    const unblock = blockFileSink(outDir);
    const node: NodeProcess = await startNode(
      // A floor of 1 MiB: here the disk is filled by something else, to its last byte.
      { MQTT_BROKER_MODE: 'embedded', FILE_SINK: 'on', FILE_SINK_DIR: outDir, SPOOL_MIN_FREE_BYTES: '1MiB', RETRY_INITIAL_DELAY_MS: '100', RETRY_MAX_DELAY_MS: '1000' },
      { dataDir },
    );
    cleanups.push(() => node.kill());
    await node.waitReady();
    const pub = await CountingPublisher.connect(`mqtt://127.0.0.1:${node.mqttPort}`, 1000);
    cleanups.push(() => pub.end().catch(() => undefined));
    pub.send(MESSAGES);
    await waitFor(() => pub.acked === MESSAGES, 30_000, `${MESSAGES} PUBACKs`);

    // The write-ahead log emptied (it must grow for the next commit), then the disk filled to its last byte.
    const db = path.join(dataDir, 'spool', 'spool.db');
    const checkpoint = new Database(db);
    checkpoint.pragma('busy_timeout = 5000');
    checkpoint.pragma('wal_checkpoint(TRUNCATE)');
    checkpoint.close();
    const filler = fillDisk(dataDir);
    unblock();

    // The sink delivers, but no acknowledgement can be recorded. Watch the counters and the sink for a while.
    pub.send(LATE);
    const seen: number[] = [];
    const started = performance.now();
    while (performance.now() - started < WINDOW_MS) {
      seen.push(await node.metric('mqtt_ingest_spool_messages'), await node.metric('mqtt_ingest_spool_pending_messages', { sink: 'file' }));
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(Math.min(...seen)).toBe(MESSAGES);
    expect(Math.max(...seen)).toBe(MESSAGES);
    expect(countRows(db)).toEqual({ messages: MESSAGES, pendingFile: MESSAGES });
    const written = readFileSink(outDir);
    // One batch was written and is kept in memory, waiting for its acknowledgement to be recorded: not sent again.
    expect(written.length).toBeGreaterThan(0);
    expect(written.length).toBeLessThanOrEqual(2000);
    expect(new Set(written.map((r) => r.message_id)).size).toBe(written.length);
    const ackFailures = await node.metric('mqtt_ingest_delivery_failures_total', { sink: 'file', reason: 'spool_ack_failed' });
    expect(ackFailures).toBeGreaterThan(1);
    // Retried with backoff (from 50-100 ms, doubling, capped at 1 s; at least 50 ms apart): not a tight loop.
    expect(ackFailures).toBeLessThanOrEqual(WINDOW_MS / 50);
    const readiness = await node.readiness();
    expect(readiness.status).toBe(503);
    expect(readiness.body.spool).toMatchObject({ full: true, fullReason: expect.stringMatching(/^disk: /) });
    expect((readiness.body.sinks as Record<string, { state: string; detail: string }>).file).toMatchObject({
      state: 'degraded',
      detail: expect.stringContaining('database or disk is full'),
    });
    expect(pub.acked).toBe(MESSAGES);

    // Room again: the kept acknowledgements are recorded, the late messages committed, everything delivered once.
    rmSync(filler);
    await waitFor(() => pub.acked === MESSAGES + LATE, 20_000, 'the late messages acknowledged');
    await waitFor(async () => (await node.metric('mqtt_ingest_spool_messages')) === 0, 20_000, 'the spool drained');
    expect(countRows(db)).toEqual({ messages: 0, pendingFile: 0 });
    expect(await node.metric('mqtt_ingest_spool_bytes')).toBe(0);
    const all = readFileSink(outDir);
    expect(new Set(all.map((r) => r.message_id)).size).toBe(MESSAGES + LATE);
    expect(all.length).toBe(MESSAGES + LATE);
    expect(await node.metric('mqtt_ingest_messages_delivered_total', { sink: 'file' })).toBe(MESSAGES + LATE);
    await waitFor(async () => (await node.readiness()).status === 200, 10_000, 'readiness 200');
    console.log(
      `disk full at commit: ${ackFailures} acknowledgement recordings refused in ${WINDOW_MS / 1000} s, ${written.length} messages written once meanwhile; ` +
        `${all.length} file records for ${MESSAGES + LATE} messages`,
    );
  });
});
