import { expect } from 'vitest';
import { SparkplugDecodeError } from '../../src/sparkplug/values.js';

/** The message of the SparkplugDecodeError `f` throws; fails the test when it throws nothing or something else. */
export function refusal(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(SparkplugDecodeError);
    return (err as Error).message;
  }
  throw new Error('did not throw');
}
