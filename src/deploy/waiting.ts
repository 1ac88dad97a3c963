/**
 * Calls to services by the operations commands (`provision`, `smoke`), said out loud while they wait.
 *
 * A service that accepts the connection and never answers (a wrong emulator address, a proxy, a firewall that
 * swallows packets) used to leave a command silent for over a minute, and BigQuery's client retried for longer.
 * Every call goes through `ServiceCalls.call`: after 15 s it says what it still waits for and on what, then
 * again every 15 s, and it gives up at its deadline with an error naming the service and the endpoint. A
 * service that did not answer once is not asked again by the same command: the later calls fail at once.
 */

import { IngestError } from '../core/errors.js';

/**
 * How often a waiting command says so: 15 s. MQTTINGEST_WAIT_NOTICE_MS sets it in milliseconds, for the tests
 * only (so that they see several notices within a short --timeout); it is no configuration key.
 */
export function waitNoticeMs(env: NodeJS.ProcessEnv): number {
  const ms = Number(env.MQTTINGEST_WAIT_NOTICE_MS);
  return Number.isInteger(ms) && ms > 0 ? ms : 15_000;
}

/** A service and where it was asked, e.g. Pub/Sub at pubsub.googleapis.com. */
export interface Service {
  name: string;
  /** Host (and port) or URL of the endpoint. */
  at: string;
}

export function serviceLabel(s: Service): string {
  return `${s.name} at ${s.at}`;
}

/** 15000 → "15 s", 2940 → "2.9 s". */
function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

/** A service that did not answer a call in time (or did not answer an earlier call of this command). */
export class ServiceTimeoutError extends IngestError {
  constructor(
    readonly service: Service,
    readonly what: string,
    message: string,
  ) {
    super('SERVICE_TIMEOUT', message, { context: { service, what } });
  }
}

/** gRPC DEADLINE_EXCEEDED from the client library: the service did not answer within the library's own deadline. */
function isLibraryDeadline(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 4;
}

/** Calls this process gave up on; their requests may still hold sockets open (see `endCommand`). */
let abandonedCalls = 0;

export interface ServiceCallsOptions {
  /** Where "still waiting" lines go. */
  say: (line: string) => void;
  noticeMs: number;
  /** How long one call may take before it fails. */
  deadlineMs: number;
}

export class ServiceCalls {
  private readonly silent = new Map<string, ServiceTimeoutError>();

  constructor(private readonly opts: ServiceCallsOptions) {}

  /**
   * Runs `fn`, a call to `service` described by `what` (e.g. `projects/p/topics/t: get`). Says every
   * `noticeMs` that it still waits; fails with a ServiceTimeoutError after `deadlineMs` (the call's own
   * deadline when given, e.g. what is left of a smoke test's time).
   */
  async call<T>(service: Service, what: string, fn: () => Promise<T>, deadlineMs = this.opts.deadlineMs): Promise<T> {
    const label = serviceLabel(service);
    const earlier = this.silent.get(label);
    if (earlier) throw new ServiceTimeoutError(service, what, `not asked: ${label} did not answer an earlier call (${earlier.what})`);
    const started = Date.now();
    // A function that throws at once fails the call like one that rejects.
    const call = (async () => fn())();
    let ticks = 0;
    const notice = setInterval(() => {
      ticks += 1;
      this.opts.say(`still waiting for ${label} (${what}) after ${seconds(ticks * this.opts.noticeMs)}…`);
    }, this.opts.noticeMs);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ServiceTimeoutError(service, what, `${label} did not answer within ${seconds(deadlineMs)} (${what})`)), deadlineMs);
    });
    try {
      return await Promise.race([call, deadline]);
    } catch (err) {
      if (err instanceof ServiceTimeoutError) {
        abandonedCalls += 1;
        this.silent.set(label, err);
        throw err;
      }
      if (isLibraryDeadline(err)) {
        const words = ((err as Error).message ?? '').split('\n')[0];
        const failure = new ServiceTimeoutError(service, what, `${label} did not answer within ${Math.round((Date.now() - started) / 1000)} s (${what}): ${words}`);
        this.silent.set(label, failure);
        throw failure;
      }
      throw err;
    } finally {
      clearInterval(notice);
      clearTimeout(timer);
      // The losing call may still fail later; its error is not ours to report any more.
      call.catch(() => undefined);
    }
  }
}

/**
 * Ends a command with `code`. A call that never answered cannot be cancelled through the client libraries, and
 * its socket would keep the process alive until the library's own timeouts and retries run out (minutes for
 * BigQuery): so when this process gave up on a call, it exits once its output is written.
 */
export function endCommand(code: number): void {
  process.exitCode = code;
  if (abandonedCalls === 0) return;
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}
