/**
 * The configuration section of the node's own broker (keys.ts): the defaults that follow APP_ENV and the rules
 * across these keys are the broker-security policy's (policy.ts); both broker modes build their listeners from it.
 */
import type { Section } from '../../core/settings/section.js';
import { ownBrokerKeys, type BrokerSecurityInput } from './keys.js';
import { applyBrokerSecurityDefaults, checkBrokerSecurity } from './policy.js';

export type { BrokerSecurityInput, OwnBrokerConfig } from './keys.js';

export const ownBrokerSection = {
  keys: ownBrokerKeys,
  derived: [{ keys: ['MQTT_PLAINTEXT', 'MQTT_ALLOW_ANONYMOUS'], from: ['APP_ENV'], fill: applyBrokerSecurityDefaults }],
  rules: checkBrokerSecurity,
} satisfies Section<BrokerSecurityInput>;
