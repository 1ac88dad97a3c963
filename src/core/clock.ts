/** Time, passed in so tests control it (ARCHITECTURE §5). */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** Resolves after `ms`, or at once when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Milliseconds on a monotonic clock, for intervals, deadlines and timeouts: unlike Date.now() it never steps
 * back or forward when the wall clock is set (NTP, an operator, a VM resume). Wall-clock time is for timestamps.
 */
export function monotonicMs(): number {
  return performance.now();
}

/**
 * Both clocks, for code that stamps times and measures intervals (the sink runner): `now`, wall-clock
 * milliseconds for timestamps only; `monotonic`, for every deadline and age.
 */
export interface DualClock extends Clock {
  monotonic(): number;
}

export const systemDualClock: DualClock = { now: () => Date.now(), monotonic: monotonicMs };
