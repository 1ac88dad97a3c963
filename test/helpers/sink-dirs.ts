import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { blockFileSink } from './disk.js';
import { readFileSink } from './file-output.js';
import { seqOf } from './load.js';

/**
 * The FILE_SINK_DIRs of one test's successive nodes, read together. The file sink keeps its file open, so a sink
 * can be blocked (to hold rows in the spool) only from a node's start: each start that needs it takes a new,
 * blocked directory.
 */
export class SinkDirs {
  private readonly dirs: Array<{ dir: string; blocked: boolean }> = [];

  /** A new directory; `blocked`: the file sink cannot write in it (every write is retried) until `unblock()`. */
  make(blocked = false): { dir: string; unblock: () => void } {
    const entry = { dir: fs.mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-modes-out-')), blocked };
    this.dirs.push(entry);
    const release = blocked ? blockFileSink(entry.dir) : () => undefined;
    return {
      dir: entry.dir,
      unblock: () => {
        release();
        entry.blocked = false;
      },
    };
  }

  /** The sequence numbers of every record written in any directory not blocked now. */
  stored(): Set<number> {
    const seqs = new Set<number>();
    for (const d of this.dirs) {
      if (d.blocked) continue;
      for (const r of readFileSink(d.dir)) seqs.add(seqOf(r.payload));
    }
    return seqs;
  }

  remove(): void {
    for (const d of this.dirs.splice(0)) fs.rmSync(d.dir, { recursive: true, force: true });
  }
}
