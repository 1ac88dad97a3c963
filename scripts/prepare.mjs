// `prepare` runs on `npm ci`. Build the TypeScript when the compiler is installed (development, CI,
// the image's build stage). A production install (`npm ci --omit=dev`) has no compiler and ships a
// dist/ built earlier, so there it only checks that dist/ exists.
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
let tsc;
try {
  tsc = require.resolve('typescript/bin/tsc');
} catch {
  tsc = undefined;
}
if (tsc) {
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
} else if (!existsSync('dist/src/cli/main.js')) {
  console.error('mqtt-ingest prepare: no TypeScript compiler and no dist/; install dev dependencies to build');
  process.exit(1);
}
