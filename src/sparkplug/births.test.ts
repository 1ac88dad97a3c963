import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BirthCache } from './births-cache.js';
import { BirthStore, birthsFile, type StoredBirth } from './births.js';

const dirs: string[] = [];
const stores: BirthStore[] = [];

afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function open(file?: string, spoolId?: string): BirthStore {
  if (file === undefined) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sparkplug-births-'));
    dirs.push(dir);
    file = birthsFile(dir);
  }
  const s = new BirthStore(file, { spoolId });
  stores.push(s);
  return s;
}

const MAX_U64 = 2n ** 64n - 1n;

const nbirth: StoredBirth = {
  spoolSeq: 7,
  messageId: '01JB0000000000000000000007',
  group: 'Plant1',
  edgeNode: 'Line4',
  bdSeq: MAX_U64,
  metrics: [
    { name: 'bdSeq', datatype: 8 },
    { name: 'Temp', alias: MAX_U64, datatype: 9 },
    { name: 'Node Control/Rebirth', alias: 0n, datatype: 11 },
  ],
};

describe('BirthStore', () => {
  it('keeps births exactly, 64-bit aliases and bdSeq included, across a reopen', () => {
    const first = open();
    const { bdSeq: _, ...node } = nbirth;
    const dbirth: StoredBirth = { ...node, spoolSeq: 8, messageId: 'm8', device: 'Pump', metrics: [{ name: 'Level', alias: 2n ** 53n + 1n, datatype: 3 }] };
    expect([first.insert(nbirth), first.insert(dbirth)]).toEqual([true, true]);
    first.close();
    const again = open(first.file);
    expect(again.edgeBirths('Plant1', 'Line4')).toEqual([nbirth, dbirth]);
    expect(again.edgeBirths('Plant1', 'Line5')).toEqual([]);
  });

  it('records a birth once: not again at the same spool seq, nor under the same message id', () => {
    const s = open();
    expect(s.insert(nbirth)).toBe(true);
    expect(s.insert({ ...nbirth, messageId: 'other' })).toBe(false);
    expect(s.insert({ ...nbirth, spoolSeq: 70 })).toBe(false);
    expect(s.edgeBirths('Plant1', 'Line4').map((b) => b.spoolSeq)).toEqual([7]);
  });

  it('keeps the seq progress', () => {
    const first = open();
    expect(first.progress()).toEqual({ seqs: [], countedThrough: 0 });
    first.saveProgress([{ group: 'Plant1', edgeNode: 'Line4', seq: 200 }], 41);
    first.saveProgress([{ group: 'Plant1', edgeNode: 'Line4', seq: 201 }, { group: 'Plant1', edgeNode: 'Line5', seq: 0 }], 42);
    first.close();
    expect(open(first.file).progress()).toEqual({
      seqs: [{ group: 'Plant1', edgeNode: 'Line4', seq: 201 }, { group: 'Plant1', edgeNode: 'Line5', seq: 0 }],
      countedThrough: 42,
    });
  });

  it('empties itself for another spool, and keeps what it has for its own', () => {
    const first = open(undefined, 'spool-a');
    first.insert(nbirth);
    first.saveProgress([{ group: 'Plant1', edgeNode: 'Line4', seq: 3 }], 9);
    first.close();
    const same = open(first.file, 'spool-a');
    expect(same.edgeBirths('Plant1', 'Line4')).toHaveLength(1);
    same.close();
    const other = open(first.file, 'spool-b');
    expect([other.edgeBirths('Plant1', 'Line4'), other.progress()]).toEqual([[], { seqs: [], countedThrough: 0 }]);
  });

  it('refuses a file of another format version rather than misread it', () => {
    const first = open();
    first.close();
    const db = new Database(first.file);
    db.prepare("UPDATE meta SET value = '2' WHERE key = 'schema_version'").run();
    db.close();
    expect(() => open(first.file)).toThrow(/format version 2; this version of mqtt-ingest reads version 1/);
  });
});

describe('BirthCache', () => {
  it('holds about as many metrics as it is allowed, the edge node in use always, and reads the others again', () => {
    const store = open();
    const reads: string[] = [];
    const read = store.edgeBirths.bind(store);
    store.edgeBirths = (group, edgeNode) => (reads.push(edgeNode), read(group, edgeNode));
    for (const [i, edge] of ['A', 'B', 'C'].entries()) store.insert({ ...nbirth, spoolSeq: i + 1, messageId: edge, edgeNode: edge });
    const cache = new BirthCache(store, 6); // two edge nodes of three metrics
    for (const edge of ['A', 'B', 'A', 'B', 'C', 'B', 'A']) {
      expect(cache.get(`Plant1/${edge}`, 'Plant1', edge).inEffect(10).node?.byAlias.get(MAX_U64)).toEqual({ name: 'Temp', datatype: 9 });
    }
    // C pushed out A, the least recently used; B stayed.
    expect(reads).toEqual(['A', 'B', 'C', 'A']);
    const big = new BirthCache(store, 1);
    for (const edge of ['A', 'A', 'B', 'A']) big.get(`Plant1/${edge}`, 'Plant1', edge);
    expect(reads.slice(4)).toEqual(['A', 'B', 'A']);
  });
});
