import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startNode, type NodeProcess } from './helpers/node-process.js';
import { blockFileSink, CountingPublisher, isRoot, mountTmpfs, unmountTmpfs } from './helpers/disk.js';
import { readFileSink } from './helpers/file-output.js';
import { seqOf } from './helpers/load.js';
import { serviceAvailable } from './helpers/skip.js';
import { waitFor } from './helpers/ports.js';

const run = serviceAvailable('root (to mount a tmpfs)', isRoot, 'run the tests as root, as CI does');
const MiB = 1024 * 1024;

const nodes: NodeProcess[] = [];
const publishers: CountingPublisher[] = [];
const cleanups: (() => void)[] = [];
afterEach(async () => {
  for (const p of publishers.splice(0)) await p.end().catch(() => undefined);
  for (const n of nodes.splice(0)) await n.kill();
  for (const c of cleanups.splice(0).reverse()) c();
});

/** DATA_DIR on a tmpfs of `size`; the file sink writes outside it, so only the spool fills the small disk. */
function volumes(size: string): { dataDir: string; outDir: string } {
  const dataDir = mountTmpfs(size);
  cleanups.push(() => unmountTmpfs(dataDir));
  const outDir = mkdtempSync(path.join(os.tmpdir(), 'disk-full-out-'));
  cleanups.push(() => rmSync(outDir, { recursive: true, force: true }));
  return { dataDir, outDir };
}

async function start(dataDir: string, outDir: string, extra: Record<string, string> = {}): Promise<NodeProcess> {
  // Embedded broker: its PUBACK is sent only after the commit, so a PUBACK that stops coming is back-pressure.
  const env = { MQTT_BROKER_MODE: 'embedded', FILE_SINK: 'on', FILE_SINK_DIR: outDir, RETRY_INITIAL_DELAY_MS: '100', RETRY_MAX_DELAY_MS: '1000', ...extra };
  const node = await startNode(env, { dataDir });
  nodes.push(node);
  return node;
}

async function publisher(node: NodeProcess, payloadBytes: number): Promise<CountingPublisher> {
  const p = await CountingPublisher.connect(`mqtt://127.0.0.1:${node.mqttPort}`, payloadBytes);
  publishers.push(p);
  return p;
}

interface SpoolReadiness {
  full: boolean;
  fullReason?: string;
  diskFreeBytes: number;
  reusableBytes: number;
}

async function spoolState(node: NodeProcess): Promise<{ status: number; spool: SpoolReadiness }> {
  const r = await node.readiness();
  return { status: r.status, spool: r.body.spool as SpoolReadiness };
}

/** Sends `n` messages and waits for every PUBACK. */
async function expectAcknowledged(node: NodeProcess, n: number): Promise<void> {
  const p = await publisher(node, 1000);
  p.send(n);
  await waitFor(() => p.acked === n, 15_000, `${n} PUBACKs`);
}

/** Log lines that said the spool is full. */
function fullLogs(node: NodeProcess): string[] {
  return node.logObjects().flatMap((l) => (l.code === 'SPOOL_FULL' ? [String(l.message)] : []));
}

describe.runIf(run)('a full disk: back-pressure, and messages taken again once the backlog drains', () => {
  it('on a 100 MB disk: fills to the floor (503, no PUBACK), drains, then takes messages again, also after a restart', async () => {
    const { dataDir, outDir } = volumes('100m');
    const unblock = blockFileSink(outDir);
    let node = await start(dataDir, outDir, { SPOOL_MIN_FREE_BYTES: '64MiB' });
    await node.waitReady();

    const load = await publisher(node, 8 * 1024);
    load.flow(200);
    // What was last seen, for the failure message: which of the three conditions did not hold.
    let seen: Record<string, unknown> = {};
    const full = await waitFor(
      async () => {
        const s = await spoolState(node);
        seen = { status: s.status, full: s.spool.full, fullReason: s.spool.fullReason, diskFreeBytes: s.spool.diskFreeBytes, quietMs: Math.round(load.quietMs), acked: load.acked, sent: load.sent, errors: load.errors.map(String) };
        return s.status === 503 && s.spool.full && load.quietMs > 2000 ? s : undefined;
      },
      60_000,
      'back-pressure: readiness 503 and no PUBACK for 2 s',
    ).catch((err: Error) => {
      throw new Error(`${err.message}; last seen ${JSON.stringify(seen)}; the node's last log lines:\n${node.logs.slice(-15).join('\n')}`);
    });
    load.stopFlow();
    const ackedWhenFull = load.acked;
    expect(ackedWhenFull).toBeGreaterThan(3000);
    expect(load.sent).toBeGreaterThan(ackedWhenFull);
    expect(full.spool.fullReason).toMatch(new RegExp(`^disk: .* free on ${dataDir}/spool.*SPOOL_MIN_FREE_BYTES 64 MiB`));
    // Checked before each commit with its size: the floor was not overrun (a 2 s cache let bursts past it).
    expect(full.spool.diskFreeBytes + full.spool.reusableBytes).toBeGreaterThan(63 * MiB);
    expect(fullLogs(node).some((m) => m.startsWith('spool is full (disk: ') && m.includes('until the disk has room again'))).toBe(true);
    expect(fullLogs(node).some((m) => /sink/.test(m))).toBe(false);
    await new Promise((r) => setTimeout(r, 1000));
    expect(load.acked).toBe(ackedWhenFull);

    // The sink delivers; the backlog drains to 0, and the messages that waited are committed and acknowledged.
    unblock();
    await waitFor(async () => load.acked === load.sent && (await node.metric('mqtt_ingest_spool_messages')) === 0, 60_000, 'the backlog drained');
    const drained = await waitFor(
      async () => {
        const s = await spoolState(node);
        return s.status === 200 ? s : undefined;
      },
      10_000,
      'readiness 200 after the drain',
    );
    await expectAcknowledged(node, 200);
    console.log(
      `disk full: ${ackedWhenFull} messages of 8 KiB acknowledged before back-pressure (${full.spool.fullReason}); ` +
        `after the drain ${Math.round(drained.spool.diskFreeBytes / MiB)} MiB free on the disk, ${Math.round(drained.spool.reusableBytes / MiB)} MiB free inside spool.db`,
    );

    expect(await node.stop()).toBe(0);
    node = await start(dataDir, outDir, { SPOOL_MIN_FREE_BYTES: '64MiB' });
    await node.waitReady(20_000);
    await expectAcknowledged(node, 200);
    await waitFor(async () => (await node.metric('mqtt_ingest_spool_messages')) === 0, 20_000, 'the spool drained');

    // Nothing was lost on the way: every acknowledged message is in the file sink.
    const seqs = new Set(readFileSink(outDir).map((r) => seqOf(r.payload)));
    expect(seqs.size).toBe(load.sent);
  });

  it('on a 20 MB disk: takes a first message with a small SPOOL_MIN_FREE_BYTES; with the default it says "disk", not the sinks', async () => {
    const { dataDir, outDir } = volumes('20m');
    const small = await start(dataDir, outDir, { SPOOL_MIN_FREE_BYTES: '4MiB' });
    await small.waitReady();
    await expectAcknowledged(small, 10);
    await waitFor(async () => (await small.metric('mqtt_ingest_spool_messages')) === 0, 10_000, 'delivered');
    expect(await small.stop()).toBe(0);

    const node = await start(dataDir, outDir);
    const state = await waitFor(
      async () => {
        const s = await spoolState(node).catch(() => undefined);
        return s?.spool?.full ? s : undefined;
      },
      20_000,
      'readiness showing the spool full',
    );
    expect(state.status).toBe(503);
    expect(state.spool.fullReason).toMatch(new RegExp(`^disk: 1\\d(\\.\\d)? MiB free on ${dataDir}/spool.*, below SPOOL_MIN_FREE_BYTES 256 MiB$`));
    const warned = node.logObjects().find((l) => l.code === 'SPOOL_DISK_TOO_SMALL');
    expect(warned?.severity).toBe('WARNING');
    expect(warned?.message).toContain('holds 20 MiB in all, not more than SPOOL_MIN_FREE_BYTES 256 MiB');

    const p = await publisher(node, 100);
    p.send(1);
    await waitFor(() => fullLogs(node).length > 0, 10_000, 'the log saying the spool is full');
    await new Promise((r) => setTimeout(r, 1500));
    expect(p.acked).toBe(0);
    expect(fullLogs(node)[0]).toMatch(/^spool is full \(disk: .*below SPOOL_MIN_FREE_BYTES 256 MiB\): .*until the disk has room again/);
    expect(fullLogs(node).some((m) => /sink/.test(m))).toBe(false);
  });
});
