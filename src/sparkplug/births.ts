/**
 * The Sparkplug births the node has seen, on disk (`<DATA_DIR>/sparkplug/births.db`). The spool deletes a
 * birth's message once every sink is done with it, but data after it may still wait there (a sink down, a
 * backlog), so the host keeps each birth itself, with the spool seq of its message: data resolves with the births
 * before it in the spool, whatever has happened since. Beside the births, the last Sparkplug seq of each edge
 * node, so that a restart does not lose track of the sequence.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

const SCHEMA_VERSION = 1;

const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS births (
  spool_seq INTEGER PRIMARY KEY,
  message_id TEXT NOT NULL UNIQUE,
  grp TEXT NOT NULL,
  edge TEXT NOT NULL,
  device TEXT,
  bd_seq TEXT,
  metrics TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS births_by_edge ON births (grp, edge, spool_seq);
CREATE TABLE IF NOT EXISTS edge_seq (grp TEXT NOT NULL, edge TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (grp, edge)) WITHOUT ROWID;
`;

/** The births file under DATA_DIR. */
export function birthsFile(dataDir: string): string {
  return path.join(dataDir, 'sparkplug', 'births.db');
}

/** What a birth said of one metric. */
export interface StoredMetric {
  name: string;
  alias?: bigint;
  datatype: number;
}

/** One NBIRTH (no `device`) or DBIRTH, at its place in the spool. */
export interface StoredBirth {
  spoolSeq: number;
  messageId: string;
  group: string;
  edgeNode: string;
  device?: string;
  /** The NBIRTH's `bdSeq` metric, when it had one. */
  bdSeq?: bigint;
  metrics: StoredMetric[];
}

/** The last Sparkplug seq counted for an edge node. */
export interface EdgeSeq {
  group: string;
  edgeNode: string;
  seq: number;
}

interface BirthRow {
  spool_seq: number;
  message_id: string;
  grp: string;
  edge: string;
  device: string | null;
  bd_seq: string | null;
  metrics: string;
}

/** `spool_seq` below which nothing matters when the spool is empty: every message to come is newer. */
const ALL = Number.MAX_SAFE_INTEGER;

export class BirthStore {
  private readonly db: Database.Database;
  private readonly stmt;

  /**
   * `spoolId`: the spool's own id (its meta `spool_id`). Births are placed by spool seq, which starts again at 1
   * in a new spool: a file kept from another spool is emptied rather than misplace its births.
   */
  constructor(
    readonly file: string,
    options: { spoolId?: string } = {},
  ) {
    mkdirSync(path.dirname(file), { recursive: true });
    this.db = new Database(file);
    try {
      this.db.pragma('journal_mode = WAL');
      // FULL for births (set around each insert): a birth lost after its message left the spool cannot be read
      // again. The seq progress is written NORMAL: written often, and losing its last writes costs at most a
      // seq gap counted wrongly after a power loss.
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('busy_timeout = 5000');
      this.db.exec(SCHEMA_SQL);
      this.checkVersion();
      if (options.spoolId !== undefined) this.adoptSpool(options.spoolId);
    } catch (err) {
      this.db.close();
      throw err;
    }
    const db = this.db;
    this.stmt = {
      edge: db.prepare('SELECT * FROM births WHERE grp = ? AND edge = ? ORDER BY spool_seq'),
      insert: db.prepare(
        'INSERT OR IGNORE INTO births (spool_seq, message_id, grp, edge, device, bd_seq, metrics) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      // Births older than the latest of their key before `oldest`: no message still in the spool resolves with them.
      pruneKey: db.prepare(`
        DELETE FROM births AS b WHERE spool_seq < (
          SELECT MAX(k.spool_seq) FROM births AS k
          WHERE k.grp = b.grp AND k.edge = b.edge AND k.device IS b.device AND k.spool_seq < @oldest)`),
      // DBIRTHs older than the NBIRTH in effect at `oldest`: that NBIRTH replaced them.
      pruneDevices: db.prepare(`
        DELETE FROM births AS b WHERE device IS NOT NULL AND spool_seq < (
          SELECT MAX(n.spool_seq) FROM births AS n
          WHERE n.grp = b.grp AND n.edge = b.edge AND n.device IS NULL AND n.spool_seq < @oldest)`),
      seqs: db.prepare('SELECT grp, edge, seq FROM edge_seq'),
      saveSeq: db.prepare('INSERT INTO edge_seq (grp, edge, seq) VALUES (?, ?, ?) ON CONFLICT (grp, edge) DO UPDATE SET seq = excluded.seq'),
      getMeta: db.prepare('SELECT value FROM meta WHERE key = ?').pluck(),
      setMeta: db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)'),
    };
  }

  private checkVersion(): void {
    this.db.prepare('INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)').run('schema_version', String(SCHEMA_VERSION));
    const version = Number(this.db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").pluck().get());
    if (version !== SCHEMA_VERSION) {
      throw new Error(`${this.file} has format version ${version}; this version of mqtt-ingest reads version ${SCHEMA_VERSION}`);
    }
  }

  private adoptSpool(spoolId: string): void {
    const known = this.db.prepare("SELECT value FROM meta WHERE key = 'spool_id'").pluck().get() as string | undefined;
    if (known === spoolId) return;
    this.db.transaction(() => {
      if (known !== undefined) this.db.exec("DELETE FROM births; DELETE FROM edge_seq; DELETE FROM meta WHERE key = 'counted_through'");
      this.db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)').run('spool_id', spoolId);
    })();
  }

  /** The births of one edge node (its NBIRTHs and its devices' DBIRTHs), oldest first. */
  edgeBirths(group: string, edgeNode: string): StoredBirth[] {
    return (this.stmt.edge.all(group, edgeNode) as BirthRow[]).map(birthOfRow);
  }

  /**
   * Records a birth, durably before it returns; false when it was there already: the same spool seq (another
   * runner recorded it), or the same message id (a dead letter replayed gets a new seq; it is no new birth).
   */
  insert(b: StoredBirth): boolean {
    const metrics = JSON.stringify(b.metrics.map((m) => [m.name, m.alias === undefined ? null : String(m.alias), m.datatype]));
    this.db.pragma('synchronous = FULL');
    try {
      const r = this.stmt.insert.run(b.spoolSeq, b.messageId, b.group, b.edgeNode, b.device ?? null, b.bdSeq === undefined ? null : String(b.bdSeq), metrics);
      return r.changes === 1;
    } finally {
      this.db.pragma('synchronous = NORMAL');
    }
  }

  /**
   * Deletes the births no message at spool seq `oldest` or later can resolve with (`undefined`: the spool is
   * empty, only the latest of each key stays); returns how many went.
   */
  prune(oldest: number | undefined): number {
    const at = { oldest: oldest ?? ALL };
    return this.db.transaction(() => this.stmt.pruneDevices.run(at).changes + this.stmt.pruneKey.run(at).changes)();
  }

  /** The last seq counted per edge node, and the spool seq up to which the counting was done. */
  progress(): { seqs: EdgeSeq[]; countedThrough: number } {
    const seqs = (this.stmt.seqs.all() as { grp: string; edge: string; seq: number }[]).map((r) => ({ group: r.grp, edgeNode: r.edge, seq: r.seq }));
    const through = this.stmt.getMeta.get('counted_through') as string | undefined;
    return { seqs, countedThrough: through === undefined ? 0 : Number(through) };
  }

  /** Writes the seqs that changed and how far the counting went, in one transaction. */
  saveProgress(seqs: readonly EdgeSeq[], countedThrough: number): void {
    this.db.transaction(() => {
      for (const s of seqs) this.stmt.saveSeq.run(s.group, s.edgeNode, s.seq);
      this.stmt.setMeta.run('counted_through', String(countedThrough));
    })();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

function birthOfRow(r: BirthRow): StoredBirth {
  const metrics = (JSON.parse(r.metrics) as [string, string | null, number][]).map(([name, alias, datatype]) =>
    alias === null ? { name, datatype } : { name, alias: BigInt(alias), datatype },
  );
  const b: StoredBirth = { spoolSeq: r.spool_seq, messageId: r.message_id, group: r.grp, edgeNode: r.edge, metrics };
  if (r.device !== null) b.device = r.device;
  if (r.bd_seq !== null) b.bdSeq = BigInt(r.bd_seq);
  return b;
}
