/**
 * BigQuery sink (contract §3, "BigQuery row"): each message becomes one raw row (schema.ts), streamed with
 * `tabledata.insertAll`, `insertId` = `message_id`, so every retry of ours is de-duplicated by BigQuery.
 * One outcome per message: a 200 with `insertErrors` is not success (classify.ts `rowOutcomes`).
 *
 * Who retries: our dispatcher, with the node's backoff, while the spool holds the rows. The client's own
 * retries are off (`autoRetry: false`; `maxRetries: 0` is ignored by @google-cloud/common, which treats 0 as
 * "unset" and retries 3 times over ~16 s) and so are its partial retries (`partialRetries: 0`), so every
 * failed attempt is counted and shown at once.
 */
import { BigQuery, type BigQueryOptions, type Table } from '@google-cloud/bigquery';
import type { SpooledMessage } from '../../core/message.js';
import { delivered, rejected, retryable, type DeliveryOutcome, type DestinationHealth } from '../../core/outcome.js';
import { IngestError, withCode } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { ConditionReport, Sink, SinkCondition, SinkDescription } from '../sink.js';
import { classifyRequestError, readInsertErrors, rowOutcomes, type InsertError, type RequestErrorClass } from './classify.js';
import { toRawRow } from './schema.js';
import { checkRawTable, tableName, withTimeout, type RouteTable, type TableCheck } from './table-check.js';
import { encodeRows, planRequests, MAX_REQUEST_BYTES, type EncodedRow } from './request-plan.js';

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
  private readonly logger: Logger;
  private readonly requestTimeoutMs: number;
  private readonly table: string;
  private client?: BigQuery;
  private tableRef?: Table;
  /** The table must be checked (again) before rows are sent: unreachable at start, or found missing since. */
  private needsCheck = false;
  private checking?: Promise<TableCheck>;
  private recheckTimer?: NodeJS.Timeout;
  /** What the last table check found wrong (undefined: nothing), for the runner (watchCondition). */
  private condition?: SinkCondition;
  private report?: ConditionReport;

  constructor(opts: BigQuerySinkOptions) {
    this.opts = opts;
    this.logger = opts.logger;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.maxBatchMessages = opts.maxBatchRows;
    // The dispatcher measures payload bytes; rows encode larger (JSON escaping, base64, the data column),
    // and write() splits a batch into requests of at most maxRequestBytes each.
    this.maxBatchBytes = opts.maxRequestBytes;
    this.maxInFlight = opts.maxInFlight;
    this.table = tableName(opts);
    this.describe = {
      context: { table: this.table },
      words: {
        failing: 'BigQuery writes are failing',
        degraded: 'BigQuery is unavailable or throttling; the spool keeps the rows and the dispatcher retries',
        recovered: 'BigQuery writes recovered',
        action: `writing to ${this.table}`,
      },
    };
  }

  /** The table check's findings: at start (before the runner exists), before a write, and on the recheck. */
  watchCondition(report: ConditionReport): void {
    this.report = report;
    report(this.condition);
  }

  /**
   * Creates the client and checks the table (creating it and its dataset when auto-create is on). A table
   * that definitely cannot take raw rows stops the start with every difference listed; an unreachable
   * BigQuery or a refused permission does not (the node keeps spooling): it is reported as the sink's
   * condition (logged and shown in the status by its runner), and checked again before the first write.
   */
  async start(): Promise<void> {
    if (this.client) return;
    this.newClient();
    const check = await this.checkTable(this.opts.startTimeoutMs ?? 10_000, true);
    if (check.state === 'mismatch') {
      throw new IngestError(
        'SINK_START_FAILED',
        `BigQuery table ${this.table} cannot take raw rows:\n${check.problems.map((p) => `  - ${p}`).join('\n')}`,
        { context: { sink: this.name, table: this.table, problems: check.problems } },
      );
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
    this.tableRef = client.dataset(this.opts.dataset, { location: this.opts.location }).table(this.opts.table);
  }

  /** After a credentials failure the next request loads the credentials anew (see newClient). */
  private onCredentialsFailure(cls: RequestErrorClass): void {
    if (cls.kind !== 'failing' || !cls.credentials || !this.client || this.opts.authClient) return;
    this.newClient();
  }

  async write(batch: SpooledMessage[]): Promise<DeliveryOutcome[]> {
    if (!this.client || !this.tableRef) throw new Error('the BigQuery sink is not started (or already closed)');
    if (this.needsCheck) {
      const check = await this.checkTable(this.requestTimeoutMs);
      if (check.state !== 'ready') {
        const cls = check.state === 'mismatch' ? mismatch(check.problems) : check.cls;
        return batch.map(() => retryable(cls.reason, cls.detail, healthOf(cls)));
      }
    }
    const outcomes: DeliveryOutcome[] = new Array(batch.length);
    const rows = encodeRows(batch.map(toRawRow), batch.map((m) => m.messageId));
    const sendable: number[] = [];
    rows.forEach((row, i) => {
      if (row.bytes > MAX_REQUEST_BYTES) {
        outcomes[i] = rejected(
          'too_large',
          `the row is ${row.bytes} bytes as JSON; BigQuery's insertAll takes at most ${MAX_REQUEST_BYTES} bytes per request`,
        );
      } else sendable.push(i);
    });
    // One request at a time, so that BIGQUERY_MAX_IN_FLIGHT (writes at once) bounds the requests at once.
    for (const indexes of planRequests(sendable, rows, this.maxBatchMessages, this.opts.maxRequestBytes)) {
      const answered = await this.insert(indexes.map((i) => rows[i]!));
      answered.forEach((o, k) => (outcomes[indexes[k]!] = o));
    }
    return outcomes;
  }

  /**
   * One insertAll request (split further when BigQuery refuses it as a whole). Rows left `stopped` by an
   * invalid neighbour are valid: they are sent once more at once, without the rows BigQuery refused. Rows a
   * failed request leaves retryable carry the destination's health; rows stopped by a neighbour carry none.
   */
  private async insert(rows: EncodedRow[], resend = true): Promise<DeliveryOutcome[]> {
    try {
      await withTimeout(
        this.tableRef!.insert(rows.map((r) => r.raw), { raw: true, partialRetries: 0 }),
        this.requestTimeoutMs,
        `insertAll into ${this.table}`,
      );
      return rows.map(() => delivered);
    } catch (err) {
      const partial = partialFailure(err, rows.length);
      if (partial === 'unreadable') {
        // BigQuery refused some rows and we cannot tell which: none is known to be stored, so all are sent again
        // (insertId makes BigQuery drop the copies of rows it did store).
        const detail = 'BigQuery reported failed rows in a form that cannot be read (insertErrors); the whole request is retried';
        return rows.map(() => retryable('unreadable_response', detail, 'degraded'));
      }
      if (partial) {
        const outcomes = rowOutcomes(rows.length, partial);
        const stopped = outcomes.flatMap((o, i) => (o.kind === 'retryable' && o.reason === 'stopped' ? [i] : []));
        if (resend && stopped.length > 0 && stopped.length < rows.length) {
          const again = await this.insert(stopped.map((i) => rows[i]!), false);
          again.forEach((o, k) => (outcomes[stopped[k]!] = o));
        }
        return outcomes;
      }
      const cls = classifyRequestError(err, this.table);
      if (cls.kind === 'invalid') {
        if (rows.length === 1) return [rejected(cls.reason, cls.detail)];
        // A request refused whole (e.g. over BigQuery's size limit): halve it until the culprit stands alone.
        const half = Math.ceil(rows.length / 2);
        return [...(await this.insert(rows.slice(0, half))), ...(await this.insert(rows.slice(half)))];
      }
      if (cls.reason === 'not_found') this.needsCheck = true; // deleted meanwhile: check (and re-create) before the next write
      this.onCredentialsFailure(cls);
      return rows.map(() => retryable(cls.reason, cls.detail, cls.kind));
    }
  }

  /** Runs one table check at a time (writes in flight share it) and reports what it found. */
  private checkTable(timeoutMs: number, atStart = false): Promise<TableCheck> {
    this.checking ??= checkRawTable(this.client!, this.opts, timeoutMs)
      .then((check) => {
        // A mismatch at start stops the node with its own message; nothing to report or log twice.
        if (!(atStart && check.state === 'mismatch')) this.onCheck(check);
        return check;
      })
      .finally(() => (this.checking = undefined));
    return this.checking;
  }

  private onCheck(check: TableCheck): void {
    const context = { sink: this.name, table: this.table };
    if (check.state === 'ready') {
      this.needsCheck = false;
      this.stopRecheck();
      for (const what of check.created) this.logger.info(withCode('BIGQUERY_CREATED', { ...context, created: what }), `created the BigQuery ${what} for ${this.table}`);
      if (check.added?.length) {
        this.logger.info(withCode('BIGQUERY_COLUMNS_ADDED', { ...context, columns: check.added }), `added the columns ${check.added.join(', ')} to ${this.table}`);
      }
      for (const w of check.warnings) this.logger.warn(withCode('BIGQUERY_TABLE_LAYOUT', context), w);
      this.setCondition(undefined);
      return;
    }
    this.needsCheck = true;
    const cls = check.state === 'mismatch' ? mismatch(check.problems) : check.cls;
    // A check refused as invalid says nothing against the destination (as a write refused as invalid).
    const health = healthOf(cls);
    this.setCondition(health ? { health, reason: cls.reason, detail: cls.detail } : undefined);
    if (check.state !== 'mismatch') this.onCredentialsFailure(check.cls);
    this.scheduleRecheck();
  }

  private setCondition(condition: SinkCondition | undefined): void {
    this.condition = condition;
    this.report?.(condition);
  }

  /** While nothing is written, the table is still checked now and then, so the status recovers on its own. */
  private scheduleRecheck(): void {
    if (this.recheckTimer || !this.client) return;
    this.recheckTimer = setInterval(() => {
      if (!this.checking && this.needsCheck && this.client) void this.checkTable(this.requestTimeoutMs).catch(() => undefined);
    }, this.opts.recheckIntervalMs ?? 15_000);
    this.recheckTimer.unref();
  }

  private stopRecheck(): void {
    if (this.recheckTimer) clearInterval(this.recheckTimer);
    this.recheckTimer = undefined;
  }

  async close(): Promise<void> {
    this.stopRecheck();
    this.client = this.tableRef = undefined;
  }
}

/** A table whose columns cannot take raw rows: a person must change the table (or the configuration). */
function mismatch(problems: string[]): RequestErrorClass {
  return { kind: 'failing', reason: 'schema_mismatch', detail: `the table cannot take raw rows: ${problems.join('; ')}` };
}

/** What a classified failure says about the destination: a request refused as invalid says nothing. */
function healthOf(cls: RequestErrorClass): DestinationHealth | undefined {
  return cls.kind === 'invalid' ? undefined : cls.kind;
}

/**
 * The `insertErrors` of a PartialFailureError, `unreadable` when it has them in a form that cannot be read
 * (classify.ts `readInsertErrors`), or undefined for any other error. The error's `message` is empty and its
 * `errors` list is in response order; `response.insertErrors` carries the row indexes.
 */
function partialFailure(err: unknown, count: number): InsertError[] | 'unreadable' | undefined {
  const e = err as { name?: string; response?: { insertErrors?: unknown } } | null;
  if (e?.name !== 'PartialFailureError') return undefined;
  return readInsertErrors(e.response?.insertErrors, count) ?? 'unreadable';
}
