import { Command } from 'commander';
import { registerRun } from './run.js';
import { registerCheckConfig } from './check-config.js';
import { registerDocs } from './docs.js';

const program = new Command();
program
  .name('mqtt-ingest')
  .description('MQTT ingestion node: broker, durable spool, Pub/Sub, BigQuery and file sinks')
  .showHelpAfterError();

registerRun(program);
registerCheckConfig(program);
registerDocs(program);

await program.parseAsync(process.argv);
