/**
 * The node's errors: the classes thrown, each with a code of the catalogue (error-catalogue.ts, re-exported here
 * with `withCode` for log lines), `cause` and context. Import both from this file.
 */
import type { ErrorCode } from './error-catalogue.js';

export * from './error-catalogue.js';

export class IngestError extends Error {
  readonly code: ErrorCode;
  readonly context: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, options: { cause?: unknown; context?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.context = options.context ?? {};
  }
}

/** A configuration with one or more problems; `problems` lists each, naming the variable. */
export class ConfigError extends IngestError {
  readonly problems: string[];
  constructor(problems: string[]) {
    super('CONFIG_INVALID', `invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`, {
      context: { problems },
    });
    this.problems = problems;
  }
}

export class SpoolFullError extends IngestError {
  constructor(usedBytes: number, maxBytes: number) {
    super('SPOOL_FULL', `spool is full (${usedBytes} of ${maxBytes} bytes)`, { context: { usedBytes, maxBytes } });
  }
}

export class SpoolVersionError extends IngestError {
  constructor(file: string, found: number, expected: number) {
    super(
      'SPOOL_VERSION',
      `the spool ${file} has format version ${found}, this node reads version ${expected}: start the version that wrote it to drain it, or move the file aside`,
      { context: { file, found, expected } },
    );
  }
}

/**
 * The spool holds less than the node committed to it (a deleted or truncated write-ahead log, an emptied or
 * replaced spool.db), or cannot be read: the node refuses to start rather than run on without the messages
 * it acknowledged. `context.file` names the file; the message says what is missing.
 */
export class SpoolDamagedError extends IngestError {
  constructor(message: string, context: Record<string, unknown>) {
    super('SPOOL_DAMAGED', message, { context });
  }
}

export class SpoolClosedError extends IngestError {
  constructor() {
    super('SPOOL_CLOSED', 'spool is closed');
  }
}

export class BrokerError extends IngestError {}

/** start() gave up because stop() was called (SIGTERM during start-up): not a failure. */
export class StartAbortedError extends IngestError {
  constructor() {
    super('START_ABORTED', 'start-up interrupted by a stop request');
  }
}
