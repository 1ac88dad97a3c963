/**
 * The spool's SQLite schema. `messages.seq` is AUTOINCREMENT on purpose: a plain rowid may be reused
 * after the highest row is deleted, and a sink's in-memory lease cursor (seq > cursor) would then skip
 * the new row. AUTOINCREMENT guarantees every new row sorts after every row ever leased.
 */
export const SCHEMA_VERSION = 1;

export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
  seq         INTEGER PRIMARY KEY AUTOINCREMENT,
  message_id  TEXT    NOT NULL,
  topic       TEXT    NOT NULL,
  payload     BLOB    NOT NULL,
  qos         INTEGER NOT NULL,
  retain      INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  -- bit mask of the sinks that still have to deliver (or dead-letter) this message
  pending     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  sink        TEXT    NOT NULL,
  reason      TEXT    NOT NULL,
  detail      TEXT    NOT NULL,
  message_id  TEXT    NOT NULL,
  topic       TEXT    NOT NULL,
  payload     BLOB    NOT NULL,
  qos         INTEGER NOT NULL,
  retain      INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  dead_at     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_sink ON dead_letters (sink, id);
-- Journal of the inbound window (inbound-window.ts): per commit, the packet id and digest of each
-- message, to recognise a broker redelivery (DUP) of a message committed just before the PUBACK was lost.
CREATE TABLE IF NOT EXISTS inbound_window_log (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,
  entries BLOB NOT NULL
);
`;

/** Fixed bit per sink; never renumber (rows on disk carry these bits). */
export const SINK_BITS = { pubsub: 1, bigquery: 2, file: 4 } as const;

/** Bytes a message is charged against SPOOL_MAX_BYTES: payload, topic and a fixed row overhead. */
export const ROW_OVERHEAD_BYTES = 64;
