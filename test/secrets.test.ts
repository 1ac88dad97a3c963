/**
 * Secret Manager references (`sm://…`), resolved against a local stand-in of the Secret Manager REST API:
 * the resolver on its own, then `run` in PRD mode with its TLS certificate, key and password file all fetched
 * from the stand-in into a private folder, taking a message over TLS with a password and never logging a value.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword, updatePasswordText } from '../src/intake/security/passwd-file.js';
import { resolveSecretRefs, secretManagerAccessor } from '../src/config/secrets.js';
import { parseSecretRef, type SecretRef } from '../src/config/secret-ref.js';
import { IngestError } from '../src/core/errors.js';
import { hasOpenssl, makePki, type TestPki } from './helpers/certs.js';
import { readFileSink } from './helpers/file-output.js';
import { hasMosquitto } from './helpers/mosquitto.js';
import { connect, publishAcked, tlsFiles } from './helpers/mqtt-clients.js';
import { runCli, baseEnv, startNode } from './helpers/node-process.js';
import { freePort, waitFor } from './helpers/ports.js';
import { startSecretManagerServer, type SecretManagerServer } from './helpers/secret-manager-server.js';
import { serviceAvailable } from './helpers/skip.js';

const P = 'projects/mqtt-ingest-prd/secrets';
const ref = (secret: string, version: number | 'latest' = 'latest'): SecretRef => parseSecretRef(`sm://${P}/${secret}/versions/${version}`)!;
const PASSWORD = 'stand-in-password-5b1e';
const KEY_BYTES = Buffer.from([0x00, 0xff, 0x0a, 0x0d, 0x0a, 0x80, 0x7f]);

describe('resolveSecretRefs against the stand-in API', () => {
  let sm: SecretManagerServer;
  const tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'secrets-unit-'));
  beforeAll(async () => {
    sm = await startSecretManagerServer({
      [`${P}/mqtt-password`]: { versions: { 1: 'old', 2: `${PASSWORD}\n`, 3: null } },
      [`${P}/mqtt-ingest-tls-key`]: { versions: { 1: KEY_BYTES } },
      [`${P}/locked`]: { versions: { 1: 'x' }, denied: true },
    });
  });
  afterAll(async () => {
    await sm.stop();
    rmSync(tmpRoot, { recursive: true, force: true });
  });

  it('gives a secret key its value (latest enabled version, one trailing newline dropped) and a file key a private file with the exact bytes', async () => {
    const accessor = secretManagerAccessor(sm.url);
    const resolved = await resolveSecretRefs({ MQTT_PASSWORD: ref('mqtt-password'), MQTT_TLS_KEY: ref('mqtt-ingest-tls-key', 1) }, { accessor, tmpRoot });
    await accessor.close();
    expect(resolved.values.MQTT_PASSWORD).toBe(PASSWORD);
    const file = resolved.values.MQTT_TLS_KEY!;
    expect(path.dirname(file)).toBe(resolved.dir);
    expect(readFileSync(file).equals(KEY_BYTES)).toBe(true);
    expect(statSync(resolved.dir!).mode & 0o777).toBe(0o700);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(sm.requests).toContain(`GET /v1/${P}/mqtt-password/versions/latest:access`);
    resolved.cleanup();
    expect(readdirSync(tmpRoot)).toEqual([]);
  });

  it('reports every unreadable reference at once, with the reason and no value, and writes nothing', async () => {
    const accessor = secretManagerAccessor(sm.url);
    const err = await resolveSecretRefs(
      {
        MQTT_PASSWORD: ref('mqtt-password', 3),
        MQTT_TLS_CERT: ref('missing'),
        MQTT_AUTH_FILE: ref('locked'),
        MQTT_TLS_KEY: ref('mqtt-ingest-tls-key', 1),
      },
      { accessor, tmpRoot },
    ).catch((e: unknown) => e);
    await accessor.close();
    expect(err).toBeInstanceOf(IngestError);
    const e = err as IngestError;
    expect(e.code).toBe('SECRET_UNAVAILABLE');
    expect(e.message).toContain(`MQTT_PASSWORD: cannot read sm://${P}/mqtt-password/versions/3: the version is disabled or destroyed`);
    expect(e.message).toContain(`MQTT_TLS_CERT: cannot read sm://${P}/missing/versions/latest: the secret or that version does not exist`);
    expect(e.message).toContain(`MQTT_AUTH_FILE: cannot read sm://${P}/locked/versions/latest: permission denied: the node's service account needs secretmanager.versions.access on ${P}/locked`);
    expect(e.message).not.toContain('MQTT_TLS_KEY');
    expect(e.message).not.toMatch(/old|stand-in-password/);
    expect(readdirSync(tmpRoot)).toEqual([]);
  });
});

const canRun =
  serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto') && serviceAvailable('openssl', hasOpenssl(), 'apt-get install openssl');

describe.runIf(canRun)('run with sm:// references (PRD, Mosquitto, TLS only, password file)', () => {
  let sm: SecretManagerServer;
  let pki: TestPki;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'secrets-run-'));
  const nodeTmp = path.join(tmp, 'node-tmp');

  beforeAll(async () => {
    mkdirSync(nodeTmp);
    pki = makePki();
    const passwd = updatePasswordText('', 'sensor-1', hashPassword(PASSWORD)).text;
    sm = await startSecretManagerServer({
      [`${P}/mqtt-ingest-tls-cert`]: { versions: { 1: readFileSync(pki.serverCert) } },
      [`${P}/mqtt-ingest-tls-key`]: { versions: { 1: readFileSync(pki.serverKey) } },
      [`${P}/mqtt-ingest-passwd`]: { versions: { 1: 'sensor-1:not-this-one\n', 2: passwd } },
    });
  });
  afterAll(async () => {
    await sm?.stop();
    pki?.cleanup();
    rmSync(tmp, { recursive: true, force: true });
  });

  const secretEnv = () => ({
    APP_ENV: 'prd',
    MQTT_BROKER_MODE: 'mosquitto',
    MQTT_PLAINTEXT: 'false',
    MQTT_ALLOW_ANONYMOUS: 'false',
    MQTT_TLS_CERT: `sm://${P}/mqtt-ingest-tls-cert/versions/1`,
    MQTT_TLS_KEY: `sm://${P}/mqtt-ingest-tls-key/versions/latest`,
    MQTT_AUTH_FILE: `sm://${P}/mqtt-ingest-passwd/versions/latest`,
    SECRET_MANAGER_API_ENDPOINT: sm.url,
    TMPDIR: nodeTmp,
  });

  it('fetches the files at start, serves TLS with them, and removes them at exit', async () => {
    const tlsPort = await freePort();
    const node = await startNode({ ...secretEnv(), MQTT_TLS_PORT: String(tlsPort) });
    try {
      await node.waitReady(60_000);
      // The private folder holds the three files, readable by the node's user only.
      const [dir, ...more] = readdirSync(nodeTmp).filter((d) => d.startsWith('mqtt-ingest-secrets-'));
      expect(more).toEqual([]);
      const folder = path.join(nodeTmp, dir!);
      expect(statSync(folder).mode & 0o777).toBe(0o700);
      expect(readdirSync(folder).sort()).toEqual(['mqtt_auth_file', 'mqtt_tls_cert', 'mqtt_tls_key']);
      for (const f of readdirSync(folder)) expect(statSync(path.join(folder, f)).mode & 0o777).toBe(0o600);

      const client = await connect(`mqtts://127.0.0.1:${tlsPort}`, { ...tlsFiles({ ca: pki.caCert }), username: 'sensor-1', password: PASSWORD });
      await publishAcked(client, 'plant/pit-north/pressure/7', '{"bar":1.27}');
      await client.endAsync();
      const out = path.join(node.dataDir, 'out');
      await waitFor(() => readFileSink(out).some((r) => r.payload === '{"bar":1.27}'), 20_000, 'the message in the file sink');

      const logs = node.logs.join('\n');
      const resolved = node.logObjects().filter((l) => l.code === 'SECRET_RESOLVED');
      expect(resolved.map((l) => [l.key, l.version]).sort()).toEqual([
        ['MQTT_AUTH_FILE', `${P}/mqtt-ingest-passwd/versions/2`],
        ['MQTT_TLS_CERT', `${P}/mqtt-ingest-tls-cert/versions/1`],
        ['MQTT_TLS_KEY', `${P}/mqtt-ingest-tls-key/versions/1`],
      ]);
      // No value reaches the log: not the private key, not the password hash.
      expect(logs).not.toContain('PRIVATE KEY');
      expect(logs).not.toContain('$7$');
      expect(logs).not.toContain(PASSWORD);

      expect(await node.stop()).toBe(0);
      expect(readdirSync(nodeTmp).filter((d) => d.startsWith('mqtt-ingest-secrets-'))).toEqual([]);
    } finally {
      await node.kill();
    }
  });

  it('exits 1 before any port opens when a reference cannot be read, naming each key and why', async () => {
    const httpPort = await freePort();
    const r = await runCli(
      ['run'],
      baseEnv({
        ...secretEnv(),
        MQTT_TLS_KEY: `sm://${P}/mqtt-ingest-tls-key/versions/7`,
        MQTT_AUTH_FILE: `sm://${P}/no-such-secret/versions/latest`,
        PORT: String(httpPort),
        DATA_DIR: path.join(tmp, 'data-bad'),
      }),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`MQTT_TLS_KEY: cannot read sm://${P}/mqtt-ingest-tls-key/versions/7: the secret or that version does not exist`);
    expect(r.stderr).toContain(`MQTT_AUTH_FILE: cannot read sm://${P}/no-such-secret/versions/latest: the secret or that version does not exist`);
    expect(r.stdout + r.stderr).not.toContain('PRIVATE KEY');
    const probe = await fetch(`http://127.0.0.1:${httpPort}/healthz`).catch(() => undefined);
    expect(probe).toBeUndefined();
    expect(readdirSync(nodeTmp).filter((d) => d.startsWith('mqtt-ingest-secrets-'))).toEqual([]);
  });

  it('runs the schema checks on the fetched content: a certificate whose key does not match stops the start', async () => {
    const other = pki.client('someone');
    await sm.stop();
    sm = await startSecretManagerServer({
      [`${P}/mqtt-ingest-tls-cert`]: { versions: { 1: readFileSync(pki.serverCert) } },
      [`${P}/mqtt-ingest-tls-key`]: { versions: { 1: readFileSync(other.key) } },
      [`${P}/mqtt-ingest-passwd`]: { versions: { 1: updatePasswordText('', 'sensor-1', hashPassword(PASSWORD)).text } },
    });
    const r = await runCli(['run'], baseEnv({ ...secretEnv(), DATA_DIR: path.join(tmp, 'data-mismatch'), PORT: String(await freePort()) }));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/MQTT_TLS_KEY: "[^"]+mqtt_tls_key" is not the private key of the first certificate in MQTT_TLS_CERT/);
    expect(r.stdout + r.stderr).not.toContain('PRIVATE KEY');
    expect(readdirSync(nodeTmp).filter((d) => d.startsWith('mqtt-ingest-secrets-'))).toEqual([]);
  });
});

describe('run while Secret Manager does not answer', () => {
  it('says in its log what the start waits for, and on which endpoint', async () => {
    const { startSilentServer } = await import('./helpers/silent-server.js');
    const silent = await startSilentServer();
    const node = await startNode({
      MQTT_BROKER_MODE: 'embedded',
      MQTT_AUTH_FILE: `sm://${P}/mqtt-ingest-passwd/versions/latest`,
      MQTT_ALLOW_ANONYMOUS: 'false',
      SECRET_MANAGER_API_ENDPOINT: `http://${silent.host}`,
      MQTTINGEST_WAIT_NOTICE_MS: '500',
    });
    try {
      await waitFor(
        () => node.logObjects().some((l) => l.code === 'SECRET_MANAGER_SLOW' && String(l.message).startsWith(`still waiting for Secret Manager at http://${silent.host} (1 sm:// references) after`)),
        10_000,
        'the waiting notice',
      );
      expect(silent.connections()).toBeGreaterThan(0);
      // Nothing opened meanwhile: the HTTP port comes only after the secrets.
      expect(node.proc.exitCode).toBeNull();
      await expect(node.readiness()).rejects.toThrow();
    } finally {
      await node.kill();
      await silent.stop();
    }
  });
});
