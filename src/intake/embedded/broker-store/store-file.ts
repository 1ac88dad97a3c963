import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { BrokerError } from '../../../core/errors.js';

/**
 * Format version of the broker's state file (SQLite `user_version`): 0 is a new file, which gets the tables; a
 * version this node does not know is refused rather than misread.
 */
export const STORE_VERSION = 1;

/**
 * The broker's state. Packets are kept whole as v8-serialized blobs (packet-codec.ts); the columns beside them are
 * what the store looks rows up by. `outgoing.broker_id`, `broker_counter` and `message_id` (and `incoming.message_id`)
 * have no declared type, so SQLite keeps each value as it was bound and compares them as the reference store's `===`
 * does (1 never equals '1'). Rowids keep insertion order: a subscription's row keeps its rowid when replaced (upsert),
 * as a Map entry keeps its place; `outgoing.seq` is each client's queue order.
 */
const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS retained (
  topic         TEXT    PRIMARY KEY,
  payload_bytes INTEGER NOT NULL,
  packet        BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS subscriptions (
  client_id TEXT NOT NULL,
  topic     TEXT NOT NULL,
  options   BLOB NOT NULL,
  PRIMARY KEY (client_id, topic)
);
CREATE TABLE IF NOT EXISTS outgoing (
  seq            INTEGER PRIMARY KEY AUTOINCREMENT,
  client_id      TEXT    NOT NULL,
  broker_id,
  broker_counter,
  message_id,
  packet         BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS outgoing_client ON outgoing (client_id, seq);
CREATE TABLE IF NOT EXISTS incoming (
  client_id  TEXT NOT NULL,
  message_id,
  packet     BLOB NOT NULL,
  PRIMARY KEY (client_id, message_id)
);
CREATE TABLE IF NOT EXISTS wills (
  client_id TEXT PRIMARY KEY,
  packet    BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS session_expiry (
  client_id  TEXT    PRIMARY KEY,
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS session_expiry_at ON session_expiry (expires_at);
`;

/**
 * Opens (creating it and its directory) the broker's state file, sets its pragmas and tables, and checks that
 * SQLite can read every page: a damaged file is refused at start, not found out by a client's subscribe later.
 * Throws a BrokerError naming the file (BROKER_STATE_DAMAGED when it cannot be read, else BROKER_START_FAILED); the
 * file is closed again.
 */
export function openStoreFile(file: string): Database.Database {
  const refuse = (what: string, cause: unknown, code: 'BROKER_START_FAILED' | 'BROKER_STATE_DAMAGED' = 'BROKER_START_FAILED'): BrokerError =>
    new BrokerError(code, `the embedded broker's state file ${file} ${what}`, { cause, context: { file } });
  try {
    mkdirSync(path.dirname(file), { recursive: true });
  } catch (err) {
    throw refuse(`cannot be created: its directory cannot be made (${(err as Error).message})`, err);
  }
  let db: Database.Database;
  try {
    db = new Database(file);
  } catch (err) {
    throw refuse(`cannot be opened (${(err as Error).message}): check that its directory is writable`, err);
  }
  try {
    db.pragma('journal_mode = WAL');
    // NORMAL: a commit is in the write-ahead log before it returns, which survives the crash or SIGKILL of the
    // process; only an OS crash or power loss may take the last commits back. That is enough here: this is the
    // broker's own state (sessions, queues, retained messages), while every message the node acknowledged is in
    // the spool, which has its own setting (SPOOL_SYNC).
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 5000');
    const check = db.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw new Error(`SQLite's quick_check found: ${String(check)}`);
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version === 0) {
      db.transaction(() => {
        db.exec(SCHEMA_SQL);
        db.pragma(`user_version = ${STORE_VERSION}`);
      })();
    } else if (version !== STORE_VERSION) {
      throw refuse(`has format version ${version}, this node reads version ${STORE_VERSION}: move it aside to start with an empty broker state`, undefined);
    }
  } catch (err) {
    db.close();
    if (err instanceof BrokerError) throw err;
    // Its own code: the broker sets such a file aside and starts empty (broker-state.ts).
    throw refuse(`cannot be used (${(err as Error).message}): it is damaged or not a state file`, err, 'BROKER_STATE_DAMAGED');
  }
  return db;
}

/** Rows read at a time by a stream: nothing holds the connection between reads, and memory stays bounded. */
export const PAGE_ROWS = 64;

/**
 * Rows of a keyset-paged query, a page at a time: `page(cursor)` reads the rows from `cursor` on, `after(row)` is the
 * cursor that follows the last row read. The statement does not stay open while the rows are consumed, so the store
 * keeps writing between pages (better-sqlite3 refuses writes on a connection with an open iterator).
 */
export function* pages<R, C>(first: C, page: (cursor: C) => R[], after: (row: R) => C): Generator<R> {
  let cursor = first;
  for (;;) {
    const rows = page(cursor);
    yield* rows;
    if (rows.length < PAGE_ROWS) return;
    cursor = after(rows[rows.length - 1]!);
  }
}
