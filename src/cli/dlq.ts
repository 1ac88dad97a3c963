/**
 * `mqtt-ingest dlq list|replay|purge`: the dead letters held in the spool (DATA_DIR/spool/spool.db), while the
 * node runs or not. The spool is SQLite in WAL mode, so these commands read alongside the node and wait for
 * its write lock (busy_timeout) instead of failing. They open the database file directly: a full `Spool`
 * would treat every sink it is not given as disabled and dead-letter their pending rows.
 * A replayed dead letter becomes a new spool row pending for its sink; the running node's dispatcher finds it
 * within its idle poll (1 s).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { bigquerySinkEnabled, fileSinkEnabled, loadConfig, pubsubTopicPath, type Config } from '../config/load.js';
import { ConfigError } from '../core/errors.js';
import { systemClock } from '../core/clock.js';
import { encodePayload, rfc3339, SINK_NAMES, type SinkName } from '../core/message.js';
import { DeadLetterStore, type DeadLetter } from '../spool/dead-letters.js';
import { SINK_BITS } from '../spool/schema.js';

/** Where output goes; tests pass their own. */
export interface DlqIo {
  stdout: Pick<NodeJS.WritableStream, 'write'>;
  stderr: Pick<NodeJS.WritableStream, 'write'>;
}

/** A failure the command reports in words and exits 1 for. */
class DlqError extends Error {}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `90s`, `30m`, `12h`, `7d`, `2w` (or a sum such as `1d12h`) in milliseconds; undefined when unreadable. */
export function parseDuration(text: string): number | undefined {
  const parts = text.trim().toLowerCase().match(/\d+(?:ms|s|m|h|d|w)/g);
  if (!parts || parts.join('') !== text.trim().toLowerCase()) return undefined;
  return parts.reduce((sum, p) => {
    const [, n, unit] = /^(\d+)(ms|s|m|h|d|w)$/.exec(p)!;
    return sum + Number(n) * DURATION_UNITS[unit!]!;
  }, 0);
}

/** The sinks this configuration enables, as `run` would build them. */
export function enabledSinks(c: Config): SinkName[] {
  const sinks: SinkName[] = [];
  if (pubsubTopicPath(c)) sinks.push('pubsub');
  if (bigquerySinkEnabled(c)) sinks.push('bigquery');
  if (fileSinkEnabled(c)) sinks.push('file');
  return sinks;
}

function openStore(config: Config): { db: Database.Database; store: DeadLetterStore; file: string } {
  const file = path.resolve(config.DATA_DIR, 'spool', 'spool.db');
  if (!existsSync(file)) throw new DlqError(`no spool at ${file} (DATA_DIR=${config.DATA_DIR}); is DATA_DIR the node's?`);
  const db = new Database(file, { fileMustExist: true });
  // The node holds the write lock for each commit; wait for it rather than fail (the node sets the same).
  db.pragma('busy_timeout = 5000');
  return { db, store: new DeadLetterStore(db, systemClock), file };
}

interface Common {
  config?: string;
  sink?: SinkName;
}

/** Loads the configuration (for DATA_DIR and the enabled sinks), runs `body`, and returns the exit code. */
function command(opts: Common, io: DlqIo, body: (config: Config, store: DeadLetterStore) => void): number {
  let config: Config;
  try {
    config = loadConfig({ env: process.env, file: opts.config }).config;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr.write(`invalid configuration:\n${err.problems.map((p) => `  - ${p}\n`).join('')}`);
    return 1;
  }
  let opened: ReturnType<typeof openStore> | undefined;
  try {
    opened = openStore(config);
    body(config, opened.store);
    return 0;
  } catch (err) {
    if (!(err instanceof DlqError)) throw err;
    io.stderr.write(`mqtt-ingest dlq: ${err.message}\n`);
    return 1;
  } finally {
    opened?.db.close();
  }
}

/** The payload as a short, single-line preview: text as it is, binary as base64. */
function preview(d: DeadLetter, width: number): string {
  const { payload, payload_encoding } = encodePayload(d.payload);
  const text = (payload_encoding === 'base64' ? `base64:${payload}` : payload).replace(/\s+/g, ' ');
  return fit(text, width);
}

function fit(text: string, width: number): string {
  return text.length <= width ? text.padEnd(width) : `${text.slice(0, width - 1)}…`;
}

export function listDeadLetters(opts: Common & { json?: boolean; limit?: number }, io: DlqIo): number {
  return command(opts, io, (_config, store) => {
    let shown = 0;
    const perSink = new Map<string, number>();
    if (!opts.json) {
      io.stdout.write(`${'id'.padStart(8)}  ${fit('sink', 8)}  ${fit('reason', 16)}  ${fit('topic', 32)}  ${fit('dead at (UTC)', 24)}  ${fit('payload', 32)}  detail\n`);
    }
    for (const d of store.iterate({ sink: opts.sink })) {
      if (opts.limit !== undefined && shown >= opts.limit) break;
      shown += 1;
      perSink.set(d.sink, (perSink.get(d.sink) ?? 0) + 1);
      if (opts.json) {
        const { payload, payload_encoding } = encodePayload(d.payload);
        const record = {
          id: d.id,
          sink: d.sink,
          reason: d.reason,
          detail: d.detail,
          message_id: d.messageId,
          topic: d.topic,
          qos: d.qos,
          retain: d.retain,
          received_at: rfc3339(d.receivedAt),
          dead_at: rfc3339(d.deadAt),
          payload,
          payload_encoding,
        };
        io.stdout.write(`${JSON.stringify(record)}\n`);
      } else {
        io.stdout.write(
          `${String(d.id).padStart(8)}  ${fit(d.sink, 8)}  ${fit(d.reason, 16)}  ${fit(d.topic, 32)}  ${fit(rfc3339(d.deadAt), 24)}  ${preview(d, 32)}  ${d.detail.replace(/\s+/g, ' ').slice(0, 200)}\n`,
        );
      }
    }
    if (!opts.json) {
      const bySink = [...perSink].map(([s, n]) => `${s}: ${n}`).join(', ');
      io.stdout.write(`${shown} dead letter${shown === 1 ? '' : 's'}${bySink ? ` (${bySink})` : ''}${opts.limit !== undefined && shown >= opts.limit ? `, first ${opts.limit} shown` : ''}\n`);
    }
  });
}

export function replayDeadLetters(opts: Common & { id?: number[] }, io: DlqIo): number {
  return command(opts, io, (config, store) => {
    const enabled = enabledSinks(config);
    if (opts.sink && !enabled.includes(opts.sink)) {
      throw new DlqError(`the ${opts.sink} sink is not enabled in this configuration, so its dead letters could not be delivered; enable it first`);
    }
    const targets = opts.sink ? [opts.sink] : enabled;
    const replayed: string[] = [];
    let total = 0;
    for (const sink of targets) {
      // DeadLetterStore.replay makes each a new spool row with its original message_id, pending for that sink only.
      const n = store.replay({ sink, ids: opts.id }, (s) => SINK_BITS[s]);
      total += n;
      if (n > 0) replayed.push(`${sink}: ${n}`);
    }
    io.stdout.write(`replayed ${total} dead letter${total === 1 ? '' : 's'}${replayed.length ? ` (${replayed.join(', ')})` : ''}; a running node sends them within a second\n`);
    const skipped = SINK_NAMES.filter((s) => !targets.includes(s))
      .map((s) => [s, store.list({ sink: s, ids: opts.id }).length] as const)
      .filter(([, n]) => n > 0);
    if (!opts.sink && skipped.length > 0) {
      io.stdout.write(`left ${skipped.map(([s, n]) => `${n} of sink ${s}`).join(', ')}: not enabled in this configuration\n`);
    }
  });
}

export function purgeDeadLetters(opts: Common & { olderThan: string }, io: DlqIo): number {
  const ms = parseDuration(opts.olderThan);
  if (ms === undefined) {
    io.stderr.write(`mqtt-ingest dlq purge: --older-than must be a duration such as 90s, 30m, 12h, 7d or 2w, got ${JSON.stringify(opts.olderThan)}\n`);
    return 1;
  }
  return command(opts, io, (_config, store) => {
    const purged = store.purgeOlderThan(systemClock.now() - ms, opts.sink);
    io.stdout.write(`purged ${purged} dead letter${purged === 1 ? '' : 's'} older than ${opts.olderThan}${opts.sink ? ` (sink ${opts.sink})` : ''}\n`);
  });
}

function positiveInt(value: string, previous: number[] = []): number[] {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new InvalidArgumentError(`a dead letter's id is a positive whole number, got ${JSON.stringify(value)}`);
  return [...previous, Number(value)];
}

export function registerDlq(program: Command): void {
  const dlq = program.command('dlq').description('inspect, replay and purge dead letters held in the spool (works while the node runs)');
  const sinkOption = () => new Option('--sink <sink>', 'only dead letters of this sink').choices([...SINK_NAMES]);
  const configOption = () => new Option('-c, --config <file>', 'YAML configuration file (environment variables override it)');
  const exit = (code: number): void => {
    process.exitCode = code;
  };

  dlq
    .command('list')
    .description('list dead letters: id, sink, reason, topic, time and a payload preview')
    .addOption(sinkOption())
    .option('--json', 'one JSON object per line, with the full payload as text or base64')
    .option('--limit <n>', 'show at most n', (v) => {
      if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`must be a whole number, got ${JSON.stringify(v)}`);
      return Number(v);
    })
    .addOption(configOption())
    .action((opts: Common & { json?: boolean; limit?: number }) => exit(listDeadLetters(opts, process)));

  dlq
    .command('replay')
    .description("put dead letters back for delivery to the sink that rejected them (after fixing the cause, e.g. the table's schema)")
    .addOption(sinkOption())
    .option('--id <id...>', 'only these dead letters (ids from `dlq list`)', (v, prev: number[] | undefined) => positiveInt(v, prev))
    .addOption(configOption())
    .action((opts: Common & { id?: number[] }) => exit(replayDeadLetters(opts, process)));

  dlq
    .command('purge')
    .description('delete dead letters older than a duration')
    .requiredOption('--older-than <duration>', 'e.g. 7d, 12h, 30m, 90s, 2w')
    .addOption(sinkOption())
    .addOption(configOption())
    .action((opts: Common & { olderThan: string }) => exit(purgeDeadLetters(opts, process)));
}
