import type { Command } from 'commander';
import { readFileSync, writeFileSync } from 'node:fs';
import { renderConfigDocs } from '../config/docs.js';
import { renderErrorDocs } from '../core/errors-docs.js';
import { renderSchemaTable } from '../sinks/bigquery/schema.js';
import { replaceGenerated } from '../sinks/bigquery/schema-docs.js';

/**
 * `mqtt-ingest docs config`: the configuration reference, generated from the schema (`npm run docs`);
 * `mqtt-ingest docs errors`: the error codes, generated from the catalogue in src/core/error-catalogue.ts.
 */
export function registerDocs(program: Command): void {
  const docs = program.command('docs').description('print generated documentation');
  docs
    .command('config')
    .description('print the configuration reference (docs/configuration.md) as Markdown')
    .action(() => {
      process.stdout.write(renderConfigDocs());
    });
  docs
    .command('errors')
    .description('print the error codes (docs/errors.md) as Markdown')
    .action(() => {
      process.stdout.write(renderErrorDocs());
    });
  docs
    .command('bigquery-schema')
    .description("print the raw BigQuery table's schema as a Markdown table; --write puts it into that file's generated section")
    .option('--write <file>', 'replace the generated section of this file (docs/bigquery.md)')
    .action((opts: { write?: string }) => {
      if (!opts.write) return void process.stdout.write(`${renderSchemaTable()}\n`);
      try {
        writeFileSync(opts.write, replaceGenerated(readFileSync(opts.write, 'utf8')));
      } catch (err) {
        process.stderr.write(`mqtt-ingest docs bigquery-schema: cannot update ${opts.write}: ${(err as Error).message}\n`);
        process.exitCode = 1;
      }
    });
}
