/**
 * `mqtt-ingest dlq list|replay|purge`: the dead letters held in the spool (DATA_DIR/spool/spool.db), while the
 * node runs or not. The spool is SQLite in WAL mode, so these commands read alongside the node and wait for
 * its write lock (busy_timeout) instead of failing. They open the database file directly: a full `Spool`
 * would treat every sink it is not given as disabled and dead-letter their pending rows.
 * A replayed dead letter becomes a new spool row pending for its sink; the running node's dispatcher finds it
 * within its idle poll (1 s).
 *
 * Pointed at the wrong DATA_DIR, a DLQ command would otherwise answer "0 dead letters" from some other spool, or
 * from none: so each command names the spool file it read (on stderr, so that `list --json` stays one JSON object
 * per line), refuses a spool file that does not exist without creating one, and exits 1 when an `--id` matches
 * nothing or a replay puts nothing back.
 *
 * `replay` and `purge` work in batches (src/cli/dlq-batches.ts): on a terminal a live line on stderr counts the
 * rows, and a summary line on stderr ends each (`dlq replay: 25,000 dead letters replayed in 1.2 s`). A write lock
 * that stays taken longer than the 5 s wait fails the command (exit 1) with nothing changed.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { loadConfig, type Config, type ConfigSource } from '../config/load.js';
import { enabledSinks } from '../sinks/registry.js';
import { ConfigError, IngestError, SpoolDamagedError } from '../core/errors.js';
import { systemClock } from '../core/clock.js';
import { encodePayload, rfc3339, SINK_NAMES, type SinkName } from '../core/message.js';
import { DeadLetterStore, type DeadLetter } from '../spool/dead-letters.js';
import { checkSpoolFiles } from '../spool/commit-record.js';
import { idsOlderThan, parseDuration, purgeInBatches, replayInBatches, replayTotal, rowsSummary } from './dlq-batches.js';
import { Progress, RowCount, type ProgressStream } from './progress.js';

/** Where output goes; tests pass their own. */
export interface DlqIo {
  stdout: Pick<NodeJS.WritableStream, 'write'>;
  /** Also the live progress line's, when it is a terminal. */
  stderr: ProgressStream;
}

/** A failure the command reports in words and exits 1 for; its code is one of the catalogue's DLQ_ codes. */
class DlqError extends IngestError {}

export { parseDuration };

/** The configuration keys that turn each sink on, for a message about a sink that is off. */
const ENABLED_BY: Record<SinkName, string> = {
  pubsub: 'PUBSUB_TOPIC',
  bigquery: 'BIGQUERY_DATASET and BIGQUERY_TABLE',
  file: 'FILE_SINK=on, or FILE_SINK=auto with no cloud sink',
};

/** Where DATA_DIR came from, in words: the first thing to check when the spool is not the expected one. */
function dataDirOrigin(config: Config, source: ConfigSource, configFile: string | undefined): string {
  if (source === 'env') return `DATA_DIR=${config.DATA_DIR} from the environment`;
  if (source === 'file') return `DATA_DIR=${config.DATA_DIR} from ${configFile}`;
  return `DATA_DIR unset: the default ${config.DATA_DIR}, in the working directory ${process.cwd()}`;
}

interface Opened {
  config: Config;
  db: Database.Database;
  store: DeadLetterStore;
  /** The spool file, absolute. */
  file: string;
}

/** How long a write waits for the spool's lock before the command fails with nothing changed. */
const BUSY_TIMEOUT_MS = 5000;

/** Opens the spool file the node of this configuration writes; never creates one. */
function openStore(config: Config, origin: string): Omit<Opened, 'config'> {
  const file = path.resolve(config.DATA_DIR, 'spool', 'spool.db');
  if (!existsSync(file)) {
    throw new DlqError(
      'DLQ_SPOOL_MISSING',
      `there is no spool file at ${file} (${origin}); nothing was read or created. ` +
        "Run dlq with the environment or --config of the node's `run`, so that DATA_DIR is the node's",
    );
  }
  checkBeforeOpening(file);
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { fileMustExist: true });
    // The node holds the write lock for each commit; wait for it rather than fail (the node sets the same).
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    if (!db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dead_letters'").get()) {
      throw new DlqError('DLQ_NOT_A_SPOOL', `${file} is not an mqtt-ingest spool: it has no dead_letters table`);
    }
    return { db, store: new DeadLetterStore(db, systemClock), file };
  } catch (err) {
    db?.close();
    if (err instanceof Database.SqliteError) throw new DlqError('DLQ_NOT_A_SPOOL', `cannot read ${file} as a spool: ${err.message} (${err.code})`);
    throw err;
  }
}

/**
 * The node's own check of the spool files against its commit record (spool/commit-record.ts), before SQLite
 * opens them for writing: on a damaged spool SQLite would checkpoint or delete what is left of the WAL, so dlq
 * leaves such a spool alone. The node rewrites the record after its commits while dlq runs beside it, so a
 * record caught mid-write is read again before it counts as damage.
 */
function checkBeforeOpening(file: string): void {
  for (let attempt = 1; ; attempt++) {
    try {
      checkSpoolFiles(file, false);
      return;
    } catch (err) {
      if (!(err instanceof SpoolDamagedError)) throw err;
      if (attempt < 3) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
        continue;
      }
      throw new DlqError('SPOOL_DAMAGED', `${err.message}. dlq does not open a damaged spool, so that nothing more of it is lost`);
    }
  }
}

interface Common {
  config?: string;
  sink?: SinkName;
}

/**
 * Loads the configuration (for DATA_DIR and the enabled sinks), names the spool file on stderr, runs `body`,
 * and returns the exit code.
 */
function command(opts: Common, io: DlqIo, body: (opened: Opened) => void, onFailure?: () => void): number {
  let loaded;
  try {
    loaded = loadConfig({ env: process.env, file: opts.config });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr.write(`invalid configuration:\n${err.problems.map((p) => `  - ${p}\n`).join('')}`);
    return 1;
  }
  const { config, sources } = loaded;
  const origin = dataDirOrigin(config, sources.DATA_DIR, opts.config ?? (process.env.CONFIG_FILE || undefined));
  let opened: Omit<Opened, 'config'> | undefined;
  try {
    opened = openStore(config, origin);
    io.stderr.write(`mqtt-ingest dlq: spool ${opened.file} (${origin})\n`);
    body({ config, ...opened });
    return 0;
  } catch (err) {
    if (opened && err instanceof Database.SqliteError && err.code === 'SQLITE_BUSY') err = lockedOut(opened.file);
    if (!(err instanceof DlqError)) throw err;
    onFailure?.();
    io.stderr.write(`mqtt-ingest dlq: ${err.message}\n`);
    return 1;
  } finally {
    opened?.db.close();
  }
}

/** The write lock stayed with another connection for the whole wait: a transaction held open, not a commit. */
function lockedOut(file: string): DlqError {
  return new DlqError(
    'DLQ_SPOOL_BUSY',
    `the spool ${file} stayed locked by another writer for ${BUSY_TIMEOUT_MS / 1000} s; nothing was changed. ` +
      'The node holds the lock only for a commit: look for another dlq command or a process stuck in a transaction, then run it again',
  );
}

/**
 * Checks that every id names a dead letter `accept` takes; throws one error naming each that does not, before
 * anything is changed (`outcome` says so: "nothing replayed").
 */
function checkIds(store: DeadLetterStore, ids: number[], outcome: string, accept: (d: DeadLetter) => string | undefined): void {
  const found = new Map(store.list({ ids }).map((d) => [d.id, d]));
  const missing = ids.filter((id) => !found.has(id));
  const problems: string[] = [];
  if (missing.length === 1) problems.push(`no dead letter has id ${missing[0]}`);
  else if (missing.length > 1) problems.push(`no dead letters have ids ${missing.join(', ')}`);
  for (const d of found.values()) {
    const problem = accept(d);
    if (problem) problems.push(`dead letter ${d.id} ${problem}`);
  }
  if (problems.length > 0) throw new DlqError('DLQ_NO_MATCH', `${problems.join('; ')}; ${outcome} (ids from \`dlq list\`)`);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
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
  return command(opts, io, ({ store }) => {
    let shown = 0;
    const perSink = new Map<string, number>();
    // Reason codes are whole words an operator looks up (invalid_argument, attribute_too_long): never cut.
    const reasonWidth = Math.max(16, store.longestReason({ sink: opts.sink }));
    if (!opts.json) {
      io.stdout.write(`${'id'.padStart(8)}  ${fit('sink', 8)}  ${fit('reason', reasonWidth)}  ${fit('topic', 32)}  ${fit('dead at (UTC)', 24)}  ${fit('payload', 32)}  detail\n`);
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
          `${String(d.id).padStart(8)}  ${fit(d.sink, 8)}  ${fit(d.reason, reasonWidth)}  ${fit(d.topic, 32)}  ${fit(rfc3339(d.deadAt), 24)}  ${preview(d, 32)}  ${d.detail.replace(/\s+/g, ' ').slice(0, 200)}\n`,
        );
      }
    }
    if (!opts.json) {
      const bySink = [...perSink].map(([s, n]) => `${s}: ${n}`).join(', ');
      io.stdout.write(`${plural(shown, 'dead letter')}${bySink ? ` (${bySink})` : ''}${opts.limit !== undefined && shown >= opts.limit ? `, first ${opts.limit} shown` : ''}\n`);
    }
  });
}

export function replayDeadLetters(opts: Common & { id?: number[] }, io: DlqIo): number {
  const progress = new Progress('dlq replay', io.stderr);
  return command(opts, io, ({ config, db, store }) => {
    const enabled = enabledSinks(config);
    if (opts.sink && !enabled.includes(opts.sink)) {
      throw new DlqError(
        'DLQ_SINK_DISABLED',
        `the ${opts.sink} sink is not enabled in this configuration, so its dead letters could not be delivered; enable it first (it is enabled by ${ENABLED_BY[opts.sink]})`,
      );
    }
    const targets = opts.sink ? [opts.sink] : enabled;
    const ids = opts.id ? [...new Set(opts.id)] : undefined;
    // One write transaction: the ids are checked and replayed against the same state, or nothing changes.
    // IMMEDIATE takes the write lock first (waiting for the node's commits), so the read cannot go stale.
    let rows: RowCount | undefined;
    const { total, replayed, skipped } = db
      .transaction(() => {
        if (ids) {
          checkIds(store, ids, 'nothing replayed', (d) => {
            if (opts.sink && d.sink !== opts.sink) return `is of sink ${d.sink}, not ${opts.sink}`;
            if (!enabled.includes(d.sink)) return `is of sink ${d.sink}, which is not enabled in this configuration (enabled by ${ENABLED_BY[d.sink]})`;
            return undefined;
          });
        }
        rows = new RowCount(progress, replayTotal(store, targets, ids));
        const perSink = replayInBatches(db, store, targets, ids, rows);
        const replayed = [...perSink].filter(([, n]) => n > 0).map(([sink, n]) => `${sink}: ${n}`);
        const total = rows.done;
        const skipped = SINK_NAMES.filter((s) => !targets.includes(s))
          .map((s) => [s, store.count({ sink: s, ids })] as const)
          .filter(([, n]) => n > 0);
        if (total === 0) throw new DlqError('DLQ_NOTHING_REPLAYED', `nothing replayed: ${nothingToReplay(opts.sink, skipped)}`);
        return { total, replayed, skipped };
      })
      .immediate();
    progress.stop();
    io.stdout.write(`replayed ${plural(total, 'dead letter')} (${replayed.join(', ')}); a running node sends them within a second\n`);
    if (!opts.sink && skipped.length > 0) {
      io.stdout.write(`left ${skipped.map(([s, n]) => `${n} of sink ${s}`).join(', ')}: not enabled in this configuration\n`);
    }
    progress.done(rowsSummary(rows!, progress, 'replayed'));
  }, () => progress.stop());
}

/** Why a replay without --id found nothing to put back: an empty store, or only sinks that are off here. */
function nothingToReplay(sink: SinkName | undefined, skipped: (readonly [SinkName, number])[]): string {
  if (sink) return `the spool holds no dead letters of sink ${sink}`;
  if (skipped.length === 0) return 'the spool holds no dead letters';
  const held = skipped.reduce((sum, [, n]) => sum + n, 0);
  return `the ${plural(held, 'dead letter')} held ${held === 1 ? 'is' : 'are'} of sinks not enabled in this configuration: ${skipped
    .map(([s, n]) => `${s}: ${n} (enabled by ${ENABLED_BY[s]})`)
    .join(', ')}`;
}

export function purgeDeadLetters(opts: Common & { olderThan?: string; id?: number[] }, io: DlqIo): number {
  const usage = (why: string): number => {
    io.stderr.write(`mqtt-ingest dlq purge: ${why}\n`);
    return 1;
  };
  if (opts.olderThan === undefined && !opts.id) return usage('give --older-than <duration> (e.g. 7d) or --id <id...> (ids from `dlq list`)');
  if (opts.olderThan !== undefined && opts.id) return usage('give --older-than or --id, not both');
  const progress = new Progress('dlq purge', io.stderr);
  if (opts.id) {
    const ids = [...new Set(opts.id)];
    return command(opts, io, ({ db, store }) => {
      const rows = new RowCount(progress, ids.length);
      const purged = db
        .transaction(() => {
          checkIds(store, ids, 'nothing purged', (d) => (opts.sink && d.sink !== opts.sink ? `is of sink ${d.sink}, not ${opts.sink}` : undefined));
          return purgeInBatches(store, ids, opts.sink, rows);
        })
        .immediate();
      progress.stop();
      io.stdout.write(`purged ${plural(purged, 'dead letter')} (id ${ids.join(', ')})\n`);
      progress.done(rowsSummary(rows, progress, 'purged'));
    }, () => progress.stop());
  }
  const olderThan = opts.olderThan!;
  const ms = parseDuration(olderThan);
  if (ms === undefined) return usage(`--older-than must be a duration such as 90s, 30m, 12h, 7d or 2w, got ${JSON.stringify(olderThan)}`);
  return command(opts, io, ({ db, store }) => {
    let rows: RowCount | undefined;
    // The ids and their deletion in one write transaction: a dead letter added meanwhile is not half purged.
    const purged = db
      .transaction(() => {
        const ids = idsOlderThan(db, systemClock.now() - ms, opts.sink);
        rows = new RowCount(progress, ids.length);
        return purgeInBatches(store, ids, opts.sink, rows);
      })
      .immediate();
    progress.stop();
    io.stdout.write(`purged ${plural(purged, 'dead letter')} older than ${olderThan}${opts.sink ? ` (sink ${opts.sink})` : ''}\n`);
    progress.done(rowsSummary(rows!, progress, 'purged'));
  }, () => progress.stop());
}

function positiveInt(value: string, previous: number[] = []): number[] {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new InvalidArgumentError(`a dead letter's id is a positive whole number, got ${JSON.stringify(value)}`);
  return [...previous, Number(value)];
}

/** Shown under every dlq command's --help: the usual way to read the wrong spool is a different environment. */
const SAME_CONFIGURATION = `
These commands work on the spool file DATA_DIR/spool/spool.db of the node, and the sinks its configuration
enables. Run them with the same environment variables or --config as the node's \`run\` (DATA_DIR, and
PUBSUB_TOPIC, BIGQUERY_DATASET/BIGQUERY_TABLE, FILE_SINK for the sinks). Each names the spool file it read
on stderr; a spool file that does not exist is an error (exit 1), never created.
`;

export function registerDlq(program: Command): void {
  const dlq = program
    .command('dlq')
    .description('inspect, replay and purge dead letters held in the spool (works while the node runs; needs the same environment or --config as `run`)')
    .addHelpText('after', SAME_CONFIGURATION);
  const sinkOption = () => new Option('--sink <sink>', 'only dead letters of this sink').choices([...SINK_NAMES]);
  const configOption = () => new Option('-c, --config <file>', "YAML configuration file, the node's (environment variables override it)");
  const idOption = (what: string) =>
    new Option('--id <id...>', `only these dead letters (ids from \`dlq list\`); an id that matches none ${what}`).argParser((v: string, prev: number[] | undefined) =>
      positiveInt(v, prev),
    );
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
    .addHelpText('after', SAME_CONFIGURATION)
    .action((opts: Common & { json?: boolean; limit?: number }) => exit(listDeadLetters(opts, process)));

  dlq
    .command('replay')
    .description(
      "put dead letters back for delivery to the sink that rejected them (after fixing the cause, e.g. the table's schema); exit 1 when nothing could be replayed",
    )
    .addOption(sinkOption())
    .addOption(idOption('replays nothing (exit 1)'))
    .addOption(configOption())
    .addHelpText('after', SAME_CONFIGURATION)
    .action((opts: Common & { id?: number[] }) => exit(replayDeadLetters(opts, process)));

  dlq
    .command('purge')
    .description('delete dead letters older than a duration, or by id')
    .option('--older-than <duration>', 'e.g. 7d, 12h, 30m, 90s, 2w (units ms, s, m, h, d, w; 1d12h works)')
    .addOption(idOption('purges nothing (exit 1)'))
    .addOption(sinkOption())
    .addOption(configOption())
    .addHelpText('after', SAME_CONFIGURATION)
    .action((opts: Common & { olderThan?: string; id?: number[] }) => exit(purgeDeadLetters(opts, process)));
}
