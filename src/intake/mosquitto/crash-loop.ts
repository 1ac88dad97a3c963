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
}
