/**
 * Broker security in both modes, end to end: the real node (`mqtt-ingest run`), real clients, certificates made
 * with openssl, password files written by `mqtt-ingest passwd` (mosquitto mode: real Mosquitto reads them) and
 * by `mosquitto_passwd` (embedded mode: the node reads them).
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import fs from 'node:fs';
import path from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findOnPath } from '../src/intake/mosquitto/process-utils.js';
import { hasOpenssl, makePki, type TestPki } from './helpers/certs.js';
import { readFileSink } from './helpers/file-output.js';
import { hasMosquitto } from './helpers/mosquitto.js';
import { connect, publishAcked, refusal, tlsFiles } from './helpers/mqtt-clients.js';
import { BIN, startNode, type NodeProcess } from './helpers/node-process.js';
import { canConnect } from '../src/intake/mosquitto/process-utils.js';
import { freePort, waitFor } from './helpers/ports.js';
import { serviceAvailable } from './helpers/skip.js';

const haveOpenssl = serviceAvailable('openssl', hasOpenssl(), 'apt-get install openssl');
const haveMosquitto = serviceAvailable('mosquitto', hasMosquitto() && findOnPath('mosquitto_passwd') !== undefined, 'apt-get install mosquitto');
const SUBSCRIBER_ID = 'ingest-under-test';
const ACL = ['user alice', 'topic write sensors/alice/#', 'user bob', 'topic write sensors/bob/#', 'user sensor-7', 'topic write sensors/7/#', ''].join('\n');

/** Mosquitto mode writes users with our CLI, embedded mode with mosquitto_passwd: each reads the other's. */
function addUser(mode: string, file: string, user: string, password: string): void {
  if (mode === 'mosquitto') execFileSync(process.execPath, [BIN, 'passwd', file, user], { input: `${password}\n`, stdio: ['pipe', 'ignore', 'inherit'] });
  else execFileSync(findOnPath('mosquitto_passwd')!, [...(fs.existsSync(file) ? [] : ['-c']), '-b', file, user, password]);
}

function deleteUser(mode: string, file: string, user: string): void {
  if (mode === 'mosquitto') execFileSync(process.execPath, [BIN, 'passwd', '-D', file, user], { stdio: ['ignore', 'ignore', 'inherit'] });
  else execFileSync(findOnPath('mosquitto_passwd')!, ['-D', file, user]);
}

/** The serial number of the certificate a TLS listener presents now. */
function peerSerial(url: string): Promise<string> {
  const { port } = new URL(url);
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port: Number(port), rejectUnauthorized: false }, () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.destroy();
    });
    socket.on('error', () => resolve(''));
  });
}

function topicsIn(node: NodeProcess): string[] {
  return readFileSink(path.join(node.dataDir, 'out')).map((r) => r.topic);
}

/** Waits until `marker` reached the file sink; everything published before it by the same client has too. */
async function waitForTopic(node: NodeProcess, topic: string): Promise<string[]> {
  return waitFor(() => {
    const topics = topicsIn(node);
    return topics.includes(topic) ? topics : undefined;
  }, 20_000, `${topic} in the file sink`);
}

describe.each(['embedded', 'mosquitto'] as const)('%s broker security', (mode) => {
  const run = haveOpenssl && haveMosquitto;
  let pki: TestPki;
  const clients: MqttClient[] = [];
  const nodes: NodeProcess[] = [];
  beforeAll(() => {
    if (run) pki = makePki();
  });
  afterAll(async () => {
    await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
    // SIGTERM, not SIGKILL: a SIGKILLed node cannot stop its Mosquitto child.
    await Promise.all(nodes.splice(0).map((n) => n.stop()));
    pki?.cleanup();
  });

  describe.runIf(run)('TLS, passwords and an ACL in prd', () => {
    let node: NodeProcess;
    let authFile: string;
    let tlsUrl: string;
    let wsPort: number;
    const alice = { username: 'alice', password: 'alice-Pa55' };

    beforeAll(async () => {
      authFile = path.join(pki.dir, `${mode}.passwd`);
      addUser(mode, authFile, alice.username, alice.password);
      if (mode === 'mosquitto') expect(fs.statSync(authFile).mode & 0o777).toBe(0o600);
      const aclFile = path.join(pki.dir, 'acl');
      fs.writeFileSync(aclFile, ACL);
      const tlsPort = await freePort();
      wsPort = await freePort();
      node = await startNode({
        APP_ENV: 'prd',
        MQTT_BROKER_MODE: mode,
        MQTT_TLS_PORT: String(tlsPort),
        MQTT_TLS_CERT: pki.serverCert,
        MQTT_TLS_KEY: pki.serverKey,
        MQTT_WS_PORT: String(wsPort),
        MQTT_AUTH_FILE: authFile,
        MQTT_ACL_FILE: aclFile,
        MQTT_CLIENT_ID: SUBSCRIBER_ID,
      });
      nodes.push(node);
      await node.waitReady();
      tlsUrl = `mqtts://127.0.0.1:${tlsPort}`;
    });

    const aliceTls = () => ({ ...alice, ...tlsFiles({ ca: pki.caCert }) });

    it('takes QoS 1 messages over TLS from a client that trusts the CA; a client that does not, refuses the server', async () => {
      const c = await connect(tlsUrl, aliceTls());
      clients.push(c);
      await publishAcked(c, 'sensors/alice/tls', 'over TLS');
      await waitForTopic(node, 'sensors/alice/tls');
      expect(await refusal(tlsUrl, { ...alice, rejectUnauthorized: true })).toMatch(/self.signed|unable to verify|certificate/i);
    });

    it('takes secure WebSockets too, with the same users', async () => {
      const c = await connect(`wss://127.0.0.1:${wsPort}`, aliceTls());
      await publishAcked(c, 'sensors/alice/wss', 'over secure WebSockets');
      await c.endAsync();
      await waitForTopic(node, 'sensors/alice/wss');
      expect(await refusal(`wss://127.0.0.1:${wsPort}`, { ...aliceTls(), password: 'wrong' })).toMatch(/not authori[sz]ed/i);
    });

    it('has no plaintext listener (MQTT_PLAINTEXT is off in prd)', async () => {
      expect(await canConnect('127.0.0.1', node.mqttPort)).toBe(false);
      expect(await refusal(`mqtt://127.0.0.1:${node.mqttPort}`, alice)).toMatch(/ECONNREFUSED/);
    });

    it('refuses a wrong password and an anonymous client, and counts them', async () => {
      const before = await node.metric('mqtt_ingest_broker_connections_refused_total', { reason: 'not_authorized' });
      expect(await refusal(tlsUrl, { ...aliceTls(), password: 'alice-wrong' })).toMatch(/not authori[sz]ed/i);
      expect(await refusal(tlsUrl, { ...aliceTls(), username: 'nobody' })).toMatch(/not authori[sz]ed/i);
      expect(await refusal(tlsUrl, tlsFiles({ ca: pki.caCert }))).toMatch(/not authori[sz]ed/i);
      await waitFor(
        async () => (await node.metric('mqtt_ingest_broker_connections_refused_total', { reason: 'not_authorized' })) >= before + 3,
        10_000,
        'three refusals counted',
      );
      expect(node.logs.join('\n')).not.toContain('alice-wrong');
    });

    it("acknowledges but drops a publish outside the user's topics (ACL), and keeps ingesting", async () => {
      const c = await connect(tlsUrl, aliceTls());
      await publishAcked(c, 'sensors/bob/forged', 'not alice to write');
      await publishAcked(c, 'sensors/alice/after-denied', 'allowed');
      await c.endAsync();
      const topics = await waitForTopic(node, 'sensors/alice/after-denied');
      expect(topics).not.toContain('sensors/bob/forged');
      // Mosquitto logs ACL denials at debug level only, so only the embedded broker counts them.
      if (mode === 'embedded') expect(await node.metric('mqtt_ingest_messages_rejected_total', { reason: 'not_authorized' })).toBe(1);
    });

    it("lets no client take over the subscriber's session with its client id", async () => {
      const reconnectsBefore = await node.metric('mqtt_ingest_source_reconnects_total');
      const attempt = await connect(tlsUrl, { ...aliceTls(), clientId: SUBSCRIBER_ID, clean: false }).then(
        (c) => ({ c, sessionPresent: undefined as boolean | undefined }),
        (err: Error) => ({ c: undefined, err }),
      );
      if (mode === 'embedded') {
        // No subscriber here, and no one may hold a session under its name.
        expect('err' in attempt && attempt.err.message).toMatch(/identifier rejected/i);
      } else {
        // Mosquitto lets it connect, as a new session: the subscriber's own id has a secret suffix.
        expect(attempt.c).toBeDefined();
        const c = attempt.c!;
        const got: string[] = [];
        c.on('message', (t) => got.push(t));
        await c.subscribeAsync('#', { qos: 1 });
        const other = await connect(tlsUrl, aliceTls());
        await publishAcked(other, 'sensors/alice/while-intruder', 'x');
        await other.endAsync();
        await waitForTopic(node, 'sensors/alice/while-intruder');
        expect(got).toEqual([]); // alice may not read, and the subscriber's queue is not hers
        await c.endAsync(true);
        expect(await node.metric('mqtt_ingest_source_reconnects_total')).toBe(reconnectsBefore);
        const secret = fs.readFileSync(path.join(node.dataDir, 'mosquitto', 'subscriber-id'), 'utf8').trim();
        expect(node.logs.join('\n')).not.toContain(secret);
        expect(JSON.stringify((await node.readiness()).body)).not.toContain(secret);
      }
      expect((await node.readiness()).status).toBe(200);
    });

    it('loads a user added to the password file on SIGHUP, without disconnecting connected clients', async () => {
      const first = await connect(tlsUrl, aliceTls());
      clients.push(first);
      let closed = false;
      first.on('close', () => (closed = true));
      const bob = { username: 'bob', password: 'bob-Pa55', ...tlsFiles({ ca: pki.caCert }) };
      addUser(mode, authFile, 'bob', bob.password);
      expect(await refusal(tlsUrl, bob)).toMatch(/not authori[sz]ed/i); // not before the reload
      node.proc.kill('SIGHUP');
      await waitFor(async () => (await refusal(tlsUrl, bob)) === 'connected', 10_000, 'bob accepted after SIGHUP');
      const b = await connect(tlsUrl, bob);
      await publishAcked(b, 'sensors/bob/new-user', 'hello');
      await b.endAsync();
      await publishAcked(first, 'sensors/alice/still-connected', 'still here');
      await waitForTopic(node, 'sensors/alice/still-connected');
      expect(topicsIn(node)).toContain('sensors/bob/new-user');
      expect(closed).toBe(false);
      expect(await node.metric('mqtt_ingest_broker_reloads_total', { result: 'ok' })).toBe(1);
      expect(node.proc.exitCode).toBeNull(); // SIGHUP does not end the node
      expect(node.logs.join('\n')).not.toMatch(/alice-Pa55|bob-Pa55/);
    });

    it('disconnects on SIGHUP a client whose user was deleted, and keeps the others', async () => {
      const carol = { username: 'carol', password: 'carol-Pa55', ...tlsFiles({ ca: pki.caCert }) };
      addUser(mode, authFile, 'carol', carol.password);
      node.proc.kill('SIGHUP');
      await waitFor(async () => (await refusal(tlsUrl, carol)) === 'connected', 10_000, 'carol accepted after SIGHUP');
      const c = await connect(tlsUrl, carol);
      const a = await connect(tlsUrl, aliceTls());
      clients.push(a);
      let carolClosed = false;
      let aliceClosed = false;
      c.on('close', () => (carolClosed = true));
      a.on('close', () => (aliceClosed = true));
      deleteUser(mode, authFile, 'carol');
      node.proc.kill('SIGHUP');
      await waitFor(() => carolClosed, 10_000, 'carol disconnected by the reload');
      await publishAcked(a, 'sensors/alice/after-revoke', 'still here');
      expect(aliceClosed).toBe(false);
      expect(await refusal(tlsUrl, carol)).toMatch(/not authori[sz]ed/i);
    });

    it('shows the certificate expiry as a metric', async () => {
      const seconds = await node.metric('mqtt_ingest_tls_cert_expiry_seconds', { cert: 'server' });
      expect(seconds).toBeGreaterThan(29 * 86_400);
      expect(seconds).toBeLessThanOrEqual(30 * 86_400);
    });

    it('serves a renewed certificate to new connections after SIGHUP, keeps connected clients, and warns of its expiry', async () => {
      const connected = await connect(tlsUrl, aliceTls());
      clients.push(connected);
      let closed = false;
      connected.on('close', () => (closed = true));
      const renewed = pki.serverExpiringIn(10);
      const serial = new X509Certificate(fs.readFileSync(renewed.cert)).serialNumber;
      // Replaced by rename, as a deploy tool would, so the broker never reads half a file.
      for (const [from, to] of [[renewed.cert, pki.serverCert], [renewed.key, pki.serverKey]] as const) {
        fs.copyFileSync(from, `${to}.new`);
        fs.renameSync(`${to}.new`, to);
      }
      node.proc.kill('SIGHUP');
      await waitFor(async () => (await peerSerial(tlsUrl)) === serial, 10_000, 'the renewed certificate on the TLS listener');
      await waitFor(async () => (await peerSerial(`wss://127.0.0.1:${wsPort}`)) === serial, 10_000, 'the renewed certificate on the WebSocket listener');
      await publishAcked(connected, 'sensors/alice/after-renewal', 'x');
      expect(closed).toBe(false);
      const seconds = await node.metric('mqtt_ingest_tls_cert_expiry_seconds', { cert: 'server' });
      expect(seconds).toBeLessThanOrEqual(10 * 86_400);
      await waitFor(() => node.logObjects().some((o) => o.code === 'TLS_CERT_EXPIRING' && /TLS certificates expire within 14 days/.test(String(o.message))), 5_000, 'the expiry warning');
    });
  });

  describe.runIf(run)('mTLS: the client certificate is required and names the user', () => {
    let node: NodeProcess;
    let tlsUrl: string;
    beforeAll(async () => {
      const aclFile = path.join(pki.dir, 'acl-mtls');
      fs.writeFileSync(aclFile, ACL);
      const tlsPort = await freePort();
      node = await startNode({
        APP_ENV: 'prd',
        MQTT_BROKER_MODE: mode,
        MQTT_TLS_PORT: String(tlsPort),
        MQTT_TLS_CERT: pki.serverCert,
        MQTT_TLS_KEY: pki.serverKey,
        MQTT_TLS_CA: pki.caCert,
        MQTT_TLS_REQUIRE_CLIENT_CERT: 'true',
        MQTT_ACL_FILE: aclFile,
      });
      nodes.push(node);
      await node.waitReady();
      tlsUrl = `mqtts://127.0.0.1:${tlsPort}`;
    });

    it('refuses a client without a certificate, or with one from another CA, and counts it', async () => {
      expect(await refusal(tlsUrl, tlsFiles({ ca: pki.caCert }))).not.toBe('connected');
      expect(await refusal(tlsUrl, tlsFiles({ ca: pki.caCert, ...pki.rogueClient }))).not.toBe('connected');
      await waitFor(async () => (await node.metric('mqtt_ingest_broker_connections_refused_total', { reason: 'tls' })) >= 2, 10_000, 'TLS refusals counted');
    });

    it("takes a client with a certificate from the CA, whose CN is the user the ACL knows", async () => {
      const c = await connect(tlsUrl, { ...tlsFiles({ ca: pki.caCert, ...pki.client('sensor-7') }), username: 'alice' });
      await publishAcked(c, 'sensors/alice/claimed', 'the CONNECT user name does not count');
      await publishAcked(c, 'sensors/7/temp', '21.5');
      await c.endAsync();
      const topics = await waitForTopic(node, 'sensors/7/temp');
      expect(topics).not.toContain('sensors/alice/claimed');
    });
  });
});

describe.runIf(haveOpenssl)('prd with MQTT_ALLOW_INSECURE', () => {
  it('refuses an insecure prd setup at `run`, naming each problem, before any port opens', async () => {
    const node = await startNode({ APP_ENV: 'prd', MQTT_BROKER_MODE: 'embedded', MQTT_PLAINTEXT: 'on', MQTT_ALLOW_ANONYMOUS: 'true' });
    const { code } = await node.exited;
    expect(code).toBe(1);
    const out = node.logs.join('\n');
    expect(out).toMatch(/MQTT_PLAINTEXT: the plaintext listener .* is on in prd/);
    expect(out).toMatch(/MQTT_TLS_CERT: TLS is not configured in prd/);
    expect(out).toMatch(/MQTT_ALLOW_ANONYMOUS: anonymous access is allowed in prd/);
  });

  it('starts with the risk accepted, warning at start and in the readiness JSON', async () => {
    const node = await startNode({ APP_ENV: 'prd', MQTT_BROKER_MODE: 'embedded', MQTT_PLAINTEXT: 'on', MQTT_ALLOW_ANONYMOUS: 'true', MQTT_ALLOW_INSECURE: 'true' });
    try {
      await node.waitReady();
      const { body } = await node.readiness();
      expect((body.security as { insecure: string[] }).insecure).toEqual([
        expect.stringMatching(/^MQTT_PLAINTEXT: /),
        expect.stringMatching(/^MQTT_TLS_CERT: /),
        expect.stringMatching(/^MQTT_ALLOW_ANONYMOUS: /),
      ]);
      const warnings = node.logObjects().filter((o) => o.code === 'CONFIG_WARNING' && /allowed by MQTT_ALLOW_INSECURE/.test(String(o.message)));
      expect(warnings).toHaveLength(3);
    } finally {
      await node.stop();
    }
  });
});
