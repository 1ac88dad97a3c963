import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { baseEnv, BIN, runCli } from './helpers/node-process.js';
import { Spool } from '../src/spool/spool.js';
import { SINK_BITS } from '../src/spool/schema.js';
import { parseDuration } from '../src/cli/dlq.js';

/** A spool (as the node leaves it) holding dead letters of two sinks, one with a binary payload. */
function spoolWithDeadLetters(): { dataDir: string; ids: string[] } {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-dlq-'));
  const spool = Spool.open({ dir: path.join(dataDir, 'spool'), maxBytes: 64 * 1024 * 1024, sinks: ['pubsub', 'bigquery'] });
  const binary = Buffer.from([0x00, 0xff, 0xfe, 0x80]);
  const inbound = [
    { topic: 'plant/a', payload: Buffer.from('{"t":1}') },
    { topic: 'plant/b', payload: binary },
    { topic: 'plant/c', payload: Buffer.from('plain text') },
  ].map((m) => ({ ...m, qos: 1 as const, retain: false, receivedAt: Date.UTC(2026, 0, 2, 3, 4, 5, 6) }));
  const results = spool.append(inbound);
  const leased = spool.lease('bigquery', 10);
  spool.deadLetter('bigquery', [
    { message: leased[0]!, reason: 'invalid', detail: 'data: JSON nesting depth 600 exceeds the limit of 500. (invalid)' },
    { message: leased[1]!, reason: 'too_large', detail: 'the row is too large' },
  ]);
  spool.deadLetter('pubsub', [{ message: spool.lease('pubsub', 10)[2]!, reason: 'invalid_argument', detail: 'refused' }]);
  spool.close();
  return { dataDir, ids: results.map((r) => (r.stored ? r.messageId : '')) };
}

/** Runs `mqtt-ingest <args>` in `cwd` (runCli runs in the package root, where a ./data may exist). */
function runCliIn(cwd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [BIN, ...args], { env, cwd });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => (stdout += d));
    proc.stderr.on('data', (d) => (stderr += d));
    proc.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The dead letters left in a spool, by id and sink, and how many rows wait in `messages`. */
function spoolState(dataDir: string): { deadLetters: [number, string][]; messages: number } {
  const db = new Database(path.join(dataDir, 'spool', 'spool.db'), { readonly: true });
  try {
    const deadLetters = (db.prepare('SELECT id, sink FROM dead_letters ORDER BY id').all() as { id: number; sink: string }[]).map((r) => [r.id, r.sink] as [number, string]);
    return { deadLetters, messages: db.prepare('SELECT COUNT(*) FROM messages').pluck().get() as number };
  } finally {
    db.close();
  }
}

const bigqueryEnv = (dataDir: string) =>
  baseEnv({ DATA_DIR: dataDir, GCP_PROJECT_ID: 'p', BIGQUERY_DATASET: 'telemetry', BIGQUERY_TABLE: 'raw' });

function jsonLines(text: string): Record<string, unknown>[] {
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('mqtt-ingest dlq', () => {
  it('lists dead letters as a table or as JSON lines with the full payload', async () => {
    const { dataDir, ids } = spoolWithDeadLetters();
    const json = await runCli(['dlq', 'list', '--json'], bigqueryEnv(dataDir));
    expect(json.code).toBe(0);
    const records = jsonLines(json.stdout);
    expect(records.map((r) => [r.sink, r.reason, r.topic])).toEqual([
      ['bigquery', 'invalid', 'plant/a'],
      ['bigquery', 'too_large', 'plant/b'],
      ['pubsub', 'invalid_argument', 'plant/c'],
    ]);
    expect(records[0]).toMatchObject({
      message_id: ids[0],
      payload: '{"t":1}',
      payload_encoding: 'utf8',
      received_at: '2026-01-02T03:04:05.006Z',
      qos: 1,
      retain: false,
      detail: 'data: JSON nesting depth 600 exceeds the limit of 500. (invalid)',
    });
    expect(records[1]).toMatchObject({ payload: Buffer.from([0x00, 0xff, 0xfe, 0x80]).toString('base64'), payload_encoding: 'base64' });

    const table = await runCli(['dlq', 'list', '--sink', 'pubsub'], bigqueryEnv(dataDir));
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^\s+id {2}sink +reason +topic +dead at \(UTC\) +payload +detail$/);
    expect(lines[1]).toMatch(/^\s+3 {2}pubsub +invalid_argument +plant\/c +\d{4}-\d\d-\d\dT[\d:.]+Z +plain text +refused$/);
    expect(lines.at(-1)).toBe('1 dead letter (pubsub: 1)');
  });

  it('replays the dead letters of enabled sinks only, as new spool rows with their message_id', async () => {
    const { dataDir, ids } = spoolWithDeadLetters();
    const refused = await runCli(['dlq', 'replay', '--sink', 'pubsub'], bigqueryEnv(dataDir));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('the pubsub sink is not enabled in this configuration');

    const one = await runCli(['dlq', 'replay', '--id', '2'], bigqueryEnv(dataDir));
    expect(one.code).toBe(0);
    expect(one.stdout).toContain('replayed 1 dead letter (bigquery: 1)');
    const rest = await runCli(['dlq', 'replay'], bigqueryEnv(dataDir));
    expect(rest.stdout).toContain('replayed 1 dead letter (bigquery: 1)');
    expect(rest.stdout).toContain('left 1 of sink pubsub: not enabled in this configuration');

    const db = new Database(path.join(dataDir, 'spool', 'spool.db'), { readonly: true });
    const rows = db.prepare('SELECT message_id, pending FROM messages ORDER BY seq').all() as { message_id: string; pending: number }[];
    db.close();
    // The original rows still wait for Pub/Sub (plant/c only for BigQuery); the replayed ones only for BigQuery.
    expect(rows).toEqual([
      { message_id: ids[0], pending: SINK_BITS.pubsub },
      { message_id: ids[1], pending: SINK_BITS.pubsub },
      { message_id: ids[2], pending: SINK_BITS.bigquery },
      { message_id: ids[1], pending: SINK_BITS.bigquery },
      { message_id: ids[0], pending: SINK_BITS.bigquery },
    ]);
    expect(jsonLines((await runCli(['dlq', 'list', '--json'], bigqueryEnv(dataDir))).stdout).map((r) => r.sink)).toEqual(['pubsub']);
  });

  it('purges by age, reads DATA_DIR from --config, and says what is wrong otherwise', async () => {
    const { dataDir } = spoolWithDeadLetters();
    const file = path.join(dataDir, 'node.yaml');
    writeFileSync(file, `DATA_DIR: ${JSON.stringify(dataDir)}\n`);
    const env = baseEnv({});
    expect((await runCli(['dlq', 'purge', '--older-than', '1h', '--config', file], env)).stdout).toContain('purged 0 dead letters older than 1h');
    expect((await runCli(['dlq', 'purge', '--older-than', '0s', '--sink', 'bigquery', '--config', file], env)).stdout).toContain(
      'purged 2 dead letters older than 0s (sink bigquery)',
    );
    expect(jsonLines((await runCli(['dlq', 'list', '--json', '--config', file], env)).stdout)).toHaveLength(1);

    const badDuration = await runCli(['dlq', 'purge', '--older-than', 'soon', '--config', file], env);
    expect(badDuration.code).toBe(1);
    expect(badDuration.stderr).toContain('--older-than must be a duration such as 90s, 30m, 12h, 7d or 2w, got "soon"');
    const badSink = await runCli(['dlq', 'list', '--sink', 'kafka', '--config', file], env);
    expect(badSink.code).not.toBe(0);
    expect(badSink.stderr).toMatch(/Allowed choices are pubsub, bigquery, file/);
    const noSpool = await runCli(['dlq', 'list'], baseEnv({ DATA_DIR: path.join(dataDir, 'nowhere') }));
    expect(noSpool.code).toBe(1);
    expect(noSpool.stderr).toContain('there is no spool file at');
    const badConfig = await runCli(['dlq', 'list'], baseEnv({ DATA_DIR: dataDir, BIGQUERY_DATASET: 'x' }));
    expect(badConfig.code).toBe(1);
    expect(badConfig.stderr).toContain('BIGQUERY_TABLE: is unset but BIGQUERY_DATASET is set');
  });

  it('names the spool file it read on stderr, keeping --json output parseable', async () => {
    const { dataDir } = spoolWithDeadLetters();
    const file = path.join(dataDir, 'spool', 'spool.db');
    const json = await runCli(['dlq', 'list', '--json'], bigqueryEnv(dataDir));
    expect(json.code).toBe(0);
    expect(json.stderr).toBe(`mqtt-ingest dlq: spool ${file} (DATA_DIR=${dataDir} from the environment)\n`);
    expect(jsonLines(json.stdout)).toHaveLength(3);
    const yaml = path.join(dataDir, 'node.yaml');
    writeFileSync(yaml, `DATA_DIR: ${JSON.stringify(dataDir)}\n`);
    const fromFile = await runCli(['dlq', 'replay', '--config', yaml], baseEnv({}));
    expect(fromFile.stderr).toContain(`mqtt-ingest dlq: spool ${file} (DATA_DIR=${dataDir} from ${yaml})\n`);
  });

  it('refuses a spool file that does not exist, naming DATA_DIR and the path, and creates nothing', async () => {
    const elsewhere = mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-dlq-elsewhere-'));
    for (const args of [['list'], ['list', '--json'], ['replay'], ['replay', '--id', '1'], ['purge', '--older-than', '1d'], ['purge', '--id', '1']]) {
      // DATA_DIR unset: the default ./data, in whatever folder the operator happens to be.
      const r = await runCliIn(elsewhere, ['dlq', ...args], baseEnv({}));
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(
        `mqtt-ingest dlq: there is no spool file at ${path.join(elsewhere, 'data', 'spool', 'spool.db')} ` +
          `(DATA_DIR unset: the default ./data, in the working directory ${elsewhere}); nothing was read or created. ` +
          "Run dlq with the environment or --config of the node's `run`, so that DATA_DIR is the node's\n",
      );
    }
    expect(existsSync(path.join(elsewhere, 'data'))).toBe(false);
    const named = await runCli(['dlq', 'list'], baseEnv({ DATA_DIR: path.join(elsewhere, 'node') }));
    expect(named.code).toBe(1);
    expect(named.stderr).toContain(`there is no spool file at ${path.join(elsewhere, 'node', 'spool', 'spool.db')} (DATA_DIR=${path.join(elsewhere, 'node')} from the environment)`);
    expect(existsSync(path.join(elsewhere, 'node'))).toBe(false);
  });

  it('replay exits 1 and changes nothing when an --id matches nothing or is not replayable, saying why', async () => {
    const { dataDir } = spoolWithDeadLetters();
    const before = spoolState(dataDir);
    expect(before.deadLetters).toEqual([
      [1, 'bigquery'],
      [2, 'bigquery'],
      [3, 'pubsub'],
    ]);
    const cases: [string[], string][] = [
      [['--id', '999'], 'no dead letter has id 999; nothing replayed'],
      // One good id with a bad one: the good one is not replayed either.
      [['--id', '2', '--id', '998', '--id', '999'], 'no dead letters have ids 998, 999; nothing replayed'],
      [['--id', '3'], 'dead letter 3 is of sink pubsub, which is not enabled in this configuration (enabled by PUBSUB_TOPIC); nothing replayed'],
      [['--sink', 'bigquery', '--id', '1', '--id', '3'], 'dead letter 3 is of sink pubsub, not bigquery; nothing replayed'],
    ];
    for (const [args, why] of cases) {
      const r = await runCli(['dlq', 'replay', ...args], bigqueryEnv(dataDir));
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toContain(`mqtt-ingest dlq: ${why}`);
      expect(r.stdout).toBe('');
      expect(spoolState(dataDir)).toEqual(before);
    }
  });

  it('replay exits 1 when nothing could be replayed: only sinks that are off here, or no dead letters', async () => {
    const { dataDir } = spoolWithDeadLetters();
    const before = spoolState(dataDir);
    // Neither cloud sink configured (the file sink is on): none of the three can be delivered.
    const off = await runCli(['dlq', 'replay'], baseEnv({ DATA_DIR: dataDir }));
    expect(off.code).toBe(1);
    expect(off.stderr).toContain(
      'mqtt-ingest dlq: nothing replayed: the 3 dead letters held are of sinks not enabled in this configuration: ' +
        'pubsub: 1 (enabled by PUBSUB_TOPIC), bigquery: 2 (enabled by BIGQUERY_DATASET and BIGQUERY_TABLE)',
    );
    expect(off.stdout).toBe('');
    expect(spoolState(dataDir)).toEqual(before);

    const all = await runCli(['dlq', 'replay'], bigqueryEnv(dataDir));
    expect(all.code).toBe(0);
    expect(all.stdout).toContain('replayed 2 dead letters (bigquery: 2)');
    const again = await runCli(['dlq', 'replay', '--sink', 'bigquery'], bigqueryEnv(dataDir));
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('mqtt-ingest dlq: nothing replayed: the spool holds no dead letters of sink bigquery');
    const onlyPubsub = await runCli(['dlq', 'replay'], bigqueryEnv(dataDir));
    expect(onlyPubsub.code).toBe(1);
    expect(onlyPubsub.stderr).toContain('nothing replayed: the 1 dead letter held is of sinks not enabled in this configuration: pubsub: 1 (enabled by PUBSUB_TOPIC)');

    const empty = mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-dlq-empty-'));
    Spool.open({ dir: path.join(empty, 'spool'), maxBytes: 64 * 1024 * 1024, sinks: ['bigquery'] }).close();
    const none = await runCli(['dlq', 'replay'], bigqueryEnv(empty));
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('mqtt-ingest dlq: nothing replayed: the spool holds no dead letters');
  });

  it('purges by --id, all or nothing', async () => {
    const { dataDir } = spoolWithDeadLetters();
    const one = await runCli(['dlq', 'purge', '--id', '1'], bigqueryEnv(dataDir));
    expect(one.code).toBe(0);
    expect(one.stdout).toBe('purged 1 dead letter (id 1)\n');
    // After the spool's name, the summary line on stderr (no rate for so few rows).
    expect(one.stderr).toMatch(/^mqtt-ingest dlq: spool .*\ndlq purge: 1 dead letter purged in \d+\.\d s\n$/);
    expect(spoolState(dataDir).deadLetters).toEqual([
      [2, 'bigquery'],
      [3, 'pubsub'],
    ]);
    for (const [args, why] of [
      [['--id', '1', '--id', '2'], 'no dead letter has id 1; nothing purged'],
      [['--id', '2', '--id', '3', '--sink', 'pubsub'], 'dead letter 2 is of sink bigquery, not pubsub; nothing purged'],
    ] as const) {
      const r = await runCli(['dlq', 'purge', ...args], bigqueryEnv(dataDir));
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toContain(`mqtt-ingest dlq: ${why}`);
    }
    expect(spoolState(dataDir).deadLetters).toHaveLength(2);
    // A dead letter of a sink that is off here can be purged (nothing is delivered).
    const two = await runCli(['dlq', 'purge', '--id', '3', '--id', '2'], bigqueryEnv(dataDir));
    expect(two.stdout).toBe('purged 2 dead letters (id 3, 2)\n');
    expect(spoolState(dataDir).deadLetters).toEqual([]);

    const neither = await runCli(['dlq', 'purge'], bigqueryEnv(dataDir));
    expect(neither.code).toBe(1);
    expect(neither.stderr).toContain('give --older-than <duration> (e.g. 7d) or --id <id...>');
    const both = await runCli(['dlq', 'purge', '--older-than', '1d', '--id', '2'], bigqueryEnv(dataDir));
    expect(both.code).toBe(1);
    expect(both.stderr).toContain('give --older-than or --id, not both');
  });

  it('shows each reason code whole in the table', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-dlq-reasons-'));
    const spool = Spool.open({ dir: path.join(dataDir, 'spool'), maxBytes: 64 * 1024 * 1024, sinks: ['pubsub'] });
    spool.append([0, 1].map((i) => ({ topic: `t/${i}`, payload: Buffer.from('x'), qos: 1 as const, retain: false, receivedAt: Date.now() })));
    const [a, b] = spool.lease('pubsub', 10);
    spool.deadLetter('pubsub', [
      { message: a!, reason: 'attribute_too_long', detail: 'the attribute mqtt_topic is longer than 1024 bytes' },
      { message: b!, reason: 'a_reason_code_of_forty_characters_long_x', detail: 'refused' },
    ]);
    spool.close();
    const r = await runCli(['dlq', 'list'], baseEnv({ DATA_DIR: dataDir, GCP_PROJECT_ID: 'p', PUBSUB_TOPIC: 'raw' }));
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[1]).toMatch(/^\s+1 {2}pubsub {4}attribute_too_long +t\/0 /);
    expect(lines[2]).toMatch(/^\s+2 {2}pubsub {4}a_reason_code_of_forty_characters_long_x {2}t\/1 /);
    // The columns stay aligned: the topic column starts at the same place in every line.
    expect(new Set(lines.slice(0, 3).map((l) => l.search(/(topic|t\/\d)/))).size).toBe(1);
    expect(r.stdout).not.toContain('…');
  });

  it('--help says it needs the same environment or --config as `run`', async () => {
    const top = await runCli(['--help'], baseEnv({}));
    expect(top.stdout.replace(/\s+/g, ' ')).toMatch(/ dlq .*needs the same environment or --config as `run`/);
    for (const sub of [[], ['list'], ['replay'], ['purge']]) {
      const r = await runCli(['dlq', ...sub, '--help'], baseEnv({}));
      expect(r.code, sub.join(' ')).toBe(0);
      expect(r.stdout).toContain("Run them with the same environment variables or --config as the node's `run`");
      expect(r.stdout).toContain('DATA_DIR/spool/spool.db');
    }
    const purge = await runCli(['dlq', 'purge', '--help'], baseEnv({}));
    expect(purge.stdout).toMatch(/--id <id\.\.\.>/);
  });

  it('reads durations', () => {
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('7d')).toBe(7 * 86_400_000);
    expect(parseDuration('1d12h')).toBe(36 * 3_600_000);
    expect(parseDuration('0s')).toBe(0);
    expect(parseDuration('2W')).toBe(14 * 86_400_000);
    for (const bad of ['', '7', 'd', '1.5h', '1 h', 'soon']) expect(parseDuration(bad)).toBeUndefined();
  });
});
