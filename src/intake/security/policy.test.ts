import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { environmentSection } from '../../core/settings/node.js';
import { httpSection } from '../../http/config.js';
import { intakeSection } from '../config.js';
import { ownBrokerSection, type BrokerSecurityInput } from './config.js';
import {
  DEFAULT_EMBEDDED_LIMITS,
  applyBrokerSecurityDefaults,
  brokerSecurity,
  checkBrokerSecurity,
  insecureFindings,
  mosquittoWebSocketProblem,
} from './policy.js';

// The policy on its own, with values parsed by the sections' own keys; src/config/broker-security.test.ts checks
// the same rules through the configuration loader, with real certificates, password and ACL files.

/** What the policy reads, parsed from environment strings as the loader does, with the APP_ENV defaults filled. */
function values(env: Record<string, string> = {}): BrokerSecurityInput {
  const keys = { ...environmentSection.keys, ...intakeSection.keys, ...ownBrokerSection.keys, ...httpSection.keys };
  const v = z.object(keys).parse(env) as Partial<BrokerSecurityInput>;
  applyBrokerSecurityDefaults(v);
  v.MQTT_CLIENT_ID ??= 'mqtt-ingest-h-dev';
  return v as BrokerSecurityInput;
}

function check(env: Record<string, string>, valid: (...keys: string[]) => boolean = () => true) {
  const problems: string[] = [];
  const warnings: string[] = [];
  checkBrokerSecurity(values(env), valid, problems, warnings);
  return { problems, warnings };
}

describe('broker security defaults', () => {
  it('open the plaintext listener and anonymous access in dev only, and keep what was given', () => {
    expect(values()).toMatchObject({ MQTT_PLAINTEXT: true, MQTT_ALLOW_ANONYMOUS: true });
    expect(values({ APP_ENV: 'prd' })).toMatchObject({ MQTT_PLAINTEXT: false, MQTT_ALLOW_ANONYMOUS: false });
    expect(values({ APP_ENV: 'prd', MQTT_PLAINTEXT: 'on' })).toMatchObject({ MQTT_PLAINTEXT: true, MQTT_ALLOW_ANONYMOUS: false });
    expect(values({ MQTT_ALLOW_ANONYMOUS: 'no' })).toMatchObject({ MQTT_PLAINTEXT: true, MQTT_ALLOW_ANONYMOUS: false });
  });

  it('give the embedded limits their documented defaults', () => {
    expect(brokerSecurity(values()).embeddedLimits).toEqual(DEFAULT_EMBEDDED_LIMITS);
  });
});

describe('brokerSecurity', () => {
  it('builds the listeners both broker modes use, with absolute file paths', () => {
    const s = brokerSecurity(
      values({ MQTT_PLAINTEXT: 'off', MQTT_TLS_CERT: 'tls/c.pem', MQTT_TLS_KEY: 'tls/k.pem', MQTT_WS_PORT: '9001', MQTT_AUTH_FILE: 'passwd' }),
    );
    expect(s).toMatchObject({
      host: '0.0.0.0',
      tls: { port: 8883, certFile: path.resolve('tls/c.pem'), keyFile: path.resolve('tls/k.pem'), requireClientCert: false },
      wsPort: 9001,
      authFile: path.resolve('passwd'),
      identityFromCert: false,
      maxPacketBytes: 1024 * 1024,
    });
    expect(s.plaintextPort).toBeUndefined();
    expect(brokerSecurity(values({ MQTT_PORT: '1884' }))).toMatchObject({ plaintextPort: 1884, allowAnonymous: true });
  });
});

describe('checkBrokerSecurity', () => {
  it('in pprd with only defaults, says no client could connect or authenticate, and that TLS is missing', () => {
    expect(check({ APP_ENV: 'pprd' }).problems).toEqual([
      'MQTT_PLAINTEXT: is off and no other listener is configured (MQTT_TLS_CERT and MQTT_TLS_KEY, or MQTT_WS_PORT): no client could connect',
      'MQTT_ALLOW_ANONYMOUS: is false but no client could authenticate; set MQTT_AUTH_FILE (passwords) or MQTT_TLS_REQUIRE_CLIENT_CERT with MQTT_TLS_CA (certificates)',
      'MQTT_TLS_CERT: TLS is not configured in pprd; set MQTT_TLS_CERT and MQTT_TLS_KEY, or set MQTT_ALLOW_INSECURE=true to accept the risk',
    ]);
  });

  it('turns the prd findings into warnings with MQTT_ALLOW_INSECURE', () => {
    const env = { APP_ENV: 'prd', MQTT_PLAINTEXT: 'on', MQTT_ALLOW_ANONYMOUS: 'true', MQTT_ALLOW_INSECURE: 'true' };
    const { problems, warnings } = check(env);
    expect(problems).toEqual([]);
    expect(warnings).toHaveLength(3);
    expect(warnings.every((w) => w.endsWith('(allowed by MQTT_ALLOW_INSECURE=true)'))).toBe(true);
    expect(insecureFindings(values(env))).toHaveLength(3);
    expect(insecureFindings(values())).toEqual([]);
  });

  it('gives each listener its own port, the HTTP port included', () => {
    expect(check({ MQTT_WS_PORT: '8080' }).problems).toEqual(['PORT: 8080 is also MQTT_WS_PORT; each listener needs its own port']);
    expect(check({ MQTT_WS_PORT: '8080', PORT: '0' }).problems).toEqual([]);
  });

  it('judges nothing while the broker keys are invalid: their own problem is reported once', () => {
    expect(check({ APP_ENV: 'pprd' }, (...keys) => !keys.includes('MQTT_BROKER_MODE')).problems).toEqual([]);
  });

  it('with an external broker, ignores the own broker keys and refuses credentials in clear outside dev', () => {
    expect(check({ MQTT_BROKER: 'mqtts://b.example', MQTT_ACL_FILE: '/nope' }).warnings).toEqual([
      'MQTT_ACL_FILE: ignored: the node subscribes to the external broker MQTT_BROKER and starts none of its own',
    ]);
    expect(check({ APP_ENV: 'prd', MQTT_BROKER: 'mqtt://b.example', MQTT_USERNAME: 'u' }).problems).toEqual([
      "MQTT_BROKER: mqtt:// is plaintext, so the subscriber's credentials (MQTT_USERNAME) would cross the network in clear in prd; " +
        'use mqtts:// or wss://, or set MQTT_ALLOW_INSECURE=true to accept the risk',
    ]);
  });

  it('refuses certificate identities over WebSockets in mosquitto mode only', () => {
    const env = { MQTT_TLS_REQUIRE_CLIENT_CERT: 'on', MQTT_WS_PORT: '9001' };
    expect(mosquittoWebSocketProblem(values(env))).toMatch(/^MQTT_WS_PORT: with MQTT_TLS_REQUIRE_CLIENT_CERT and no MQTT_AUTH_FILE/);
    expect(mosquittoWebSocketProblem(values({ ...env, MQTT_AUTH_FILE: 'passwd' }))).toBeUndefined();
  });
});
