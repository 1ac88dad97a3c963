/**
 * Exponential backoff with full jitter, defined once and used by every sink, the broker supervisor and
 * the subscriber's reconnects (ARCHITECTURE §5, after Redpanda Connect's retries.go).
 * Delay for attempt n (1-based): random in [base/2, min(cap, base * 2^(n-1))].
 * The cap (30 s by default) keeps a recovered sink in use again quickly.
 */
export interface BackoffOptions {
  baseMs: number;
  capMs: number;
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  constructor(private readonly opts: BackoffOptions) {}

  /** The delay before the next attempt; each call counts one more failure. */
  next(): number {
    this.attempt += 1;
    return backoffDelay(this.attempt, this.opts);
  }

  reset(): void {
    this.attempt = 0;
  }

  get failures(): number {
    return this.attempt;
  }
}

export function backoffDelay(attempt: number, { baseMs, capMs, random = Math.random }: BackoffOptions): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt - 1, 30));
  const floor = Math.min(ceiling, baseMs / 2);
  return Math.round(floor + random() * (ceiling - floor));
}
