/**
 * A section: one component's part of the configuration, declared beside the component (as a connector registers
 * its spec next to its writer). It holds the component's keys in the order the docs list them, the rules across
 * them, and the defaults worked out from other values. The configuration loader (src/config/) composes the
 * sections, parses every key, fills the derived defaults, then runs every section's rules and reports every
 * problem at once. Sections depend on this toolkit only, never on the loader; a key of another section that a
 * rule reads (APP_ENV, GCP_PROJECT_ID) comes in through the rule's type.
 */
import type { z } from 'zod';

/** Where a key's value came from. A secret read from NAME_FILE counts as its layer (env or file). */
export type ConfigSource = 'default' | 'file' | 'env';

/** A section's keys: each a schema made with `key()`, so that it carries its metadata. */
export type Keys = Record<string, z.ZodType>;

/** The typed values of some keys, as they parse (keys without a default are optional). */
export type Values<K extends Keys> = z.output<z.ZodObject<K>>;

/** Whether all the named keys are valid: parsed, and not derived from a key that did not. */
export type Valid<C> = (...keys: (keyof C & string)[]) => boolean;

/** What some rules read besides the values: where each came from, the raw environment, sm:// references. */
export interface RuleContext {
  sources: Readonly<Record<string, ConfigSource>>;
  env: NodeJS.ProcessEnv;
  /** Some key is given as a Secret Manager reference (`sm://…`). */
  usesSecretManager: boolean;
  /** `run` is loading: a missing credentials file is a warning, not a problem (see LoadOptions). */
  credentialsAtRun: boolean;
}

/**
 * Rules across keys, run once every key has parsed and the derived defaults are filled. `c` holds the values
 * that parsed; each rule runs only when the keys it reads are `valid`, so one mistake is not reported twice.
 */
export type Rules<C> = (c: Partial<C>, valid: Valid<C>, problems: string[], warnings: string[], context: RuleContext) => void;

/** What a derived default may read about the machine the node loads on. */
export interface HostFacts {
  hostname: string;
}

/** Defaults worked out from other values (MQTT_CLIENT_ID from the host name and APP_ENV). */
export interface DerivedDefault<C> {
  /** The keys it fills when they are unset. */
  keys: readonly (keyof C & string)[];
  /** The keys it is worked out from: while one of them is invalid, the unset `keys` count as invalid too. */
  from: readonly (keyof C & string)[];
  /** Fills the unset `keys` of `values` (given only when every `from` key is valid). */
  fill(values: Partial<C>, host: HostFacts): void;
}

/**
 * One component's configuration. `C` is what its rules and derived defaults read: its own values and any shared
 * key they need, by type. A composed list holds sections of every shape, hence the `any` default.
 */
export interface Section<C = any> {
  keys: Keys;
  derived?: readonly DerivedDefault<C>[];
  rules?: Rules<C>;
}
