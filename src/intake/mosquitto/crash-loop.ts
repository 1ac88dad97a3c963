import { BrokerError } from '../../core/errors.js';

/**
 * Tells a broker that keeps failing from one that failed once: `record()` each unexpected death or failed
 * restart; after `maxFailures` within `windowMs` mosquitto.ts stops restarting and the node gives up
 * (liveness fails, `run` exits non-zero), so the platform restarts the container instead of leaving a node
 * up without a broker. A broker that stays up longer than the window starts with a clean slate.
 */
export class CrashLoop {
  private times: number[] = [];

  constructor(
    readonly maxFailures = 5,
    readonly windowMs = 120_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Records a failure; true when it makes `maxFailures` within the window. */
  record(): boolean {
    const now = this.now();
    this.times = [...this.times.filter((t) => now - t < this.windowMs), now];
    return this.times.length >= this.maxFailures;
  }

  get failures(): number {
    return this.times.length;
  }

  /** The BROKER_CRASH_LOOP error once record() said so: the last failure's reason and the broker's last lines. */
  error(reason: string, lastLines: string[]): BrokerError {
    const { failures, windowMs } = this;
    return new BrokerError(
      'BROKER_CRASH_LOOP',
      `mosquitto failed ${failures} times within ${Math.round(windowMs / 1000)} s (last: ${reason}); giving up so that the platform restarts the node`,
      { context: { failures, windowMs, lastLines: [...lastLines] } },
    );
  }
}
