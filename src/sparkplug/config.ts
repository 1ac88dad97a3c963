/**
 * The Sparkplug host's configuration: whether the node asks edge nodes for a rebirth when it cannot resolve their
 * data, and how long a message waits for that birth. Read only by `decode: sparkplug` routes (docs/routing.md).
 */
import { boolean, wholeNumber } from '../core/settings/fields.js';
import { key } from '../core/settings/key.js';
import type { Section, Values } from '../core/settings/section.js';

const sparkplugKeys = {
  SPARKPLUG_REBIRTH: key(boolean(), {
    default: 'off',
    description:
      'With `on` the node acts as the Sparkplug primary host for rebirths: it commands edge nodes. Data of a ' +
      '`decode: sparkplug` route that no birth resolves (an unknown alias, data before any birth) makes it publish ' +
      'an NCMD `Node Control/Rebirth` to that edge node (at most once per edge node every 30 s) and hold the ' +
      'message for the new birth, at most `SPARKPLUG_BIRTH_WAIT_SECONDS`. `off`: the node only listens; such metrics ' +
      'stay unresolved.',
  }),
  SPARKPLUG_BIRTH_WAIT_SECONDS: key(wholeNumber(1, 3600), {
    default: '30',
    description:
      'With `SPARKPLUG_REBIRTH` on: how long a message waits for the birth a rebirth request asked for; then it is ' +
      'delivered with what the births known resolve (the rest unresolved).',
  }),
};

export type SparkplugConfig = Values<typeof sparkplugKeys>;

export const sparkplugSection = { keys: sparkplugKeys } satisfies Section<SparkplugConfig>;

/** What the host takes of the configuration (SparkplugHostOptions). */
export function sparkplugHostSettings(c: SparkplugConfig): { rebirth: boolean; birthWaitMs: number } {
  return { rebirth: c.SPARKPLUG_REBIRTH, birthWaitMs: c.SPARKPLUG_BIRTH_WAIT_SECONDS * 1000 };
}
