import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { baseEnv, runCli, startNode, type NodeProcess } from './helpers/node-process.js';
import { publishRange, seqOf } from './helpers/load.js';
import { readFileSink } from './helpers/file-output.js';
import { waitFor } from './helpers/ports.js';

const MESSAGES = 1000;
const env = { MQTT_BROKER_MODE: 'embedded', FILE_SINK: 'on' };
const nodes: NodeProcess[] = [];
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.kill();
});

async function start(dataDir?: string, extra: Record<string, string> = {}): Promise<NodeProcess> {
  const node = await startNode({ ...env, ...extra }, dataDir ? { dataDir } : {});
  nodes.push(node);
  return node;
}

/** The file names the file sink writes this hour and the next, made directories: every write fails (retried), so rows stay pending. */
function blockFileSink(dataDir: string): () => void {
  const hour = (ms: number) => new Date(ms).toISOString().slice(0, 13).replace(/-/g, '').replace(':', '');
  const dirs = [Date.now(), Date.now() + 3_600_000].map((t) => path.join(dataDir, 'out', `messages-${hour(t)}-0000.ndjson`));
  for (const d of dirs) mkdirSync(d, { recursive: true });
  return () => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  };
}

/** The highest message seq in a copy of spool.db alone, i.e. without what only its WAL holds. */
function seqWithoutWal(db: string): number {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'spool-copy-'));
  try {
    copyFileSync(db, path.join(dir, 'spool.db'));
    const copy = new Database(path.join(dir, 'spool.db'), { readonly: true });
    try {
      const hasSeq = copy.prepare("SELECT COUNT(*) FROM sqlite_master WHERE name = 'sqlite_sequence'").pluck().get() === 1;
      return hasSeq ? ((copy.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").pluck().get() as number | undefined) ?? 0) : 0;
    } finally {
      copy.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A node that acknowledged MESSAGES messages (the embedded broker sends each PUBACK after the commit), then was
 * SIGKILLed with the last of those commits still in spool.db-wal only.
 */
async function crashedWithCommitsInWal(): Promise<{ dataDir: string; db: string; wal: string }> {
  const node = await start();
  blockFileSink(node.dataDir);
  await node.waitReady();
  expect(await publishRange(`mqtt://127.0.0.1:${node.mqttPort}`, 0, MESSAGES)).toBe(MESSAGES);
  await node.kill();
  const db = path.join(node.dataDir, 'spool', 'spool.db');
  const wal = `${db}-wal`;
  expect(statSync(wal).size).toBeGreaterThan(0);
  expect(seqWithoutWal(db)).toBeLessThan(MESSAGES);
  return { dataDir: node.dataDir, db, wal };
}

/** Starts a node on `dataDir` and expects it to refuse: exit 1 with a SPOOL_DAMAGED error naming `file`. */
async function expectRefusal(dataDir: string, file: string): Promise<string> {
  const node = await start(dataDir);
  // Fails at once if the node comes up instead (what it did before it checked its spool).
  const outcome = await waitFor(
    async () => (node.proc.exitCode !== null ? 'exited' : (await node.readiness().catch(() => ({ status: 0 }))).status === 200 ? 'ready' : undefined),
    30_000,
    'the node to exit or become ready',
  );
  expect(outcome).toBe('exited');
  expect(node.proc.exitCode).toBe(1);
  const failed = node.logObjects().find((l) => l.code === 'START_FAILED') as { err: { code: string; message: string } } | undefined;
  expect(failed?.err.code).toBe('SPOOL_DAMAGED');
  expect(failed?.err.message).toContain(file);
  return failed!.err.message;
}

describe('a damaged spool is refused at start, and a damaged row is never delivered', () => {
  it('after a SIGKILL alone the node starts and has every acknowledged message (no false alarm)', async () => {
    const { dataDir } = await crashedWithCommitsInWal();
    const node = await start(dataDir);
    await node.waitReady();
    expect(await node.metric('mqtt_ingest_spool_messages')).toBe(MESSAGES);
  });

  it('spool.db-wal deleted: refused, naming the spool and the missing WAL', async () => {
    const { dataDir, db, wal } = await crashedWithCommitsInWal();
    rmSync(wal);
    const message = await expectRefusal(dataDir, db);
    expect(message).toContain(`but messages up to seq ${MESSAGES} were committed`);
    expect(message).toContain(`${wal} is missing or empty`);
  });

  it('SPOOL_ACCEPT_LOSS=true starts once with what remains, logging the loss; the next start is normal', async () => {
    const { dataDir, wal } = await crashedWithCommitsInWal();
    rmSync(wal);
    const node = await start(dataDir, { SPOOL_ACCEPT_LOSS: 'true' });
    await node.waitReady();
    const kept = await node.metric('mqtt_ingest_spool_messages');
    expect(kept).toBeLessThan(MESSAGES);
    const logged = node.logObjects().find((l) => l.code === 'SPOOL_LOSS_ACCEPTED');
    expect(logged?.severity).toBe('WARNING');
    expect(String(logged?.message)).toMatch(/acknowledged messages/);
    expect(await node.stop()).toBe(0);
    // The override was for one start: without it the spool, now consistent again, opens as usual.
    const again = await start(dataDir);
    await again.waitReady();
    expect(await again.metric('mqtt_ingest_spool_messages')).toBe(kept);
  });

  it('spool.db-wal truncated: refused, and the truncated WAL is left as it was', async () => {
    const { dataDir, db, wal } = await crashedWithCommitsInWal();
    const half = Math.floor(statSync(wal).size / 2);
    truncateSync(wal, half);
    expect(await expectRefusal(dataDir, db)).toMatch(/acknowledged messages are missing/);
    expect(statSync(wal).size).toBe(half);
  });

  it('spool.db emptied while the WAL remains: refused, and the WAL (with every commit) is still there', async () => {
    const { dataDir, db, wal } = await crashedWithCommitsInWal();
    const walBytes = statSync(wal).size;
    writeFileSync(db, '');
    expect(await expectRefusal(dataDir, db)).toContain(`${db} is empty (0 bytes) but its write-ahead log ${wal} holds ${walBytes} bytes`);
    expect(existsSync(wal) && statSync(wal).size).toBe(walBytes);
    // dlq leaves a damaged spool alone too: SQLite would delete that WAL on open.
    const dlq = await runCli(['dlq', 'list'], baseEnv({ DATA_DIR: dataDir }));
    expect(dlq.code).toBe(1);
    expect(dlq.stderr).toContain('dlq does not open a damaged spool');
    expect(existsSync(wal) && statSync(wal).size).toBe(walBytes);
  });

  it('bytes flipped inside a payload in the WAL: SQLite drops the frames from there on, and the node refuses', async () => {
    const { dataDir, db, wal } = await crashedWithCommitsInWal();
    const bytes = readFileSync(wal);
    const at = bytes.indexOf(`"seq":${MESSAGES - 5},`);
    expect(at).toBeGreaterThan(0);
    bytes[at + 2] ^= 0x01;
    writeFileSync(wal, bytes);
    expect(await expectRefusal(dataDir, db)).toMatch(/acknowledged messages are missing/);
  });

  it('bytes flipped inside a payload in spool.db: that message is dead-lettered as corrupt, the others are delivered', async () => {
    const { dataDir, db } = await crashedWithCommitsInWal();
    // A clean stop checkpoints the WAL into spool.db, where the rows then are.
    const checkpointing = await start(dataDir);
    await checkpointing.waitReady();
    expect(await checkpointing.stop()).toBe(0);
    expect(existsSync(`${db}-wal`) ? statSync(`${db}-wal`).size : 0).toBe(0);
    const victim = 421;
    const bytes = readFileSync(db);
    const marker = `"seq":${victim},`;
    const at = bytes.indexOf(marker);
    expect(at).toBeGreaterThan(0);
    expect(bytes.indexOf(marker, at + 1)).toBe(-1);
    bytes[at + marker.length + 3] ^= 0x04;
    writeFileSync(db, bytes);

    for (const d of ['out']) rmSync(path.join(dataDir, d), { recursive: true, force: true });
    const node = await start(dataDir);
    await node.waitReady();
    const delivered = await waitFor(
      () => {
        const seqs = new Set(readFileSink(path.join(dataDir, 'out')).map((r) => seqOf(r.payload)));
        return seqs.size >= MESSAGES - 1 ? seqs : undefined;
      },
      30_000,
      `${MESSAGES - 1} messages in the file sink`,
    );
    expect(delivered.has(victim)).toBe(false);
    expect(delivered.size).toBe(MESSAGES - 1);
    expect(await node.metric('mqtt_ingest_dead_letters_total', { sink: 'file', reason: 'corrupt' })).toBe(1);
    const logged = node.logObjects().find((l) => l.code === 'MESSAGE_DEAD_LETTERED' && l.reason === 'corrupt') as { detail: string } | undefined;
    expect(logged?.detail).toContain(db);
    await waitFor(async () => (await node.metric('mqtt_ingest_spool_messages')) === 0, 20_000, 'spool drained');
  });
});
