import type { Command } from 'commander';
import { renderConfigDocs } from '../config/docs.js';

/** `mqtt-ingest docs config`: the configuration reference, generated from the schema (`npm run docs`). */
export function registerDocs(program: Command): void {
  const docs = program.command('docs').description('print generated documentation');
  docs
    .command('config')
    .description('print the configuration reference (docs/configuration.md) as Markdown')
    .action(() => {
      process.stdout.write(renderConfigDocs());
    });
}
