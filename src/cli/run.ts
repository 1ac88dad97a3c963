import type { Command } from 'commander';
import { loadConfig } from '../config/load.js';
import { ConfigError } from '../core/errors.js';
import { createLogger } from '../core/logger.js';
import { IngestNode } from '../supervisor.js';

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('start the node: broker, spool, sinks and HTTP endpoints')
    .option('-c, --config <file>', 'YAML configuration file (environment variables override it)')
    .action(async (opts: { config?: string }) => {
      process.exitCode = await run(opts.config);
    });
}

async function run(file?: string): Promise<number> {
  let loaded;
  try {
    loaded = loadConfig({ env: process.env, file });
  } catch (err) {
    if (err instanceof ConfigError) {
      // Before any port opens (ARCHITECTURE §2.5): every problem at once, in words.
      process.stderr.write(`mqtt-ingest: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  const logger = createLogger(loaded.config.LOG_LEVEL);
  for (const w of loaded.warnings) logger.warn(w);
  const node = new IngestNode(loaded.config, logger);

  let stopping: Promise<void> | undefined;
  let stopped!: () => void;
  const done = new Promise<void>((resolve) => (stopped = resolve));
  const stop = (signal: string) => {
    if (stopping) return;
    logger.info({ signal }, 'signal received');
    stopping = node.stop().finally(stopped);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  try {
    await node.start();
  } catch (err) {
    const e = err as Error & { code?: string };
    logger.fatal({ err: { message: e.message, code: e.code, cause: (e.cause as Error | undefined)?.message } }, 'start failed');
    await node.stop().catch(() => undefined);
    logger.flush();
    return 1;
  }
  await done;
  logger.flush();
  return 0;
}
