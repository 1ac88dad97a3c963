/**
 * The long operations commands show where they are and never wait silently: the live progress line
 * (src/cli/progress.ts) on a stand-in terminal stream and, through util-linux `script`, on a real pseudo-terminal;
 * the summary lines of `dlq replay` and `dlq purge` over 5,000 dead letters in a real spool; a spool whose write
 * lock another connection keeps; and `provision` and `smoke` against a port that refuses connections and a
 * server that accepts them and never answers, with the real thresholds (the line within 15 s of the start).
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { Progress, RowCount } from '../src/cli/progress.js';
import { Spool } from '../src/spool/spool.js';
import { baseEnv, BIN, ROOT } from './helpers/node-process.js';
import { freePort } from './helpers/ports.js';
import { startSilentServer } from './helpers/silent-server.js';

const CLEAR = '\r\x1b[K';

/** A stand-in for a terminal's stderr: what was written, in order. */
function fakeTerminal(isTTY: boolean, columns?: number) {
  const chunks: string[] = [];
  return { chunks, stream: { isTTY, columns, write: (c: string) => chunks.push(c) }, text: () => chunks.join('') };
}

describe('the progress line', () => {
  it('on a terminal: drawn in place, at most once a second, cleared before any other line and drawn again after it', () => {
    let now = 1_000_000;
    const term = fakeTerminal(true);
    const p = new Progress('dlq replay', term.stream, () => now);
    const rows = new RowCount(p, 25_000);
    rows.add(1_000);
    expect(term.chunks).toEqual([`${CLEAR}dlq replay: 1,000/25,000 rows, 0/s`]);
    now += 400;
    rows.add(1_000);
    // Within the second: not drawn (a draw is put off until the second is over).
    expect(term.chunks).toHaveLength(1);
    now += 600;
    rows.add(2_000);
    expect(term.chunks.at(-1)).toBe(`${CLEAR}dlq replay: 4,000/25,000 rows, 4,000/s`);
    p.line('mqtt-ingest dlq: something to say');
    expect(term.chunks.slice(-3)).toEqual([CLEAR, 'mqtt-ingest dlq: something to say\n', `${CLEAR}dlq replay: 4,000/25,000 rows, 4,000/s`]);
    now += 5_000;
    p.done('25,000 dead letters replayed in 6.0 s');
    expect(term.chunks.slice(-2)).toEqual([CLEAR, 'dlq replay: 25,000 dead letters replayed in 6.0 s\n']);
    // Finished: nothing is drawn any more.
    rows.add(1);
    expect(term.chunks.at(-1)).toBe('dlq replay: 25,000 dead letters replayed in 6.0 s\n');
  });

  it('off a terminal: no live line and no control characters, only the lines and the summary', () => {
    const pipe = fakeTerminal(false);
    const p = new Progress('provision', pipe.stream);
    p.update('3/7 resources checked', { live: true });
    p.line('provision: still waiting for Pub/Sub at pubsub.googleapis.com (t: get) after 15 s…');
    p.done('7 resources and 9 permissions checked in 3.1 s: ready');
    expect(pipe.text()).toBe(
      'provision: still waiting for Pub/Sub at pubsub.googleapis.com (t: get) after 15 s…\nprovision: 7 resources and 9 permissions checked in 3.1 s: ready\n',
    );
  });

  it('fits the terminal width, so that clearing the line clears all of it', () => {
    const narrow = fakeTerminal(true, 40);
    new Progress('smoke', narrow.stream).update('waiting for the message on projects/mqtt-ingest-prd/subscriptions/mqtt-ingest-smoke, 12 s');
    const drawn = narrow.text().slice(CLEAR.length);
    expect(drawn).toHaveLength(39);
    expect(drawn).toMatch(/^smoke: waiting for the message on proj…$/);
  });

  it('a live line counts its seconds by itself, and stops with the command', () => {
    vi.useFakeTimers();
    try {
      const term = fakeTerminal(true);
      const p = new Progress('smoke', term.stream);
      const since = Date.now();
      p.update(() => `waiting for the message on projects/p/subscriptions/s, ${Math.floor((Date.now() - since) / 1000)} s`, { live: true });
      vi.advanceTimersByTime(2_000);
      p.stop();
      expect(term.chunks).toEqual([
        `${CLEAR}smoke: waiting for the message on projects/p/subscriptions/s, 0 s`,
        `${CLEAR}smoke: waiting for the message on projects/p/subscriptions/s, 1 s`,
        `${CLEAR}smoke: waiting for the message on projects/p/subscriptions/s, 2 s`,
        CLEAR,
      ]);
      vi.advanceTimersByTime(5_000);
      expect(term.chunks).toHaveLength(4);
    } finally {
      vi.useRealTimers();
    }
  });
});

interface Timed {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Milliseconds from the start of the process to the first output matching each pattern given. */
  at: Map<RegExp, number>;
  elapsedMs: number;
}

/** Runs `mqtt-ingest <args>` and notes when each pattern first appears in its output (stdout and stderr). */
function runTimed(args: string[], env: NodeJS.ProcessEnv, patterns: RegExp[], timeoutMs = 40_000): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const proc = spawn(process.execPath, [BIN, ...args], { env, cwd: ROOT });
    const r: Timed = { code: null, stdout: '', stderr: '', at: new Map(), elapsedMs: 0 };
    const seen = () => {
      for (const p of patterns) if (!r.at.has(p) && p.test(r.stdout + r.stderr)) r.at.set(p, Date.now() - started);
    };
    proc.stdout.on('data', (d) => {
      r.stdout += d;
      seen();
    });
    proc.stderr.on('data', (d) => {
      r.stderr += d;
      seen();
    });
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`mqtt-ingest ${args.join(' ')} did not exit within ${timeoutMs} ms\n${r.stdout}\n${r.stderr}`));
    }, timeoutMs);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      r.code = code;
      r.elapsedMs = Date.now() - started;
      resolve(r);
    });
  });
}

function hasScript(): boolean {
  try {
    return execFileSync('script', ['--version'], { encoding: 'utf8' }).includes('util-linux');
  } catch {
    return false;
  }
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Runs `mqtt-ingest <args>` on a pseudo-terminal (util-linux `script`): stdout and stderr, as the terminal shows them. */
function runOnTerminal(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 40_000): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const command = [process.execPath, BIN, ...args].map(shellQuote).join(' ');
    const proc = spawn('script', ['-qfec', command, '/dev/null'], { env, cwd: ROOT });
    let output = '';
    proc.stdout.on('data', (d) => (output += d));
    proc.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`mqtt-ingest ${args.join(' ')} did not exit within ${timeoutMs} ms on a terminal\n${output}`));
    }, timeoutMs);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A spool as the node leaves it with `n` BigQuery dead letters (rows BigQuery refused). */
function spoolWithDeadLetters(n: number): string {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-dlq-many-'));
  dirs.push(dataDir);
  const spool = Spool.open({ dir: path.join(dataDir, 'spool'), maxBytes: 256 * 1024 * 1024, sinks: ['bigquery'] });
  const receivedAt = Date.now() - 3_600_000;
  spool.append(Array.from({ length: n }, (_, i) => ({ topic: `plant/line-${i % 50}`, payload: Buffer.from(`{"seq":${i}}`), qos: 1 as const, retain: false, receivedAt })));
  for (;;) {
    const leased = spool.lease('bigquery', 1_000);
    if (leased.length === 0) break;
    spool.deadLetter('bigquery', leased.map((message) => ({ message, reason: 'invalid', detail: 'no such field: seq' })));
  }
  spool.close();
  return dataDir;
}

function counts(dataDir: string): { deadLetters: number; messages: number } {
  const db = new Database(path.join(dataDir, 'spool', 'spool.db'), { readonly: true });
  try {
    return {
      deadLetters: db.prepare('SELECT COUNT(*) FROM dead_letters').pluck().get() as number,
      messages: db.prepare('SELECT COUNT(*) FROM messages').pluck().get() as number,
    };
  } finally {
    db.close();
  }
}

const bigqueryEnv = (dataDir: string) => baseEnv({ DATA_DIR: dataDir, GCP_PROJECT_ID: 'p', BIGQUERY_DATASET: 'telemetry', BIGQUERY_TABLE: 'raw' });
const terminal = hasScript();

describe('dlq replay and purge over many dead letters', () => {
  it('off a terminal: the existing lines, then a summary line with the counts, and no control characters', async () => {
    const dataDir = spoolWithDeadLetters(5_000);
    expect(counts(dataDir)).toEqual({ deadLetters: 5_000, messages: 0 });
    const replay = await runTimed(['dlq', 'replay'], bigqueryEnv(dataDir), []);
    expect(replay.code, replay.stderr).toBe(0);
    expect(replay.stdout).toBe('replayed 5000 dead letters (bigquery: 5000); a running node sends them within a second\n');
    expect(replay.stderr).toMatch(/\ndlq replay: 5,000 dead letters replayed in \d+\.\d s \([\d,]+\/s\)\n$/);
    expect(replay.stderr).not.toContain('\x1b');
    expect(counts(dataDir)).toEqual({ deadLetters: 0, messages: 5_000 });

    const again = spoolWithDeadLetters(5_000);
    const purge = await runTimed(['dlq', 'purge', '--older-than', '0s'], bigqueryEnv(again), []);
    expect(purge.code, purge.stderr).toBe(0);
    expect(purge.stdout).toBe('purged 5000 dead letters older than 0s\n');
    expect(purge.stderr).toMatch(/\ndlq purge: 5,000 dead letters purged in \d+\.\d s \([\d,]+\/s\)\n$/);
    expect(counts(again).deadLetters).toBe(0);
  });

  it.runIf(terminal)('on a terminal: a live line counts the rows, and the summary line follows once it is cleared', async () => {
    const dataDir = spoolWithDeadLetters(5_000);
    const r = await runOnTerminal(['dlq', 'replay'], bigqueryEnv(dataDir));
    expect(r.code, r.output).toBe(0);
    expect(r.output).toMatch(/\r\x1b\[Kdlq replay: [1-5],000\/5,000 rows, [\d,]+\/s/);
    // The live line is cleared before the result lines, which stay as they were.
    expect(r.output).toMatch(/\r\x1b\[Kreplayed 5000 dead letters \(bigquery: 5000\); a running node sends them within a second\r\n/);
    expect(r.output).toMatch(/\r\ndlq replay: 5,000 dead letters replayed in \d+\.\d s \([\d,]+\/s\)\r\n$/);
    expect(counts(dataDir).messages).toBe(5_000);
  });

  it('fails with exit 1, nothing changed, when another connection keeps the write lock past the 5 s wait', async () => {
    const dataDir = spoolWithDeadLetters(10);
    const holder = new Database(path.join(dataDir, 'spool', 'spool.db'));
    holder.prepare('BEGIN IMMEDIATE').run();
    try {
      const r = await runTimed(['dlq', 'purge', '--older-than', '0s'], bigqueryEnv(dataDir), []);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain(
        `mqtt-ingest dlq: the spool ${path.join(dataDir, 'spool', 'spool.db')} stayed locked by another writer for 5 s; nothing was changed. ` +
          'The node holds the lock only for a commit: look for another dlq command or a process stuck in a transaction, then run it again\n',
      );
      expect(r.stderr).not.toMatch(/^\s+at |SqliteError/m);
      expect(r.elapsedMs).toBeGreaterThanOrEqual(5_000);
      expect(r.elapsedMs).toBeLessThan(15_000);
    } finally {
      holder.prepare('ROLLBACK').run();
      holder.close();
    }
    expect(counts(dataDir).deadLetters).toBe(10);
  });
});

describe('provision and smoke say within 15 s that a service cannot be reached', () => {
  const stackTrace = /^\s+at |^Error:|node:internal|Node\.js v\d/m;

  it('provision: a port that refuses connections is named at once, with the setting that chose it, and provision exits 1', async () => {
    const port = await freePort();
    const cannotReachPubsub = new RegExp(
      `^provision: cannot reach the Pub/Sub emulator at 127\\.0\\.0\\.1:${port} \\(PUBSUB_EMULATOR_HOST\\) after \\d+(\\.\\d)? s: connection refused \\(nothing listens on 127\\.0\\.0\\.1:${port}\\); still trying until \\d\\d:\\d\\d:\\d\\d \\([\\d.]+ s more\\), then gives up$`,
      'm',
    );
    const cannotReachBigquery = new RegExp(`^provision: cannot reach BigQuery at http://127\\.0\\.0\\.1:${port} \\(BIGQUERY_API_ENDPOINT\\) after \\d+(\\.\\d)? s: connection refused`, 'm');
    const r = await runTimed(
      ['provision', '--dry-run', '--timeout', '5'],
      baseEnv({
        GCP_PROJECT_ID: 'mqtt-ingest-test',
        PUBSUB_TOPIC: 'prov-raw',
        PUBSUB_EMULATOR_HOST: `127.0.0.1:${port}`,
        BIGQUERY_DATASET: 'mqtt_ingest',
        BIGQUERY_TABLE: 'raw_messages',
        BIGQUERY_API_ENDPOINT: `http://127.0.0.1:${port}`,
      }),
      [cannotReachPubsub, cannotReachBigquery],
    );
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.at.get(cannotReachPubsub), r.stderr).toBeLessThan(15_000);
    expect(r.at.get(cannotReachBigquery), r.stderr).toBeLessThan(15_000);
    // The step that failed says why as well.
    expect(r.stdout).toMatch(
      new RegExp(`^failed {7}Pub/Sub topic projects/mqtt-ingest-test/topics/prov-raw: the Pub/Sub emulator at 127\\.0\\.0\\.1:${port} did not answer within 5 s \\(projects/mqtt-ingest-test/topics/prov-raw: get\\): connection refused`, 'm'),
    );
    expect(r.stdout).toMatch(/^NOT READY: 2 step\(s\) failed$/m);
    expect(r.stderr).toMatch(/\nprovision: 2 resources and 3 permissions checked \(dry run\) in \d+(\.\d)? s: NOT READY\n$/);
    expect(r.stderr).not.toMatch(stackTrace);
    // Bounded by --timeout per service, not the libraries' minute.
    expect(r.elapsedMs).toBeLessThan(20_000);
  });

  it('provision: a server that takes the connection and never answers is named within 15 s, and provision exits 1 at --timeout', async () => {
    const silent = await startSilentServer();
    try {
      const noAnswer = new RegExp(
        `^provision: no answer from the Pub/Sub emulator at ${silent.host.replace(/\./g, '\\.')} \\(PUBSUB_EMULATOR_HOST\\) after 10 s: it takes connections but has not answered \\(projects/mqtt-ingest-test/topics/prov-raw: get\\); still trying until \\d\\d:\\d\\d:\\d\\d \\([\\d.]+ s more\\), then gives up$`,
        'm',
      );
      const r = await runTimed(
        ['provision', '--dry-run', '--timeout', '12'],
        baseEnv({ GCP_PROJECT_ID: 'mqtt-ingest-test', PUBSUB_TOPIC: 'prov-raw', PUBSUB_EMULATOR_HOST: silent.host }),
        [noAnswer],
      );
      expect(r.code, r.stdout + r.stderr).toBe(1);
      expect(r.at.get(noAnswer), r.stderr).toBeGreaterThanOrEqual(10_000);
      expect(r.at.get(noAnswer), r.stderr).toBeLessThan(15_000);
      expect(r.stdout).toMatch(/^failed {7}Pub\/Sub topic projects\/mqtt-ingest-test\/topics\/prov-raw: the Pub\/Sub emulator at [\d.:]+ did not answer within 12 s/m);
      expect(r.stderr).toMatch(/\nprovision: 1 resource and 1 permission checked \(dry run\) in \d+ s: NOT READY\n$/);
      expect(silent.connections()).toBeGreaterThanOrEqual(1);
      expect(r.elapsedMs).toBeLessThan(20_000);
    } finally {
      await silent.stop();
    }
  });

  it('smoke: a Pub/Sub that refuses connections is named at once, nothing is published, exit 1 with a summary line', async () => {
    const port = await freePort();
    const broker = await startSilentServer();
    try {
      const cannotReach = new RegExp(
        `^smoke test FAILED: cannot reach the Pub/Sub emulator at 127\\.0\\.0\\.1:${port} \\(PUBSUB_EMULATOR_HOST\\): .*ECONNREFUSED.* \\(projects/mqtt-ingest-test/subscriptions/smoke-verify: pull\\); nothing was published$`,
        'm',
      );
      const r = await runTimed(
        ['smoke', '--broker', `mqtt://${broker.host}`, '--subscription', 'projects/mqtt-ingest-test/subscriptions/smoke-verify', '--timeout', '30'],
        baseEnv({ PUBSUB_EMULATOR_HOST: `127.0.0.1:${port}` }),
        [cannotReach],
      );
      expect(r.code).toBe(1);
      expect(r.at.get(cannotReach), r.stderr).toBeLessThan(15_000);
      expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
      expect(r.stdout).toMatch(/^smoke: FAILED after \d+\.\d s \(while checking the subscription projects\/mqtt-ingest-test\/subscriptions\/smoke-verify\)\n$/);
      expect(broker.connections()).toBe(0);
      expect(r.elapsedMs).toBeLessThan(15_000);
    } finally {
      await broker.stop();
    }
  });

  it('smoke: a Pub/Sub that takes the connection and never answers is named within 15 s, and smoke fails at --timeout', async () => {
    const silent = await startSilentServer();
    const broker = await startSilentServer();
    try {
      const noAnswer = new RegExp(
        `^no answer from the Pub/Sub emulator at ${silent.host.replace(/\./g, '\\.')} \\(PUBSUB_EMULATOR_HOST\\) after 10 s: it takes connections but has not answered \\(projects/mqtt-ingest-test/subscriptions/smoke-verify: pull\\); still trying until`,
        'm',
      );
      const r = await runTimed(
        ['smoke', '--broker', `mqtt://${broker.host}`, '--subscription', 'projects/mqtt-ingest-test/subscriptions/smoke-verify', '--timeout', '12'],
        baseEnv({ PUBSUB_EMULATOR_HOST: silent.host }),
        [noAnswer],
      );
      expect(r.code).toBe(1);
      expect(r.at.get(noAnswer), r.stdout).toBeLessThan(15_000);
      expect(r.stderr).toMatch(/^smoke test FAILED: the Pub\/Sub emulator at [\d.:]+ did not answer within 1[12](\.\d)? s /);
      expect(r.stdout).toMatch(/\nsmoke: FAILED after 1\d s \(while checking the subscription projects\/mqtt-ingest-test\/subscriptions\/smoke-verify\)\n$/);
      expect(broker.connections()).toBe(0);
    } finally {
      await silent.stop();
      await broker.stop();
    }
  });

  it.runIf(terminal)('on a terminal, provision and smoke draw a live line of where they are and what they wait for', async () => {
    const silent = await startSilentServer();
    try {
      const p = await runOnTerminal(['provision', '--dry-run', '--timeout', '3'], baseEnv({ GCP_PROJECT_ID: 'mqtt-ingest-test', PUBSUB_TOPIC: 'prov-raw', PUBSUB_EMULATOR_HOST: silent.host }));
      expect(p.code).toBe(1);
      expect(p.output).toContain(`${CLEAR}provision: 0/1 resources checked`);
      expect(p.output).toMatch(/\r\x1b\[Kprovision: 0\/1 resources checked; waiting for the Pub\/Sub emulator \(projects\/mqtt-ingest-test\/topics\/prov-raw: get\), [12] s/);
      expect(p.output).toMatch(/\r\x1b\[Kdry run: nothing is created\r\n/);
      expect(p.output).toMatch(/\r\nprovision: 1 resource and 1 permission checked \(dry run\) in \d\.\d s: NOT READY\r\n$/);

      const s = await runOnTerminal(
        ['smoke', '--broker', 'mqtt://127.0.0.1:1', '--subscription', 'projects/mqtt-ingest-test/subscriptions/smoke-verify', '--timeout', '3'],
        baseEnv({ PUBSUB_EMULATOR_HOST: silent.host }),
      );
      expect(s.code).toBe(1);
      expect(s.output).toMatch(/\r\x1b\[Ksmoke: checking the subscription projects\/mqtt-ingest-test\/subscriptions\/smoke-verify, [12] s/);
      expect(s.output).toMatch(/\r\nsmoke: FAILED after \d\.\d s \(while checking the subscription projects\/mqtt-ingest-test\/subscriptions\/smoke-verify\)\r\n$/);
    } finally {
      await silent.stop();
    }
  });
});
