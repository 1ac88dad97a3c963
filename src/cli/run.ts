import type { Command } from 'commander';
import { loadConfig } from '../config/load.js';
import { ConfigError, IngestError, StartAbortedError, withCode } from '../core/errors.js';
import { resolveConfigSecrets } from '../config/secrets.js';
import { createLogger, type Logger } from '../core/logger.js';
import { IngestNode } from '../node.js';

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
    loaded = loadConfig({ env: process.env, file, credentialsAtRun: true });
  } catch (err) {
    if (err instanceof ConfigError) {
      // Before any port opens (ARCHITECTURE §2.5): every problem at once, in words.
      process.stderr.write(`mqtt-ingest: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  const logger = createLogger(loaded.config.LOG_LEVEL);
  routeLibraryWarnings(logger);
  for (const w of loaded.warnings) logger.warn(withCode('CONFIG_WARNING'), w);
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
  let stopFailed = false;
  let stopped!: () => void;
  const done = new Promise<void>((resolve) => (stopped = resolve));
  const stop = (signal: string) => {
    if (stopping) return;
    logger.info({ signal }, 'signal received');
    // A step of the stop that fails is logged and the exit is non-zero; it must not become an unhandled rejection.
    stopping = node
      .stop()
      .catch((err: Error) => {
        stopFailed = true;
        logger.error(withCode('STOP_FAILED', { err: { message: err.message, stack: err.stack } }), 'stop failed');
      })
      .finally(stopped);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  // A bug that escapes every handler must not leave a half-working node: log it and exit for a restart.
  // Nothing acknowledged is lost (the spool is on disk; PUBACKs follow commits).
  process.on('unhandledRejection', (reason) => {
    logger.fatal(
      withCode('UNHANDLED_REJECTION', { err: reason instanceof Error ? { message: reason.message, stack: reason.stack } : String(reason) }),
      'unhandled rejection; exiting',
    );
    logger.flush();
    process.exit(70);
  });
  // The same for an error thrown out of a callback or timer: in the JSON log rather than a bare stack on stderr.
  process.on('uncaughtException', (err) => {
    logger.fatal(withCode('UNCAUGHT_EXCEPTION', { err: { message: err.message, stack: err.stack } }), 'uncaught exception; exiting');
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
    // The line's code is the event; err.code is the failure's own (a catalogued code, or SQLite's for a bad spool file).
    const e = err as Error & { code?: string };
    logger.fatal(withCode('START_FAILED', { err: { message: e.message, code: e.code, cause: (e.cause as Error | undefined)?.message } }), 'start failed');
    await node.stop().catch(() => undefined);
    logger.flush();
    return 1;
  }
  await done;
  logger.flush();
  return fatal === undefined && !stopFailed ? 0 : 1;
}

/** Node's name for the warnings gcp-metadata emits (under google-auth-library) about its metadata-server probe. */
const METADATA_LOOKUP_WARNING = 'MetadataLookupWarning';

/**
 * Library fact (gcp-metadata 8, build/src/index.js isAvailable): when its probe of the GCE metadata server fails
 * in an unexpected way (outside Google Cloud typically "All promises were rejected"), it calls
 * process.emitWarning(…, 'MetadataLookupWarning'), which Node's default listener prints to stderr as plain text,
 * outside the JSON log, and again at every new Google client. That warning goes through the logger instead:
 * once as a warning with what it means, then at debug (the sinks already show missing credentials in
 * readiness). Every other warning still reaches the listeners that were there (Node's printer).
 */
function routeLibraryWarnings(logger: Logger): void {
  const previous = process.listeners('warning');
  process.removeAllListeners('warning');
  let told = false;
  process.on('warning', (warning: Error) => {
    if (warning.name !== METADATA_LOOKUP_WARNING) {
      for (const listener of previous) listener.call(process, warning);
      return;
    }
    const fields = withCode('GCE_METADATA_UNREACHABLE', { warning: warning.name, detail: warning.message });
    if (told) return logger.debug(fields, 'Google client library: GCE metadata server lookup failed');
    told = true;
    logger.warn(
      fields,
      "Google's client library could not reach a GCE metadata server, so no credentials come from an attached " +
        'service account (outside Google Cloud, METADATA_SERVER_DETECTION=none skips the lookup)',
    );
  });
}
