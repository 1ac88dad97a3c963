/**
 * BigQuery sink (contract §3, "BigQuery row"): each message becomes one raw row (schema.ts), or the typed row
 * its route gives it (RouteTargets.bigquery, for a route's table in the same dataset), streamed with
 * `tabledata.insertAll`, `insertId` = `message_id`, so every retry of ours is de-duplicated by BigQuery.
 * One outcome per message: a 200 with `insertErrors` is not success (classify.ts `rowOutcomes`). Each table
 * has its writer (table-writer.ts: its check, its requests); the sink groups a batch's rows per table.
 *
 * Who retries: our dispatcher, with the node's backoff, while the spool holds the rows. The client's own
 * retries are off (`autoRetry: false`; `maxRetries: 0` is ignored by @google-cloud/common, which treats 0 as
 * "unset" and retries 3 times over ~16 s) and so are its partial retries (`partialRetries: 0`), so every
 * failed attempt is counted and shown at once.
 */
import { BigQuery, type BigQueryOptions, type Table } from '@google-cloud/bigquery';
import { delivered, rejected, type DeliveryOutcome } from '../../core/outcome.js';
import { IngestError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { ConditionReport, DeliveryMessage, Sink, SinkCondition, SinkDescription } from '../sink.js';
import type { RequestErrorClass } from './classify.js';
import { toRawRow } from './schema.js';
import { rawTableShape, tableName, type RouteTable } from './table-check.js';
import { TableWriter, type WriterHost } from './table-writer.js';
import type { RowJson } from './request-plan.js';

export interface BigQuerySinkOptions {
  projectId: string;
  dataset: string;
  table: string;
  location: string;
  autoCreate: boolean;
  /** A host URL (BIGQUERY_API_ENDPOINT); `/bigquery/v2` is appended, as the client does with `apiEndpoint`. */
  apiEndpoint?: string;
  /** A full base URL (BIGQUERY_EMULATOR_HOST), used as it is, as the client reads that variable. */
  emulatorHost?: string;
  /**
   * The routes' typed tables in `dataset` (RouteTargets.bigquery names one per message), each checked at start
   * as the raw table is: created when missing with auto-create on, NULLABLE columns added, any other difference
   * listed and the start stopped.
   */
  routeTables?: RouteTable[];
  /** False: no message goes to the raw table (routes with `unmatched` other than raw), so it is not checked. Default true. */
  rawTable?: boolean;
  maxBatchRows: number;
  /** Largest insertAll request body; a batch whose rows encode to more is sent as several requests. */
  maxRequestBytes: number;
  maxInFlight: number;
  logger: Logger;
  /** Upper bound for one REST call. Default 30 s. */
  requestTimeoutMs?: number;
  /** Upper bound for each call of the table check at start. Default 10 s. */
  startTimeoutMs?: number;
  /** How often the table is checked again while it is not known to be usable and nothing is written. Default 15 s. */
  recheckIntervalMs?: number;
  /** Tests only: the credentials the client uses (e.g. one that never authorises). */
  authClient?: BigQueryOptions['authClient'];
}

export const DEFAULT_API_ENDPOINT = 'https://bigquery.googleapis.com';

/**
 * Credentials that add no Authorization header. Used for plain-http endpoints (local test servers and
 * emulators): an OAuth token must never travel in clear text, and where Application Default Credentials
 * exist the client would otherwise fetch one before every call. google-auth-library calls only
 * `getRequestHeaders` on an `authClient` it is given.
 */
const NO_CREDENTIALS = { getRequestHeaders: async () => new Headers() } as unknown as BigQueryOptions['authClient'];

/** Resolves where requests go: the emulator base URL as given, else the host URL + /bigquery/v2. */
export function baseUrlOf(opts: Pick<BigQuerySinkOptions, 'apiEndpoint' | 'emulatorHost'>): string {
  if (opts.emulatorHost) return opts.emulatorHost.replace(/\/+$/, '');
  return `${(opts.apiEndpoint ?? DEFAULT_API_ENDPOINT).replace(/\/+$/, '')}/bigquery/v2`;
}

export class BigQuerySink implements Sink {
  readonly name = 'bigquery' as const;
  readonly maxBatchMessages: number;
  readonly maxBatchBytes: number;
  readonly maxInFlight: number;
  readonly describe: SinkDescription;

  private readonly opts: BigQuerySinkOptions;
  private readonly requestTimeoutMs: number;
  private readonly table: string;
  /** The raw table's writer; undefined when no message goes there (`rawTable: false`). */
  private readonly raw?: TableWriter;
  /** The route tables' writers, by table id. */
  private readonly routes = new Map<string, TableWriter>();
  private client?: BigQuery;
  private recheckTimer?: NodeJS.Timeout;
  /** What the table checks found wrong (undefined: nothing), for the runner (watchCondition). */
  private condition?: SinkCondition;
  private report?: ConditionReport;

  constructor(opts: BigQuerySinkOptions) {
    this.opts = opts;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.maxBatchMessages = opts.maxBatchRows;
    // The dispatcher measures payload bytes; rows encode larger (JSON escaping, base64, the data column),
    // and write() splits a batch into requests of at most maxRequestBytes each.
    this.maxBatchBytes = opts.maxRequestBytes;
    this.maxInFlight = opts.maxInFlight;
    this.table = tableName(opts);
    const routeTables = opts.routeTables ?? [];
    const host: WriterHost = {
      logger: opts.logger,
      requestTimeoutMs: this.requestTimeoutMs,
      maxBatchRows: opts.maxBatchRows,
      maxRequestBytes: opts.maxRequestBytes,
      namesTables: routeTables.length > 0,
      credentialsFailed: (cls) => this.onCredentialsFailure(cls),
      checked: () => this.onCheck(),
    };
    const target = (table: string) => ({ projectId: opts.projectId, dataset: opts.dataset, table, location: opts.location, autoCreate: opts.autoCreate });
    if (opts.rawTable !== false) this.raw = new TableWriter(target(opts.table), rawTableShape(), host);
    for (const t of routeTables) if (!this.routes.has(t.table)) this.routes.set(t.table, new TableWriter(target(t.table), t.shape, host));
    this.describe = {
      context: { table: this.table },
      words: {
        failing: 'BigQuery writes are failing',
        degraded: 'BigQuery is unavailable or throttling; the spool keeps the rows and the dispatcher retries',
        recovered: 'BigQuery writes recovered',
        action: routeTables.length > 0 ? `writing to the tables of ${opts.projectId}:${opts.dataset}` : `writing to ${this.table}`,
      },
    };
  }

  /** The raw table's client object (tests replace its insert). */
  get tableRef(): Table | undefined {
    return this.raw?.ref;
  }

  private get writers(): TableWriter[] {
    return [...(this.raw ? [this.raw] : []), ...this.routes.values()];
  }

  /** The table checks' findings: at start (before the runner exists), before a write, and on the recheck. */
  watchCondition(report: ConditionReport): void {
    this.report = report;
    report(this.condition);
  }

  /**
   * Creates the client and checks every table (creating them and their dataset when auto-create is on). A
   * table that definitely cannot take its rows stops the start, with every difference of every such table
   * listed; an unreachable BigQuery or a refused permission does not (the node keeps spooling): it is reported
   * as the sink's condition (logged and shown in the status by its runner), naming the table, and that table
   * is checked again before its next write and by the recheck timer.
   */
  async start(): Promise<void> {
    if (this.client) return;
    this.newClient();
    const writers = this.writers;
    const checks = await Promise.all(writers.map((w) => w.check(this.opts.startTimeoutMs ?? 10_000, true)));
    const bad = writers.flatMap((w, i) => {
      const check = checks[i]!;
      return check.state === 'mismatch' ? [{ writer: w, problems: check.problems }] : [];
    });
    if (bad.length > 0) {
      const text = bad.map(({ writer, problems }) => `BigQuery table ${writer.name} cannot take ${writer.shape.rows}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
      const context =
        bad.length === 1
          ? { sink: this.name, table: bad[0]!.writer.name, problems: bad[0]!.problems }
          : { sink: this.name, table: bad.map((b) => b.writer.name).join(', '), problems: bad.flatMap((b) => b.problems.map((p) => `${b.writer.name}: ${p}`)) };
      throw new IngestError('SINK_START_FAILED', text.join('\n'), { context });
    }
  }

  /**
   * A new client, with its own credentials: at start, and after its credentials could not be loaded or were
   * refused. Library facts (@google-cloud/common 6, util.js makeAuthenticatedRequestFactory): each client has
   * one GoogleAuth, which keeps the first credential it loads (googleauth.js `cachedCredential`, so a key file
   * replaced after a refusal is never read again) and its first answer to "is this Google Compute Engine?"
   * (`_checkIsGCE`). A failed load is not kept, but a fresh client is the only way to start over entirely.
   * Without any credentials the client still sends the request, unauthenticated ("the API might not care"),
   * and puts google-auth-library's "Could not load the default credentials" in place of BigQuery's 401.
   */
  private newClient(): void {
    const baseUrl = baseUrlOf(this.opts);
    const options: BigQueryOptions = {
      projectId: this.opts.projectId,
      location: this.opts.location,
      apiEndpoint: this.opts.emulatorHost ? undefined : (this.opts.apiEndpoint ?? DEFAULT_API_ENDPOINT),
      retryOptions: { autoRetry: false },
    };
    if (this.opts.authClient) options.authClient = this.opts.authClient;
    else if (baseUrl.startsWith('http://')) options.authClient = NO_CREDENTIALS;
    const client = new BigQuery(options);
    // The client takes BIGQUERY_EMULATOR_HOST from process.env itself, over the apiEndpoint option, and an
    // empty one breaks even the default endpoint ("https:///bigquery/v2"). The configuration is the single
    // source (it may come from a YAML file), so the base URL is set from it explicitly.
    client.baseUrl = baseUrl;
    this.client = client;
    for (const w of this.writers) w.bind(client);
  }

  /** After a credentials failure the next request loads the credentials anew (see newClient). */
  private onCredentialsFailure(cls: RequestErrorClass): void {
    if (cls.kind !== 'failing' || !cls.credentials || !this.client || this.opts.authClient) return;
    this.newClient();
  }

  /**
   * Raw rows go to the raw table, routed rows to their route's table; each table's rows are checked, planned
   * and sent by its writer, the tables one after the other, and the outcomes come back in the batch's order.
   */
  async write(batch: DeliveryMessage[]): Promise<DeliveryOutcome[]> {
    if (!this.client) throw new Error('the BigQuery sink is not started (or already closed)');
    const outcomes: DeliveryOutcome[] = new Array(batch.length);
    // Each row remembers its message; a message of several rows (Sparkplug: one per metric) is answered once all are.
    const groups = new Map<TableWriter, { messages: number[]; rows: { insertId: string; json: RowJson }[] }>();
    const rowOutcomes: DeliveryOutcome[][] = batch.map(() => []);
    batch.forEach((m, i) => {
      const routed = m.routed?.bigquery;
      const writer = routed ? this.routes.get(routed.table) : this.raw;
      if (!writer) {
        outcomes[i] = rejected('invalid', this.unknownTable(m));
        return;
      }
      let group = groups.get(writer);
      if (!group) groups.set(writer, (group = { messages: [], rows: [] }));
      if (!routed) {
        group.messages.push(i);
        group.rows.push({ insertId: m.messageId, json: toRawRow(m) });
        return;
      }
      if (routed.rows.length === 0) outcomes[i] = delivered; // nothing to store (a Sparkplug message without metrics gets a row anyway)
      for (const r of routed.rows) {
        group.messages.push(i);
        group.rows.push({ insertId: r.insertId, json: r.row });
      }
    });
    for (const [writer, group] of groups) {
      const answered = await writer.write(group.rows);
      answered.forEach((o, k) => rowOutcomes[group.messages[k]!]!.push(o));
    }
    rowOutcomes.forEach((rows, i) => {
      if (outcomes[i] === undefined) outcomes[i] = messageOutcome(rows);
    });
    return outcomes;
  }

  /** A message for a table the sink was not given: the routes and the sink's options disagree (a defect). */
  private unknownTable(m: DeliveryMessage): string {
    const routed = m.routed?.bigquery;
    if (!routed) {
      return `message ${m.messageId} has no route table, and the raw table ${this.table} takes no messages with these routes (unmatched is not raw): the routes and the BigQuery sink's tables disagree`;
    }
    const known = [...this.routes.keys()];
    return (
      `route ${m.routed!.route} sent message ${m.messageId} to table ${routed.table}, which is not one of the BigQuery sink's route tables ` +
      `(${known.length ? known.join(', ') : 'none'}): the routes and the BigQuery sink's tables disagree`
    );
  }

  /** After any table check: the sink's condition is every table's, and the recheck runs while a table needs it. */
  private onCheck(): void {
    const problems = this.writers.flatMap((w) => (w.condition ? [w.condition] : []));
    const worst = problems.find((c) => c.health === 'failing') ?? problems[0];
    this.condition = worst && { health: worst.health, reason: worst.reason, detail: problems.map((c) => c.detail).join('; ') };
    this.report?.(this.condition);
    if (this.writers.some((w) => w.needsCheck)) this.scheduleRecheck();
    else this.stopRecheck();
  }

  /** While nothing is written, the tables are still checked now and then, so the status recovers on its own. */
  private scheduleRecheck(): void {
    if (this.recheckTimer || !this.client) return;
    this.recheckTimer = setInterval(() => {
      if (!this.client) return;
      for (const w of this.writers) if (w.needsCheck && !w.isChecking) void w.check(this.requestTimeoutMs).catch(() => undefined);
    }, this.opts.recheckIntervalMs ?? 15_000);
    this.recheckTimer.unref();
  }

  private stopRecheck(): void {
    if (this.recheckTimer) clearInterval(this.recheckTimer);
    this.recheckTimer = undefined;
  }

  async close(): Promise<void> {
    this.stopRecheck();
    this.client = undefined;
    for (const w of this.writers) w.bind(undefined);
  }
}

/**
 * One message's outcome from its rows' (one row, or one per Sparkplug metric): refused when a row is (it goes to
 * the dead-letter store whole; replayed, its stored rows are de-duplicated by insertId), else retryable when a
 * row is, else delivered.
 */
function messageOutcome(rows: readonly DeliveryOutcome[]): DeliveryOutcome {
  if (rows.length === 1) return rows[0]!;
  const refused = rows.findIndex((o) => o.kind === 'rejected');
  if (refused >= 0) {
    const o = rows[refused] as Extract<DeliveryOutcome, { kind: 'rejected' }>;
    return rejected(o.reason, `row ${refused + 1} of ${rows.length}: ${o.detail}`);
  }
  return rows.find((o) => o.kind === 'retryable') ?? delivered;
}
