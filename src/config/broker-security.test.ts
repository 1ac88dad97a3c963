import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasOpenssl, makePki, type TestPki } from '../../test/helpers/certs.js';
import { serviceAvailable } from '../../test/helpers/skip.js';
import { checkConfig } from '../cli/check-config.js';
import { ConfigError } from '../core/errors.js';
import { brokerSecurity, insecureFindings } from '../intake/security/policy.js';
import { hashPassword } from '../intake/security/passwd-file.js';
import { loadConfig } from './load.js';

const run = serviceAvailable('openssl', hasOpenssl(), 'apt-get install openssl');

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig({ env, hostname: 'h' });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  return [];
}

describe('broker security defaults', () => {
  it('opens the plaintext listener and anonymous access in dev only', () => {
    expect(loadConfig({ env: {}, hostname: 'h' }).config).toMatchObject({ MQTT_PLAINTEXT: true, MQTT_ALLOW_ANONYMOUS: true });
    const prd = loadConfig({ env: { APP_ENV: 'prd', MQTT_BROKER: 'mqtts://b.example' }, hostname: 'h' });
    expect(prd.config).toMatchObject({ MQTT_PLAINTEXT: false, MQTT_ALLOW_ANONYMOUS: false });
    expect(prd.sources.MQTT_PLAINTEXT).toBe('default');
  });

  it('takes the given values over the defaults', () => {
    const { config } = loadConfig({ env: { MQTT_PLAINTEXT: 'on', MQTT_ALLOW_ANONYMOUS: 'no', MQTT_WS_PORT: '9001', MQTT_BROKER: 'mqtt://b.example' }, hostname: 'h' });
    expect(config).toMatchObject({ MQTT_PLAINTEXT: true, MQTT_ALLOW_ANONYMOUS: false, MQTT_WS_PORT: 9001 });
    expect(loadConfig({ env: { APP_ENV: 'prd', MQTT_BROKER: 'mqtt://b.example', MQTT_PLAINTEXT: 'on' }, hostname: 'h' }).config.MQTT_PLAINTEXT).toBe(true);
  });
});

describe.runIf(run)('broker security rules', () => {
  let pki: TestPki;
  let authFile: string;
  let aclFile: string;
  beforeAll(() => {
    pki = makePki();
    authFile = path.join(pki.dir, 'passwd');
    fs.writeFileSync(authFile, `alice:${hashPassword('pw')}\n`);
    aclFile = path.join(pki.dir, 'acl');
    fs.writeFileSync(aclFile, 'user alice\ntopic write sensors/#\n');
  });
  afterAll(() => pki?.cleanup());

  const tls = () => ({ MQTT_TLS_CERT: pki.serverCert, MQTT_TLS_KEY: pki.serverKey });

  it('in prd, names each insecure part at once: plaintext, no TLS, anonymous access', () => {
    expect(problems({ APP_ENV: 'prd', MQTT_PLAINTEXT: 'on', MQTT_ALLOW_ANONYMOUS: 'true' })).toEqual([
      'MQTT_PLAINTEXT: the plaintext listener on MQTT_PORT (1883) is on in prd; set MQTT_PLAINTEXT=off, or set MQTT_ALLOW_INSECURE=true to accept the risk',
      'MQTT_TLS_CERT: TLS is not configured in prd; set MQTT_TLS_CERT and MQTT_TLS_KEY, or set MQTT_ALLOW_INSECURE=true to accept the risk',
      'MQTT_ALLOW_ANONYMOUS: anonymous access is allowed in prd; set MQTT_ALLOW_ANONYMOUS=false and MQTT_AUTH_FILE or client certificates, or set MQTT_ALLOW_INSECURE=true to accept the risk',
    ]);
  });

  it('in pprd with only defaults, says no client could connect or authenticate, and that TLS is missing', () => {
    expect(problems({ APP_ENV: 'pprd' })).toEqual([
      'MQTT_PLAINTEXT: is off and no other listener is configured (MQTT_TLS_CERT and MQTT_TLS_KEY, or MQTT_WS_PORT): no client could connect',
      'MQTT_ALLOW_ANONYMOUS: is false but no client could authenticate; set MQTT_AUTH_FILE (passwords) or MQTT_TLS_REQUIRE_CLIENT_CERT with MQTT_TLS_CA (certificates)',
      'MQTT_TLS_CERT: TLS is not configured in pprd; set MQTT_TLS_CERT and MQTT_TLS_KEY, or set MQTT_ALLOW_INSECURE=true to accept the risk',
    ]);
  });

  it('accepts prd with TLS and passwords, or with mTLS and no password file', () => {
    expect(problems({ APP_ENV: 'prd', ...tls(), MQTT_AUTH_FILE: authFile, MQTT_ACL_FILE: aclFile })).toEqual([]);
    const mtls = { APP_ENV: 'prd', ...tls(), MQTT_TLS_CA: pki.caCert, MQTT_TLS_REQUIRE_CLIENT_CERT: 'true' };
    expect(problems(mtls)).toEqual([]);
    const s = brokerSecurity(loadConfig({ env: mtls, hostname: 'h' }).config);
    expect(s).toMatchObject({ identityFromCert: true, allowAnonymous: false, tls: { port: 8883, requireClientCert: true } });
    expect(s.plaintextPort).toBeUndefined();
  });

  it('with MQTT_ALLOW_INSECURE, turns the prd findings into warnings that readiness shows too', () => {
    // With a cloud sink: prd without one earns a warning of its own (no durable destination).
    const env = { APP_ENV: 'prd', MQTT_PLAINTEXT: 'on', MQTT_ALLOW_ANONYMOUS: 'true', MQTT_ALLOW_INSECURE: 'true', GCP_PROJECT_ID: 'p', PUBSUB_TOPIC: 'topic-1' };
    const { config, warnings } = loadConfig({ env, hostname: 'h' });
    expect(warnings).toHaveLength(3);
    expect(warnings.every((w) => w.endsWith('(allowed by MQTT_ALLOW_INSECURE=true)'))).toBe(true);
    expect(insecureFindings(config)).toHaveLength(3);
    expect(insecureFindings(loadConfig({ env: {}, hostname: 'h' }).config)).toEqual([]);
  });

  it('reports half-configured TLS, a CA without its listener, mTLS without a CA, and clashing ports', () => {
    expect(problems({ MQTT_TLS_CERT: pki.serverCert })).toEqual(['MQTT_TLS_KEY: is unset while MQTT_TLS_CERT is set; set both to turn the TLS listener on']);
    expect(problems({ MQTT_TLS_CA: pki.caCert, MQTT_TLS_REQUIRE_CLIENT_CERT: 'on' })).toEqual([
      'MQTT_TLS_REQUIRE_CLIENT_CERT: is on but there is no TLS listener; set MQTT_TLS_CERT and MQTT_TLS_KEY',
      'MQTT_TLS_CA: is used only by the TLS listener; set MQTT_TLS_CERT and MQTT_TLS_KEY too',
    ]);
    expect(problems({ ...tls(), MQTT_TLS_REQUIRE_CLIENT_CERT: 'on' })).toEqual([
      'MQTT_TLS_REQUIRE_CLIENT_CERT: is on but MQTT_TLS_CA is unset; set it to the authorities that sign client certificates',
    ]);
    expect(problems({ ...tls(), MQTT_TLS_PORT: '1883', MQTT_WS_PORT: '8080' })).toEqual([
      'MQTT_TLS_PORT: 1883 is also MQTT_PORT; each listener needs its own port',
      'PORT: 8080 is also MQTT_WS_PORT; each listener needs its own port',
    ]);
    expect(problems({ MQTT_PLAINTEXT: 'off', MQTT_WS_PORT: '9001' })).toEqual([
      'MQTT_WS_PORT: would take plaintext WebSockets while MQTT_PLAINTEXT is off; set MQTT_TLS_CERT and MQTT_TLS_KEY for secure WebSockets',
    ]);
  });

  it('checks the files: unreadable, a key of another certificate, an expired certificate, bad password and ACL lines', () => {
    const other = pki.client('someone');
    const expired = pki.serverExpiringIn(-1);
    const badPw = path.join(pki.dir, 'bad-passwd');
    fs.writeFileSync(badPw, 'bob:plaintext-password\n');
    const badAcl = path.join(pki.dir, 'bad-acl');
    fs.writeFileSync(badAcl, 'topic reed x\n');
    const found = problems({ MQTT_TLS_CERT: pki.serverCert, MQTT_TLS_KEY: other.key, MQTT_AUTH_FILE: badPw, MQTT_ACL_FILE: badAcl });
    expect(found).toEqual([
      `MQTT_TLS_KEY: ${JSON.stringify(other.key)} is not the private key of the first certificate in MQTT_TLS_CERT`,
      `MQTT_AUTH_FILE: ${JSON.stringify(badPw)} line 1: user "bob": the hash must start with $7$ (or $6$); write it with \`mqtt-ingest passwd\` or mosquitto_passwd`,
      `MQTT_ACL_FILE: ${JSON.stringify(badAcl)} line 1: invalid access "reed" (expected read, write, readwrite or deny)`,
    ]);
    expect(found.join('\n')).not.toContain('plaintext-password');
    expect(problems({ MQTT_TLS_CERT: expired.cert, MQTT_TLS_KEY: expired.key })[0]).toMatch(/^MQTT_TLS_CERT: the certificate in .* expired on /);
    expect(problems({ MQTT_TLS_CERT: '/nonexistent.crt', MQTT_TLS_KEY: pki.serverKey })).toEqual(['MQTT_TLS_CERT: cannot read "/nonexistent.crt" (ENOENT)']);
  });

  it('refuses certificate identities over WebSockets in mosquitto mode, which cannot see the certificate', () => {
    const env = { ...tls(), MQTT_TLS_CA: pki.caCert, MQTT_TLS_REQUIRE_CLIENT_CERT: 'on', MQTT_WS_PORT: '9001' };
    expect(problems({ ...env, MQTT_BROKER_MODE: 'embedded' })).toEqual([]);
    expect(problems({ ...env, MQTT_BROKER_MODE: 'mosquitto' })[0]).toMatch(/^MQTT_WS_PORT: with MQTT_TLS_REQUIRE_CLIENT_CERT and no MQTT_AUTH_FILE/);
    expect(problems({ ...env, MQTT_BROKER_MODE: 'mosquitto', MQTT_AUTH_FILE: authFile })).toEqual([]);
  });

  it('ignores the broker keys, with a warning, when the node subscribes to an external broker', () => {
    const { warnings } = loadConfig({ env: { APP_ENV: 'prd', MQTT_BROKER: 'mqtts://b.example', MQTT_AUTH_FILE: '/nope', GCP_PROJECT_ID: 'p', PUBSUB_TOPIC: 'topic-1' }, hostname: 'h' });
    expect(warnings).toEqual([
      'MQTT_AUTH_FILE: ignored: the node subscribes to the external broker MQTT_BROKER and starts none of its own',
    ]);
  });

  it('check-config exits 1 naming each problem, and 0 on a good prd setup', () => {
    const out: string[] = [];
    const err: string[] = [];
    const io = { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) } };
    expect(checkConfig({ env: { APP_ENV: 'prd', MQTT_PLAINTEXT: 'on' } }, io as never)).toBe(1);
    expect(err.join('')).toMatch(/MQTT_PLAINTEXT: the plaintext listener.*\n.*MQTT_TLS_CERT: TLS is not configured/s);
    err.length = 0;
    expect(checkConfig({ env: { APP_ENV: 'prd', ...tls(), MQTT_AUTH_FILE: authFile } }, io as never)).toBe(0);
    expect(out.join('')).toMatch(/MQTT_PLAINTEXT: false # derived/);
  });
});
