import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe } from 'vitest';
import { createLogger } from '../../src/core/logger.js';
import { FileSink } from '../../src/sinks/file/file-sink.js';
import { blockFileSink } from '../helpers/disk.js';
import { readFileSink } from '../helpers/file-output.js';
import { sinkContract } from './sink-contract.js';

describe('file sink contract (a temporary directory)', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const outDir = () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'file-contract-'));
    dirs.push(dir);
    return path.join(dir, 'out');
  };
  const sink = (dir: string) => new FileSink({ dir, rotateBytes: 1e6, logger: createLogger('silent') });

  sinkContract({
    keepsOrder: true,
    async working() {
      const dir = outDir();
      return { sink: sink(dir), stored: async () => readFileSink(dir).map((r) => r.message_id) };
    },
    failures: [
      {
        what: 'its file names taken by directories',
        async sink() {
          const dir = outDir();
          blockFileSink(dir);
          return sink(dir);
        },
        state: 'degraded',
        reason: /error/,
      },
    ],
  });
});
