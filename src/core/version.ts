/**
 * The node's version, from its package.json: the one `--version`, the start-up log line, the readiness JSON and
 * `mqtt_ingest_build_info` show, so an operator can tell what a rollback actually runs.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

export function nodeVersion(): string {
  if (cached !== undefined) return cached;
  // src/core/ when run from TypeScript (tests), dist/src/core/ when compiled: the package root is above either.
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = path.join(dir, 'package.json');
    try {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'mqtt-ingest' && typeof pkg.version === 'string') return (cached = pkg.version);
    } catch {
      // not here: look one folder up
    }
    const parent = path.dirname(dir);
    if (parent === dir) return (cached = 'unknown');
    dir = parent;
  }
}
