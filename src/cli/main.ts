import { Command } from 'commander';
import { registerRun } from './run.js';
import { registerCheckConfig } from './check-config.js';
import { registerDocs } from './docs.js';
import { registerPasswd } from './passwd.js';
import { registerDlq } from './dlq.js';
import { registerDeploy } from './deploy.js';
import { registerSmoke } from './smoke.js';
import { registerProvision } from './provision.js';
import { registerRoutes } from './routes.js';
import { registerSimulate } from './simulate.js';
import { registerLeave } from './leave.js';
import { nodeVersion } from '../core/version.js';

const program = new Command();
program
  .name('mqtt-ingest')
  .description('MQTT ingestion node: broker, durable spool, Pub/Sub, BigQuery and file sinks')
  .version(nodeVersion(), '-V, --version', 'print the version of mqtt-ingest and exit')
  .showHelpAfterError();

registerRun(program);
registerCheckConfig(program);
registerDocs(program);
registerPasswd(program);
registerDlq(program);
registerDeploy(program);
registerSmoke(program);
registerProvision(program);
registerRoutes(program);
registerSimulate(program);
registerLeave(program);

await program.parseAsync(process.argv);
