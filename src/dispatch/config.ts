/** The dispatcher's configuration: the retry backoff of every sink and how long a shutdown waits for batches. */
import { wholeNumber } from '../core/settings/fields.js';
import { key } from '../core/settings/key.js';
import type { Section, Values } from '../core/settings/section.js';
import type { RunnerOptions } from './sink-runner.js';

const dispatchKeys = {
  RETRY_INITIAL_DELAY_MS: key(wholeNumber(1, 600_000), {
    default: '500',
    description: 'First delay before a failed delivery is retried; it doubles on each failure.',
  }),
  RETRY_MAX_DELAY_MS: key(wholeNumber(1, 3_600_000), {
    default: '30000',
    description: 'Longest delay between delivery retries; at least `RETRY_INITIAL_DELAY_MS`.',
  }),
  SHUTDOWN_TIMEOUT_MS: key(wholeNumber(100, 60_000), {
    default: '8000',
    description: 'How long SIGTERM waits for in-flight batches before the node closes the spool and exits.',
  }),
};

export type DispatchConfig = Values<typeof dispatchKeys>;

export const dispatchSection = {
  keys: dispatchKeys,
  rules(c, valid, problems) {
    if (valid('RETRY_INITIAL_DELAY_MS', 'RETRY_MAX_DELAY_MS') && c.RETRY_MAX_DELAY_MS! < c.RETRY_INITIAL_DELAY_MS!) {
      problems.push(
        `RETRY_MAX_DELAY_MS: must be at least RETRY_INITIAL_DELAY_MS (${c.RETRY_INITIAL_DELAY_MS}), got ${c.RETRY_MAX_DELAY_MS}`,
      );
    }
  },
} satisfies Section<DispatchConfig>;

/** Each SinkRunner's backoff (the Dispatcher passes these to every runner). */
export function runnerOptions(c: DispatchConfig): RunnerOptions {
  return { retryBaseMs: c.RETRY_INITIAL_DELAY_MS, retryCapMs: c.RETRY_MAX_DELAY_MS };
}
