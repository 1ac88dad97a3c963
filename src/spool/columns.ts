import type Database from 'better-sqlite3';
import type { MessageProperties, SinkName, SpooledMessage } from '../core/message.js';

/**
 * The columns of the two tables that hold messages, in table order, and the one codec between their rows and
 * the messages in memory. The CREATE TABLE text (schema.ts), the INSERT and SELECT column lists and the row
 * tuples all follow these lists. Order, names and declarations are the file format (format version 3, as
 * SCHEMA_VERSION says): a column is only ever added at the end, through a new version and its migration.
 */
export interface Column {
  readonly name: string;
  /** As written in CREATE TABLE: the type, then any constraints. */
  readonly decl: string;
  /** A comment written above the column in CREATE TABLE; SQLite keeps it in the file (sqlite_master), word for word. */
  readonly note?: string;
}

export interface Table {
  readonly name: string;
  readonly columns: readonly Column[];
  /** `CREATE TABLE IF NOT EXISTS …;`, laid out in aligned columns. */
  readonly createSql: string;
}

/** A message's own columns: the same, in the same order, in `messages` and in `dead_letters` (a dead letter keeps the whole message). */
export const MESSAGE_COLUMNS: readonly Column[] = [
  { name: 'message_id', decl: 'TEXT NOT NULL' },
  { name: 'topic', decl: 'TEXT NOT NULL' },
  { name: 'payload', decl: 'BLOB NOT NULL' },
  { name: 'qos', decl: 'INTEGER NOT NULL' },
  { name: 'retain', decl: 'INTEGER NOT NULL' },
  { name: 'received_at', decl: 'INTEGER NOT NULL' },
];

/**
 * A message's MQTT 5 properties, at the end of both tables (format 3 added them): NULL when the message had
 * none, so a message without properties costs two NULL cells and no JSON.
 */
export const PROPERTY_COLUMNS: readonly Column[] = [
  { name: 'user_properties', decl: 'TEXT', note: 'JSON object of the MQTT 5 user properties (a repeated name: the array of its values); NULL: none' },
  { name: 'content_type', decl: 'TEXT', note: 'MQTT 5 content type; NULL: none' },
];

export const MESSAGES = table('messages', [
  { name: 'seq', decl: 'INTEGER PRIMARY KEY AUTOINCREMENT' },
  ...MESSAGE_COLUMNS,
  { name: 'pending', decl: 'INTEGER NOT NULL', note: 'bit mask of the sinks that still have to deliver (or dead-letter) this message' },
  { name: 'crc', decl: 'INTEGER', note: "checksum.ts: CRC-32C of the message's columns at commit; NULL: none (format 1 rows, dlq replays)" },
  ...PROPERTY_COLUMNS,
]);

export const DEAD_LETTERS = table('dead_letters', [
  { name: 'id', decl: 'INTEGER PRIMARY KEY AUTOINCREMENT' },
  { name: 'sink', decl: 'TEXT NOT NULL' },
  { name: 'reason', decl: 'TEXT NOT NULL' },
  { name: 'detail', decl: 'TEXT NOT NULL' },
  ...MESSAGE_COLUMNS,
  { name: 'dead_at', decl: 'INTEGER NOT NULL' },
  ...PROPERTY_COLUMNS,
]);

/** Names padded to the longest plus one, types likewise, so the schema reads as a table. */
function table(name: string, columns: readonly Column[]): Table {
  const typeOf = (c: Column) => c.decl.split(' ', 1)[0]!;
  const nameWidth = Math.max(...columns.map((c) => c.name.length)) + 1;
  const typeWidth = Math.max(...columns.map((c) => typeOf(c).length)) + 1;
  const lines = columns.map((c, i) => {
    const type = typeOf(c);
    const rest = c.decl.slice(type.length + 1);
    const note = c.note ? `  -- ${c.note}\n` : '';
    return `${note}  ${c.name.padEnd(nameWidth)}${rest ? type.padEnd(typeWidth) + rest : type}${i < columns.length - 1 ? ',' : ''}`;
  });
  return { name, columns, createSql: `CREATE TABLE IF NOT EXISTS ${name} (\n${lines.join('\n')}\n);` };
}

const names = (columns: readonly Column[]) => columns.map((c) => c.name).join(', ');
const params = (columns: readonly Column[]) => `(${columns.map(() => '?').join(', ')})`;
/** The columns an INSERT writes: all but the key, which SQLite assigns (AUTOINCREMENT). */
const written = (t: Table) => t.columns.slice(1);

/** `INSERT INTO messages (…) VALUES (?, …)`, `rows` rows at once; its values from pushMessageRow or insertMessageRow. */
export function insertMessagesSql(rows = 1): string {
  return `INSERT INTO messages (${names(written(MESSAGES))}) VALUES ${Array(rows).fill(params(written(MESSAGES))).join(', ')}`;
}

/** What a lease reads of a row (with `.raw()`): seq, the message's columns and the checksum, not the pending bits. */
export const LEASED_COLUMNS = `seq, ${names(MESSAGE_COLUMNS)}, crc, ${names(PROPERTY_COLUMNS)}`;

/** A row as LEASED_COLUMNS reads it, positional: one array per message instead of an object too. */
export type LeasedRow = [seq: number, messageId: string, topic: string, payload: Buffer, qos: number, retain: number, receivedAt: number,
  crc: number | null, userProperties: string | null, contentType: string | null];

/** Every column of `dead_letters`, in table order (a row to read with `.raw()`: deadLetterOfRow). */
export const DEAD_LETTER_COLUMNS = names(DEAD_LETTERS.columns);

export type DeadLetterRow = [
  id: number,
  sink: SinkName,
  reason: string,
  detail: string,
  messageId: string,
  topic: string,
  payload: Buffer,
  qos: number,
  retain: number,
  receivedAt: number,
  deadAt: number,
  userProperties: string | null,
  contentType: string | null,
];

export const INSERT_DEAD_LETTER_SQL = `INSERT INTO dead_letters (${names(written(DEAD_LETTERS))}) VALUES ${params(written(DEAD_LETTERS))}`;

/** What a row needs of a message besides its identity: a SpooledMessage, an InboundMessage or a DeadLetter. */
export interface MessageFields {
  topic: string;
  payload: Buffer;
  qos: number;
  retain: boolean;
  receivedAt: number;
  properties?: MessageProperties;
}

// The codec below writes and reads positions by hand (no loop over the column list per message: the group
// commit and the lease are the hot paths). The lists above must name the columns in the order it uses.
expectOrder(MESSAGES, ['seq', 'message_id', 'topic', 'payload', 'qos', 'retain', 'received_at', 'pending', 'crc', 'user_properties', 'content_type']);
expectOrder(DEAD_LETTERS, ['id', 'sink', 'reason', 'detail', 'message_id', 'topic', 'payload', 'qos', 'retain', 'received_at', 'dead_at', 'user_properties', 'content_type']);

function expectOrder(t: Table, codec: readonly string[]): void {
  if (names(t.columns) !== codec.join(', ')) throw new Error(`${t.name} columns (${names(t.columns)}) out of step with their codec (${codec.join(', ')})`);
}

/**
 * The `user_properties` cell of a message: its user properties as JSON text, null without any. Computed once
 * per row by the caller, which needs it for the checksum too; a message without properties costs no JSON.
 */
export function userPropertiesText(m: MessageFields): string | null {
  const u = m.properties?.userProperties;
  return u === undefined ? null : JSON.stringify(u);
}

/** The `content_type` cell of a message. */
export function contentTypeText(m: MessageFields): string | null {
  return m.properties?.contentType ?? null;
}

/**
 * Appends the values of one `messages` row (insertMessagesSql's order) to a multi-row INSERT's parameters;
 * `userProperties` is userPropertiesText(m).
 */
export function pushMessageRow(out: unknown[], messageId: string, m: MessageFields, pending: number, crc: number | null, userProperties: string | null): void {
  out.push(messageId, m.topic, m.payload, m.qos, m.retain ? 1 : 0, m.receivedAt, pending, crc, userProperties, contentTypeText(m));
}

/** The same row, bound to a one-row INSERT as arguments: spreading an array into run() costs about a quarter more per row. */
export function insertMessageRow(
  insert: Database.Statement,
  messageId: string,
  m: MessageFields,
  pending: number,
  crc: number | null,
  userProperties: string | null,
): Database.RunResult {
  return insert.run(messageId, m.topic, m.payload, m.qos, m.retain ? 1 : 0, m.receivedAt, pending, crc, userProperties, contentTypeText(m));
}

export function leasedMessage(r: LeasedRow): SpooledMessage {
  const m: SpooledMessage = { seq: r[0], messageId: r[1], topic: r[2], payload: r[3], qos: r[4] as 0 | 1 | 2, retain: r[5] === 1, receivedAt: r[6] };
  if (r[8] !== null || r[9] !== null) m.properties = propertiesOf(r[8], r[9]);
  return m;
}

/**
 * The message a lease would read back from the row committed for `m` (recent-rows.ts): the same fields, the
 * properties rebuilt from the cells bound to the INSERT, as leasedMessage builds them from the cells read.
 */
export function spooledOf(m: MessageFields & { receivedAt: number }, seq: number, messageId: string): SpooledMessage {
  const out: SpooledMessage = { seq, messageId, topic: m.topic, payload: m.payload, qos: m.qos as 0 | 1 | 2, retain: m.retain, receivedAt: m.receivedAt };
  const up = m.properties?.userProperties === undefined ? null : userPropertiesText(m);
  const ct = contentTypeText(m);
  if (up !== null || ct !== null) out.properties = propertiesOf(up, ct);
  return out;
}

/** The cells of the property columns as the lease read them (for the checksum: the stored text itself). */
export function leasedPropertyCells(r: LeasedRow): [userProperties: string | null, contentType: string | null] {
  return [r[8], r[9]];
}

/**
 * The properties of a row. Text that no longer parses (bytes damaged on disk) leaves the user properties
 * out rather than failing the lease: the row's checksum, computed over the stored text, dead-letters it.
 */
function propertiesOf(userProperties: string | null, contentType: string | null): MessageProperties {
  const p: MessageProperties = {};
  if (userProperties !== null) {
    try {
      p.userProperties = JSON.parse(userProperties) as Record<string, string | string[]>;
    } catch {
      // left out; see above
    }
  }
  if (contentType !== null) p.contentType = contentType;
  return p;
}

/** The checksum written at commit (checksum.ts); null for a row without one. */
export function leasedChecksum(r: LeasedRow): number | null {
  return r[7];
}

export function insertDeadLetterRow(insert: Database.Statement, sink: SinkName, reason: string, detail: string, m: SpooledMessage, deadAt: number): void {
  insert.run(sink, reason, detail, m.messageId, m.topic, m.payload, m.qos, m.retain ? 1 : 0, m.receivedAt, deadAt, userPropertiesText(m), contentTypeText(m));
}

export function deadLetterOfRow(r: DeadLetterRow): DeadLetter {
  const d: DeadLetter = { id: r[0], sink: r[1], reason: r[2], detail: r[3], messageId: r[4], topic: r[5], payload: r[6], qos: r[7], retain: r[8] === 1, receivedAt: r[9], deadAt: r[10] };
  if (r[11] !== null || r[12] !== null) d.properties = propertiesOf(r[11], r[12]);
  return d;
}

/** A dead letter as the dlq commands and replay read it: the message, its sink, the reason and when. */
export interface DeadLetter {
  id: number;
  sink: SinkName;
  reason: string;
  detail: string;
  messageId: string;
  topic: string;
  payload: Buffer;
  qos: number;
  retain: boolean;
  receivedAt: number;
  deadAt: number;
  properties?: MessageProperties;
}
