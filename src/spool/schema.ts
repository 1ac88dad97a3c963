import type { MessageProperties } from '../core/message.js';
import { DEAD_LETTERS, MESSAGES } from './columns.js';

/**
 * The spool's SQLite schema; the columns of the two message tables are listed in columns.ts. `messages.seq` is AUTOINCREMENT on purpose: a plain rowid may be reused
 * after the highest row is deleted, and a sink's in-memory lease cursor (seq > cursor) would then skip
 * the new row. AUTOINCREMENT guarantees every new row sorts after every row ever leased, and its counter
 * (sqlite_sequence) is the high-water mark the commit record checks at open (commit-record.ts).
 *
 * Format versions: 1 (no checksums; a window journal without connection epochs), 2 (no MQTT 5 properties),
 * 3 (this one). A spool of version 1 or 2 is migrated at open (MIGRATIONS); one of a version this node does
 * not know is refused.
 */
export const SCHEMA_VERSION = 3;

export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
${MESSAGES.createSql}
${DEAD_LETTERS.createSql}
CREATE INDEX IF NOT EXISTS dead_letters_sink ON dead_letters (sink, id);
-- Journal of the inbound window (inbound-window.ts): per commit and subscriber connection (epoch), the
-- packet id and digest of each QoS 1/2 message at consecutive positions from first_position, to recognise
-- a broker redelivery (DUP) of a message committed just before the connection died.
CREATE TABLE IF NOT EXISTS inbound_window_log (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  entries        BLOB    NOT NULL,
  epoch          INTEGER NOT NULL DEFAULT 0,
  first_position INTEGER NOT NULL DEFAULT 0
);
`;

/**
 * SQL that brings a spool of format version N to N + 1, run in one transaction at open. Version 1 → 2: rows
 * get a checksum column (NULL for the rows already stored: they are delivered unchecked), and the window
 * journal gets connection epochs and positions. Its old entries carry neither, so they cannot tell which
 * connection committed them: they are dropped, and redeliveries of the first connection after the upgrade
 * are stored (duplicates, never a loss). Version 2 → 3: both message tables get the property columns at
 * their end (columns.ts, PROPERTY_COLUMNS), NULL for the rows already stored, whose checksums stay valid
 * (checksum.ts covers the properties only of rows that have them).
 */
export const MIGRATIONS: Record<number, string> = {
  1: `
ALTER TABLE messages ADD COLUMN crc INTEGER;
ALTER TABLE inbound_window_log ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE inbound_window_log ADD COLUMN first_position INTEGER NOT NULL DEFAULT 0;
DELETE FROM inbound_window_log;
`,
  2: `
ALTER TABLE messages ADD COLUMN user_properties TEXT;
ALTER TABLE messages ADD COLUMN content_type TEXT;
ALTER TABLE dead_letters ADD COLUMN user_properties TEXT;
ALTER TABLE dead_letters ADD COLUMN content_type TEXT;
`,
};

/** Fixed bit per sink; never renumber (rows on disk carry these bits). */
export const SINK_BITS = { pubsub: 1, bigquery: 2, file: 4 } as const;

/**
 * Bytes a message is charged against SPOOL_MAX_BYTES: payload, topic, its property cells as stored (UTF-8
 * bytes of the JSON text and of the content type) and a fixed row overhead.
 */
export const ROW_OVERHEAD_BYTES = 64;

export function messageBytes(topic: string, payload: Buffer, properties?: MessageProperties): number {
  const n = payload.length + Buffer.byteLength(topic) + ROW_OVERHEAD_BYTES;
  return properties === undefined ? n : n + propertyBytes(properties);
}

/** The UTF-8 bytes of a message's property cells (columns.ts: userPropertiesText, contentTypeText). */
function propertyBytes(p: MessageProperties): number {
  return (p.userProperties === undefined ? 0 : Buffer.byteLength(JSON.stringify(p.userProperties))) + (p.contentType === undefined ? 0 : Buffer.byteLength(p.contentType));
}

/** messageBytes in SQL, less the overhead, for rows counted or deleted in the database (text in UTF-8 bytes). */
export const STORED_BYTES_SQL =
  'length(payload) + length(CAST(topic AS BLOB)) + COALESCE(length(CAST(user_properties AS BLOB)), 0) + COALESCE(length(CAST(content_type AS BLOB)), 0)';
