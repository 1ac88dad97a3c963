/**
 * One table of the BigQuery sink: the raw table or a route's typed table. It holds the table's client object,
 * what the last check of the table found (checked again before the next write when the table could not be
 * checked, or was found missing since) and the insertAll requests of its rows, with the partial-failure and
 * halving logic (classify.ts). The sink (bigquery-sink.ts) groups a batch's rows per table and keeps one
 * condition and one recheck timer for all its tables.
 */
import type { BigQuery, Table } from '@google-cloud/bigquery';
import { withCode } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { delivered, rejected, retryable, type DeliveryOutcome, type DestinationHealth } from '../../core/outcome.js';
import type { SinkCondition } from '../sink.js';
import { classifyRequestError, readInsertErrors, rowOutcomes, type InsertError, type RequestErrorClass } from './classify.js';
import { encodeRows, planRequests, requestBody, MAX_REQUEST_BYTES, type EncodedRow, type RowJson } from './request-plan.js';
import { checkTable, tableName, withTimeout, type TableCheck, type TableShape, type TableTarget } from './table-check.js';

/** What a table's writer takes from its sink: settings shared by every table, and where it reports. */
export interface WriterHost {
  readonly logger: Logger;
  readonly requestTimeoutMs: number;
  readonly maxBatchRows: number;
  readonly maxRequestBytes: number;
  /**
   * Whether details name the table they are about: a sink with several tables says which; a sink with only the
   * raw table words them as it always has (its table is in every health line's context).
   */
  readonly namesTables: boolean;
  /** A request failed on the node's credentials: the sink makes a new client (bigquery-sink.ts newClient). */
  credentialsFailed(cls: RequestErrorClass): void;
  /** A check of this table ended (its condition and needsCheck are set): report the sink's condition. */
  checked(): void;
}

export class TableWriter {
  /** `project:dataset.table`, as BigQuery names it. */
  readonly name: string;
  /** The table's client object, bound to the sink's current client (undefined before start and after close). */
  ref?: Table;
  /** The table must be checked (again) before rows are sent: unreachable at start, or found missing since. */
  needsCheck = false;
  /** What the last check found wrong (undefined: nothing). */
  condition?: SinkCondition;
  private client?: BigQuery;
  private checking?: Promise<TableCheck>;

  constructor(
    readonly target: TableTarget,
    readonly shape: TableShape,
    private readonly host: WriterHost,
  ) {
    this.name = tableName(target);
  }

  bind(client: BigQuery | undefined): void {
    this.client = client;
    this.ref = client?.dataset(this.target.dataset, { location: this.target.location }).table(this.target.table);
  }

  get isChecking(): boolean {
    return this.checking !== undefined;
  }

  /** A detail about this table, naming it when the sink has several and the words do not already. */
  say(detail: string): string {
    return this.host.namesTables && !detail.includes(this.name) ? `${this.name}: ${detail}` : detail;
  }

  /** Runs one check at a time (writes in flight share it) and reports what it found, except a mismatch at start. */
  check(timeoutMs: number, atStart = false): Promise<TableCheck> {
    this.checking ??= checkTable(this.client!, this.target, this.shape, timeoutMs)
      .then((check) => {
        // A mismatch at start stops the node with its own message; nothing to report or log twice.
        if (!(atStart && check.state === 'mismatch')) this.onCheck(check);
        return check;
      })
      .finally(() => (this.checking = undefined));
    return this.checking;
  }

  /**
   * The outcomes of these rows (one per row, in order), each `{ insertId, json }`: checked first when the table
   * needs it, then sent in requests of at most maxBatchRows rows and maxRequestBytes bytes, one at a time, so
   * that BIGQUERY_MAX_IN_FLIGHT (writes at once) bounds the requests at once.
   */
  async write(rows: { insertId: string; json: RowJson }[]): Promise<DeliveryOutcome[]> {
    if (this.needsCheck) {
      const check = await this.check(this.host.requestTimeoutMs);
      if (check.state !== 'ready') {
        const cls = check.state === 'mismatch' ? this.mismatch(check.problems) : check.cls;
        return rows.map(() => retryable(cls.reason, this.say(cls.detail), healthOf(cls)));
      }
    }
    const outcomes: DeliveryOutcome[] = new Array(rows.length);
    const encoded = encodeRows(rows.map((r) => r.json), rows.map((r) => r.insertId));
    const sendable: number[] = [];
    encoded.forEach((row, i) => {
      if (row.bytes > MAX_REQUEST_BYTES) {
        outcomes[i] = rejected(
          'too_large',
          this.say(`the row is ${row.bytes} bytes as JSON; BigQuery's insertAll takes at most ${MAX_REQUEST_BYTES} bytes per request`),
        );
      } else sendable.push(i);
    });
    for (const indexes of planRequests(sendable, encoded, this.host.maxBatchRows, this.host.maxRequestBytes)) {
      const answered = await this.insert(indexes.map((i) => encoded[i]!));
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
        insertAll(this.ref!, rows),
        this.host.requestTimeoutMs,
        `insertAll into ${this.name}`,
      );
      return rows.map(() => delivered);
    } catch (err) {
      const partial = partialFailure(err, rows.length);
      if (partial === 'unreadable') {
        // BigQuery refused some rows and we cannot tell which: none is known to be stored, so all are sent again
        // (insertId makes BigQuery drop the copies of rows it did store).
        const detail = this.say('BigQuery reported failed rows in a form that cannot be read (insertErrors); the whole request is retried');
        return rows.map(() => retryable('unreadable_response', detail, 'degraded'));
      }
      if (partial) {
        const outcomes = rowOutcomes(rows.length, partial).map((o) => this.named(o));
        const stopped = outcomes.flatMap((o, i) => (o.kind === 'retryable' && o.reason === 'stopped' ? [i] : []));
        if (resend && stopped.length > 0 && stopped.length < rows.length) {
          const again = await this.insert(stopped.map((i) => rows[i]!), false);
          again.forEach((o, k) => (outcomes[stopped[k]!] = o));
        }
        return outcomes;
      }
      const cls = classifyRequestError(err, this.name);
      if (cls.kind === 'invalid') {
        if (rows.length === 1) return [rejected(cls.reason, this.say(cls.detail))];
        // A request refused whole (e.g. over BigQuery's size limit): halve it until the culprit stands alone.
        const half = Math.ceil(rows.length / 2);
        return [...(await this.insert(rows.slice(0, half))), ...(await this.insert(rows.slice(half)))];
      }
      // Deleted meanwhile: checked (and re-created) before this table's next write; the other tables go on.
      if (cls.reason === 'not_found') this.needsCheck = true;
      this.host.credentialsFailed(cls);
      return rows.map(() => retryable(cls.reason, this.say(cls.detail), cls.kind));
    }
  }

  private named(o: DeliveryOutcome): DeliveryOutcome {
    return o.kind === 'delivered' || o.detail === undefined ? o : { ...o, detail: this.say(o.detail) };
  }

  private onCheck(check: TableCheck): void {
    const context = { sink: 'bigquery', table: this.name };
    const { logger } = this.host;
    if (check.state === 'ready') {
      this.needsCheck = false;
      for (const what of check.created) logger.info(withCode('BIGQUERY_CREATED', { ...context, created: what }), `created the BigQuery ${what} for ${this.name}`);
      if (check.added?.length) {
        logger.info(withCode('BIGQUERY_COLUMNS_ADDED', { ...context, columns: check.added }), `added the columns ${check.added.join(', ')} to ${this.name}`);
      }
      for (const w of check.warnings) logger.warn(withCode('BIGQUERY_TABLE_LAYOUT', context), w);
      this.condition = undefined;
    } else {
      this.needsCheck = true;
      const cls = check.state === 'mismatch' ? this.mismatch(check.problems) : check.cls;
      // A check refused as invalid says nothing against the destination (as a write refused as invalid).
      const health = healthOf(cls);
      this.condition = health ? { health, reason: cls.reason, detail: this.say(cls.detail) } : undefined;
      if (check.state !== 'mismatch') this.host.credentialsFailed(check.cls);
    }
    this.host.checked();
  }

  /** A table whose columns cannot take its rows: a person must change the table (or the configuration). */
  private mismatch(problems: string[]): RequestErrorClass {
    return { kind: 'failing', reason: 'schema_mismatch', detail: `the table cannot take ${this.shape.rows}: ${problems.join('; ')}` };
  }
}

/** What a classified failure says about the destination: a request refused as invalid says nothing. */
export function healthOf(cls: RequestErrorClass): DestinationHealth | undefined {
  return cls.kind === 'invalid' ? undefined : cls.kind;
}

/**
 * One insertAll request, its body written once from the rows' JSON text. Library facts (@google-cloud/bigquery 8.3
 * Table._insert, @google-cloud/common 6 util.decorateRequest, @google-cloud/projectify replaceProjectIdToken):
 * Table.insert deep-copies every row (`extend(true, …)`), and every request's `json` is then copied again and
 * walked cell by cell for a `{{projectId}}` token. On Sparkplug rows (20 per message, 22 cells each) that cost the
 * node about 50 µs per row, some forty times what decoding and making the row cost; a body given as text passes
 * both untouched. The answer is judged as Table.insert judges it: rows listed in `insertErrors` make an error of
 * the same shape as its PartialFailureError (name, and the response), read by partialFailure below.
 */
async function insertAll(table: Table, rows: readonly EncodedRow[]): Promise<void> {
  const [response] = (await table.request({
    method: 'POST',
    uri: '/insertAll',
    body: requestBody(rows),
    headers: { 'Content-Type': 'application/json' },
  })) as unknown as [{ insertErrors?: unknown } | undefined];
  const insertErrors = response?.insertErrors;
  if (insertErrors === undefined || (Array.isArray(insertErrors) && insertErrors.length === 0)) return;
  throw Object.assign(new Error('some rows were not inserted (insertErrors)'), { name: 'PartialFailureError', response });
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
