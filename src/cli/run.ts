import type { Command } from 'commander';
import { loadConfig } from '../config/load.js';
import { ConfigError, IngestError } from '../core/errors.js';
import { resolveConfigSecrets } from '../config/secrets.js';
import { createLogger } from '../core/logger.js';
import { IngestNode, StartAbortedError } from '../supervisor.js';

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
  // sm:// references (App Engine flex cannot mount secret files) are fetched now, before any port opens.
  try {
    const resolved = await resolveConfigSecrets(loaded, { env: process.env, file, logger });
    loaded = resolved.loaded;
    process.once('exit', resolved.cleanup);
  } catch (err) {
    if (err instanceof IngestError) {
      process.stderr.write(`mqtt-ingest: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
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
  // A bug that escapes every handler must not leave a half-working node: log it and exit for a restart.
  // Nothing acknowledged is lost (the spool is on disk; PUBACKs follow commits).
  process.on('unhandledRejection', (reason) => {
    logger.fatal({ err: reason instanceof Error ? { message: reason.message, stack: reason.stack } : String(reason) }, 'unhandled rejection; exiting');
    logger.flush();
    process.exit(70);
  });
  process.on('SIGINT', () => stop('SIGINT'));
  // SIGHUP reloads the broker's password file, ACL file and certificates (without a handler Node would exit).
  process.on('SIGHUP', () => {
    logger.info({ signal: 'SIGHUP' }, 'signal received: reloading the broker users, ACL and certificates');
    node.reload().catch(() => undefined); // the broker logged what was wrong; the old settings stay in force
  });
  // A component that cannot recover (a broker crash loop): stop cleanly, then exit non-zero for the platform.
  let fatal: string | undefined;
  void node.whenFatal().then((reason) => {
    fatal = reason;
    stop('fatal');
  });

  try {
    await node.start();
  } catch (err) {
    if (err instanceof StartAbortedError) {
      // SIGTERM during start-up: the stop in progress closes what was started; a clean exit.
      await done;
      logger.flush();
      return 0;
    }
    const e = err as Error & { code?: string };
    logger.fatal({ err: { message: e.message, code: e.code, cause: (e.cause as Error | undefined)?.message } }, 'start failed');
    await node.stop().catch(() => undefined);
    logger.flush();
    return 1;
  }
  await done;
  logger.flush();
  return fatal === undefined ? 0 : 1;
}
