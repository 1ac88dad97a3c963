import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { baseEnv, runCli } from './helpers/node-process.js';
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
    expect(noSpool.stderr).toContain('no spool at');
    const badConfig = await runCli(['dlq', 'list'], baseEnv({ DATA_DIR: dataDir, BIGQUERY_DATASET: 'x' }));
    expect(badConfig.code).toBe(1);
    expect(badConfig.stderr).toContain('BIGQUERY_TABLE: is unset but BIGQUERY_DATASET is set');
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
