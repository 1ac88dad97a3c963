#!/usr/bin/env node
// Entry point of the package bin. The TypeScript is compiled to dist/ by `npm run build`
// (run by `prepare` on `npm ci`), so this shim only loads the compiled CLI.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  process.stderr.write('mqtt-ingest: dist/ is missing; run `npm run build` (or `npm ci`, which builds in prepare)\n');
  process.exit(1);
}
await import(main);
