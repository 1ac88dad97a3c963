/**
 * Calls to services by the operations commands (`provision`, `smoke`), said out loud while they wait.
 *
 * A service that accepts the connection and never answers (a wrong emulator address, a proxy, a firewall that
 * swallows packets) used to leave a command silent for over a minute, and BigQuery's client retried for longer.
 * Every call goes through `ServiceCalls.call`: after 15 s it says what it still waits for and on what, then
 * again every 15 s, and it gives up at its deadline with an error naming the service and the endpoint. A
 * service that did not answer once is not asked again by the same command: the later calls fail at once.
 *
 * Whether the service can be reached at all is said sooner. A call still waiting after 2 s tries the service's
 * address with a bare TCP connection: refused, a name that does not resolve, or no connection at all is said at
 * once (`cannot reach the Pub/Sub emulator at 127.0.0.1:8085 (PUBSUB_EMULATOR_HOST) after 2 s: connection
 * refused; still trying until 14:03:07 (58 s more)`); a service that takes the connection and stays silent is
 * said at 10 s (`no answer from …`). Both come within 15 s of the command's start, its own start-up included.
 * A call that fails because its service cannot be reached (refused, unresolved, unreachable, after the
 * library's own retries) counts as an unanswered one: that service is not asked again either.
 */

import { IngestError } from '../core/errors.js';
import { probeTcp, unreachableWords, type Reach } from './reach.js';

/**
 * How often a waiting command says so: 15 s. MQTTINGEST_WAIT_NOTICE_MS sets it in milliseconds, for the tests
 * only (so that they see several notices within a short --timeout); it is no configuration key.
 */
export function waitNoticeMs(env: NodeJS.ProcessEnv): number {
  const ms = Number(env.MQTTINGEST_WAIT_NOTICE_MS);
  return Number.isInteger(ms) && ms > 0 ? ms : 15_000;
}

/** A call still waiting after this long has its service's address tried with a TCP connection. */
export const REACH_PROBE_MS = 2_000;
/**
 * The latest a waiting call says whether its service answers: 10 s, so that with the command's start-up the
 * line comes within 15 s of the operator pressing Enter. Not configurable: the tests wait for the real one.
 */
export const REACH_NOTICE_MS = 10_000;

/** A service and where it was asked, e.g. Pub/Sub at pubsub.googleapis.com. */
export interface Service {
  name: string;
  /** Host (and port) or URL of the endpoint. */
  at: string;
  /** The setting that chose the endpoint, named in the "cannot reach" line: `PUBSUB_EMULATOR_HOST`, `--broker`. */
  from?: string;
  /** The port to try when `at` names none and has no scheme that implies one (443 otherwise). */
  port?: number;
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

/** A call under way: to what, for what, since when (epoch ms). */
export interface ActiveCall {
  service: Service;
  what: string;
  started: number;
}

export interface ServiceCallsOptions {
  /** Where "still waiting" and "cannot reach" lines go. */
  say: (line: string) => void;
  noticeMs: number;
  /** How long one call may take before it fails. */
  deadlineMs: number;
  /** The proxy variable set in the environment (`proxyVariable`): the address is then not tried directly. */
  proxy?: string;
  /** How a service's address is tried (a TCP connection); tests give their own. */
  reach?: (service: Service, timeoutMs: number, signal: AbortSignal) => Promise<Reach>;
  /** Told of each call as it starts, and with `undefined` as it ends (for a live progress line). */
  onCall?: (call: ActiveCall | undefined) => void;
  /** REACH_PROBE_MS and REACH_NOTICE_MS, for the unit tests' fake clocks. */
  probeMs?: number;
  reachMs?: number;
}

/** A local clock time, as an operator compares it with the terminal's: 14:03:07. */
function clockTime(ms: number): string {
  return new Date(ms).toTimeString().slice(0, 8);
}

export class ServiceCalls {
  private readonly silent = new Map<string, ServiceTimeoutError>();

  constructor(private readonly opts: ServiceCallsOptions) {}

  /**
   * Runs `fn`, a call to `service` described by `what` (e.g. `projects/p/topics/t: get`). Says within 10 s
   * when the service cannot be reached or does not answer, and every `noticeMs` that it still waits; fails
   * with a ServiceTimeoutError after `deadlineMs` (the call's own deadline when given, e.g. what is left of a
   * smoke test's time), or as soon as the library gives up reaching the service.
   */
  async call<T>(service: Service, what: string, fn: () => Promise<T>, deadlineMs = this.opts.deadlineMs): Promise<T> {
    const label = serviceLabel(service);
    const earlier = this.silent.get(label);
    if (earlier) throw new ServiceTimeoutError(service, what, `not asked: ${label} did not answer an earlier call (${earlier.what})`);
    const started = Date.now();
    this.opts.onCall?.({ service, what, started });
    // A function that throws at once fails the call like one that rejects.
    const call = (async () => fn())();
    let ticks = 0;
    const notice = setInterval(() => {
      ticks += 1;
      this.opts.say(`still waiting for ${label} (${what}) after ${seconds(ticks * this.opts.noticeMs)}…`);
    }, this.opts.noticeMs);
    const reach = this.watchReach(service, what, started, deadlineMs);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const why = reach.unreachable();
        reject(new ServiceTimeoutError(service, what, `${label} did not answer within ${seconds(deadlineMs)} (${what})${why ? `: ${why}` : ''}`));
      }, deadlineMs);
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
      const unreachable = unreachableWords(err);
      if (unreachable !== undefined) {
        const words = unreachable.replace(/\.?\s*Resolution note:\s*$/, '');
        const failure = new ServiceTimeoutError(service, what, `cannot reach ${withOrigin(service)}: ${words} (${what})`);
        this.silent.set(label, failure);
        throw failure;
      }
      throw err;
    } finally {
      clearInterval(notice);
      clearTimeout(timer);
      reach.stop();
      this.opts.onCall?.(undefined);
      // The losing call may still fail later; its error is not ours to report any more.
      call.catch(() => undefined);
    }
  }

  /**
   * The "cannot reach" line of one call: after REACH_PROBE_MS the service's address is tried, and a failure
   * said at once; a service that took the connection is said to be silent at REACH_NOTICE_MS. Once per call.
   * `unreachable` is why the address could not be reached, once the try found out.
   */
  private watchReach(service: Service, what: string, started: number, deadlineMs: number): { stop(): void; unreachable(): string | undefined } {
    const probeMs = this.opts.probeMs ?? REACH_PROBE_MS;
    const reachMs = this.opts.reachMs ?? REACH_NOTICE_MS;
    const abort = new AbortController();
    let unreachable: string | undefined;
    /** The try's outcome: under way until it connects, fails, or runs out of time (just before REACH_NOTICE_MS). */
    let tried: 'no' | 'trying' | 'reached' | 'failed' = 'no';
    const tryMs = Math.max(1, reachMs - probeMs - 250);
    let told = false;
    const tell = (line: string) => {
      if (told || abort.signal.aborted) return;
      told = true;
      const end = started + deadlineMs;
      this.opts.say(`${line}; still trying until ${clockTime(end)} (${seconds(Math.max(0, end - Date.now()))} more), then gives up`);
    };
    const where = withOrigin(service);
    const reach = this.opts.reach ?? ((s: Service, ms: number, signal: AbortSignal) => probeTcp(s, ms, signal));
    const probe = this.opts.proxy
      ? undefined
      : setTimeout(() => {
          tried = 'trying';
          void reach(service, tryMs, abort.signal).then((r) => {
            tried = r.reached ? 'reached' : 'failed';
            if (r.reached) return;
            unreachable = r.why;
            tell(`cannot reach ${where} after ${seconds(Date.now() - started)}: ${r.why}`);
          });
        }, probeMs);
    const silent = setTimeout(() => {
      if (tried === 'trying') {
        // The try is late itself (a loaded machine): no connection so far is what is known.
        unreachable = `no TCP connection within ${seconds(tryMs)}`;
        tell(`cannot reach ${where} after ${seconds(reachMs)}: ${unreachable}`);
        return;
      }
      const how = this.opts.proxy ? `through the proxy in ${this.opts.proxy} it has not answered` : 'it takes connections but has not answered';
      tell(`no answer from ${where} after ${seconds(reachMs)}: ${how} (${what})`);
    }, reachMs);
    return {
      stop: () => {
        clearTimeout(probe);
        clearTimeout(silent);
        abort.abort();
      },
      unreachable: () => unreachable,
    };
  }
}

/** `the Pub/Sub emulator at 127.0.0.1:8085 (PUBSUB_EMULATOR_HOST)`: the service, its address and what chose it. */
export function withOrigin(s: Service): string {
  return `${serviceLabel(s)}${s.from ? ` (${s.from})` : ''}`;
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
