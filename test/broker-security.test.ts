/**
 * Broker security in both modes, end to end, for MQTT 3.1.1 and MQTT 5 clients: the real node (`mqtt-ingest run`),
 * real clients (MQTT.js 5 and mosquitto_pub), certificates made with openssl, password files written by
 * `mqtt-ingest passwd` (mosquitto mode: real Mosquitto reads them) and by `mosquitto_passwd` (embedded mode: the
 * node reads them). Each mode's nodes are shared by the cases of both versions.
 */
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canConnect, findOnPath } from '../src/intake/mosquitto/process-utils.js';
import { attempt, CONNACK, connectedAtOnce, connectV, mosquittoPub, NOT_AUTHORIZED, publishCode, received, subscribeGranted } from './helpers/broker-security.js';
import { addUser, deleteUser, peerSerial, topicsIn, VERSIONS, waitForTopic, type Version } from './helpers/broker-security.js';
import { hasOpenssl, makePki, type TestPki } from './helpers/certs.js';
import { hasMosquitto } from './helpers/mosquitto.js';
import { publishAcked, refusal, tlsFiles } from './helpers/mqtt-clients.js';
import { startNode, type NodeProcess } from './helpers/node-process.js';
import { freePort, waitFor } from './helpers/ports.js';
import { serviceAvailable } from './helpers/skip.js';

const haveOpenssl = serviceAvailable('openssl', hasOpenssl(), 'apt-get install openssl');
const haveMosquitto = serviceAvailable('mosquitto', hasMosquitto() && findOnPath('mosquitto_passwd') !== undefined, 'apt-get install mosquitto');
const SUBSCRIBER_ID = 'ingest-under-test';
/** Each user writes its own topics; `reader` reads everything under sensors/ and writes nothing. */
const ACL = [
  ...['alice', 'bob', 'bob-4', 'bob-5'].flatMap((u) => [`user ${u}`, `topic write sensors/${u.replace(/-\d$/, '')}/#`]),
  'user sensor-7',
  'topic write sensors/7/#',
  'user reader',
  'topic read sensors/#',
  '',
].join('\n');
/** How a refused CONNECT of version `v` ends: the same for a bad password, an unknown user and an anonymous client. */
const notAuthorized = (v: Version) => ({ outcome: expect.stringMatching(/not authori[sz]ed/i), code: CONNACK.notAuthorized[v] });
/** The connection limit of the embedded mTLS node (Mosquitto's drifts after refusals: docs/security.md). */
const MAX_CONNECTIONS = 2;

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
    let tlsPort: number;
    let tlsUrl: string;
    let wsPort: number;
    const alice = { username: 'alice', password: 'alice-Pa55' };
    const reader = { username: 'reader', password: 'reader-Pa55' };

    beforeAll(async () => {
      authFile = path.join(pki.dir, `${mode}.passwd`);
      addUser(mode, authFile, alice.username, alice.password);
      addUser(mode, authFile, reader.username, reader.password);
      if (mode === 'mosquitto') expect(fs.statSync(authFile).mode & 0o777).toBe(0o600);
      const aclFile = path.join(pki.dir, 'acl');
      fs.writeFileSync(aclFile, ACL);
      tlsPort = await freePort();
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

    const withCa = () => tlsFiles({ ca: pki.caCert });
    const aliceTls = () => ({ ...alice, ...withCa() });
    const rejected = () => node.metric('mqtt_ingest_messages_rejected_total', { reason: 'not_authorized' });

    it('has no plaintext listener (MQTT_PLAINTEXT is off in prd)', async () => {
      expect(await canConnect('127.0.0.1', node.mqttPort)).toBe(false);
      expect(await refusal(`mqtt://127.0.0.1:${node.mqttPort}`, alice)).toMatch(/ECONNREFUSED/);
    });

    it('shows the certificate expiry as a metric', async () => {
      const seconds = await node.metric('mqtt_ingest_tls_cert_expiry_seconds', { cert: 'server' });
      expect(seconds).toBeGreaterThan(29 * 86_400);
      expect(seconds).toBeLessThanOrEqual(30 * 86_400);
    });

    for (const { v, name, flag } of VERSIONS) describe(name, () => {
      const pubArgs = (...rest: string[]) => ['-V', flag, '-h', '127.0.0.1', '-p', String(tlsPort), '--cafile', pki.caCert, ...rest];

      it('takes QoS 1 messages over TLS from a client that trusts the CA; a client that does not, refuses the server', async () => {
        const c = await connectV(v, tlsUrl, aliceTls());
        clients.push(c);
        await publishAcked(c, `sensors/alice/tls-${v}`, 'over TLS');
        await waitForTopic(node, `sensors/alice/tls-${v}`);
        expect((await attempt(v, tlsUrl, { ...alice, rejectUnauthorized: true })).outcome).toMatch(/self.signed|unable to verify|certificate/i);
      });

      it('takes secure WebSockets too, with the same users', async () => {
        const c = await connectV(v, `wss://127.0.0.1:${wsPort}`, aliceTls());
        await publishAcked(c, `sensors/alice/wss-${v}`, 'over secure WebSockets');
        await c.endAsync();
        await waitForTopic(node, `sensors/alice/wss-${v}`);
        expect(await attempt(v, `wss://127.0.0.1:${wsPort}`, { ...aliceTls(), password: 'wrong' })).toEqual(notAuthorized(v));
      });

      it(`refuses a wrong password, an unknown user and an anonymous client with "not authorized" (${v === 5 ? '0x87' : 'return code 5'}), and counts them`, async () => {
        const before = await node.metric('mqtt_ingest_broker_connections_refused_total', { reason: 'not_authorized' });
        expect(await attempt(v, tlsUrl, { ...aliceTls(), password: 'alice-wrong' })).toEqual(notAuthorized(v));
        expect(await attempt(v, tlsUrl, { ...aliceTls(), username: 'nobody' })).toEqual(notAuthorized(v));
        expect(await attempt(v, tlsUrl, withCa())).toEqual(notAuthorized(v));
        // Another client's view: mosquitto_pub exits with the CONNACK's code.
        expect((await mosquittoPub(pubArgs('-u', 'alice', '-P', 'alice-wrong', '-t', 'sensors/alice/x', '-m', 'x'))).code).toBe(CONNACK.notAuthorized[v]);
        await waitFor(
          async () => (await node.metric('mqtt_ingest_broker_connections_refused_total', { reason: 'not_authorized' })) >= before + 4,
          10_000,
          'four refusals counted',
        );
        expect(node.logs.join('\n')).not.toContain('alice-wrong');
      });

      const denied = v === 5 ? 'answers PUBACK or PUBREC 0x87 to' : 'acknowledges';
      it(`${denied} a publish outside the user's topics (ACL), drops it, keeps the connection, and keeps ingesting`, async () => {
        const rejectedBefore = await rejected();
        const c = await connectV(v, tlsUrl, aliceTls());
        let closed = false;
        c.on('close', () => (closed = true));
        expect(await publishCode(c, `sensors/bob/forged-${v}`, 'not alice to write')).toBe(v === 5 ? NOT_AUTHORIZED : 0);
        expect(await publishCode(c, `sensors/bob/forged-q2-${v}`, 'not alice to write', 2)).toBe(v === 5 ? NOT_AUTHORIZED : 0);
        expect(await publishCode(c, `sensors/bob/forged-q0-${v}`, 'not alice to write', 0)).toBe(0);
        expect(await publishCode(c, `sensors/alice/after-denied-${v}`, 'allowed')).toBe(0);
        expect(closed).toBe(false);
        await c.endAsync();
        const topics = await waitForTopic(node, `sensors/alice/after-denied-${v}`);
        expect(topics.filter((t) => t.startsWith('sensors/bob/forged'))).toEqual([]);
        // Mosquitto logs ACL denials at debug level only, so only the embedded broker counts them.
        if (mode === 'embedded') expect(await rejected()).toBe(rejectedBefore + 3);
        const r = await mosquittoPub(pubArgs('-u', 'alice', '-P', alice.password, '-q', '1', '-t', `sensors/bob/forged-pub-${v}`, '-m', 'x'));
        expect(r).toEqual({ code: 0, out: v === 5 ? expect.stringMatching(/Publish 1 failed: Not authori[sz]ed/i) : '' });
      });

      it("grants every subscription, and delivers only what the subscriber's ACL lets it read", async () => {
        const r = await connectV(v, tlsUrl, { ...reader, ...withCa() });
        const a = await connectV(v, tlsUrl, aliceTls());
        const toReader: string[] = [];
        const toAlice: string[] = [];
        r.on('message', (t) => toReader.push(t));
        a.on('message', (t) => toAlice.push(t));
        // Subscriptions are not checked (Mosquitto 2.0.11's ACL neither): a granted QoS 1, not 0x80 or 0x87.
        expect(await subscribeGranted(r, 'sensors/#')).toEqual([1]);
        expect(await subscribeGranted(a, 'sensors/#')).toEqual([1]);
        await publishCode(a, `sensors/bob/sub-denied-${v}`, 'not alice to write');
        await publishAcked(a, `sensors/alice/sub-${v}`, 'for the reader');
        await waitFor(() => toReader.includes(`sensors/alice/sub-${v}`), 10_000, 'the message delivered to the reader');
        expect(toReader).toEqual([`sensors/alice/sub-${v}`]); // not the denied one, published before it
        expect(toAlice).toEqual([]); // alice may write it, not read it
        await Promise.all([r.endAsync(), a.endAsync()]);
      });

      it("takes a will to the user's topics and drops one outside them", async () => {
        const r = await connectV(v, tlsUrl, { ...reader, ...withCa() });
        const toReader: string[] = [];
        r.on('message', (t) => toReader.push(t));
        await r.subscribeAsync('sensors/#', { qos: 1 });
        const rejectedBefore = await rejected();
        const will = (topic: string) => ({ topic, payload: Buffer.from('gone'), qos: 1 as const, retain: false });
        const forged = await connectV(v, tlsUrl, { ...aliceTls(), clientId: `forged-will-${v}`, will: will(`sensors/bob/will-${v}`) });
        const allowed = await connectV(v, tlsUrl, { ...aliceTls(), clientId: `allowed-will-${v}`, will: will(`sensors/alice/will-${v}`) });
        forged.stream.destroy(); // no DISCONNECT: the will is due
        if (mode === 'embedded') {
          await waitFor(async () => (await rejected()) === rejectedBefore + 1, 10_000, 'the denied will counted');
        } else {
          await waitFor(() => node.logs.some((l) => l.includes(`forged-will-${v}`) && /disconnect|closed/i.test(l)), 10_000, 'the forged will client gone');
        }
        allowed.stream.destroy();
        await waitFor(() => toReader.includes(`sensors/alice/will-${v}`), 10_000, 'the allowed will delivered');
        expect(toReader).toEqual([`sensors/alice/will-${v}`]);
        const topics = await waitForTopic(node, `sensors/alice/will-${v}`);
        expect(topics).not.toContain(`sensors/bob/will-${v}`);
        await r.endAsync();
      });

      if (v === 5) it('refuses a CONNECT that asks for enhanced authentication with 0x8C (bad authentication method)', async () => {
        const labels = { reason: 'not_authorized' };
        const before = await node.metric('mqtt_ingest_broker_connections_refused_total', labels);
        const scram = { ...aliceTls(), properties: { authenticationMethod: 'SCRAM-SHA-256' } };
        expect(await attempt(v, tlsUrl, scram)).toEqual({ outcome: 'Connection refused: Bad authentication method', code: 0x8c });
        // Mosquitto logs it as "disconnected due to QoS too high or retain not supported" (mosquitto-log.ts).
        await waitFor(async () => (await node.metric('mqtt_ingest_broker_connections_refused_total', labels)) === before + 1, 5_000, 'the refusal counted');
      });

      it("lets no client take over the subscriber's session with its client id", async () => {
        const reconnectsBefore = await node.metric('mqtt_ingest_source_reconnects_total');
        const opts = { ...aliceTls(), clientId: SUBSCRIBER_ID, clean: false };
        if (mode === 'embedded') {
          // No subscriber here, and no one may hold a session under its name.
          expect(await attempt(v, tlsUrl, opts)).toEqual({
            outcome: v === 5 ? 'Connection refused: Client Identifier not valid' : 'Connection refused: Identifier rejected',
            code: CONNACK.identifierRejected[v],
          });
        } else {
          // Mosquitto lets it connect, as a new session: the subscriber's own id has a secret suffix.
          const c = await connectV(v, tlsUrl, opts);
          const got: string[] = [];
          c.on('message', (t) => got.push(t));
          await c.subscribeAsync('#', { qos: 1 });
          const other = await connectV(v, tlsUrl, aliceTls());
          await publishAcked(other, `sensors/alice/while-intruder-${v}`, 'x');
          await other.endAsync();
          await waitForTopic(node, `sensors/alice/while-intruder-${v}`);
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
        const reloadsBefore = await node.metric('mqtt_ingest_broker_reloads_total', { result: 'ok' });
        const first = await connectV(v, tlsUrl, aliceTls());
        clients.push(first);
        let closed = false;
        first.on('close', () => (closed = true));
        const bob = { username: `bob-${v}`, password: 'bob-Pa55', ...withCa() };
        addUser(mode, authFile, bob.username, bob.password);
        expect((await attempt(v, tlsUrl, bob)).code).toBe(CONNACK.notAuthorized[v]); // not before the reload
        node.proc.kill('SIGHUP');
        await waitFor(async () => (await attempt(v, tlsUrl, bob)).outcome === 'connected', 10_000, 'bob accepted after SIGHUP');
        const b = await connectV(v, tlsUrl, bob);
        await publishAcked(b, `sensors/bob/new-user-${v}`, 'hello');
        await b.endAsync();
        await publishAcked(first, `sensors/alice/still-connected-${v}`, 'still here');
        await waitForTopic(node, `sensors/alice/still-connected-${v}`);
        expect(topicsIn(node)).toContain(`sensors/bob/new-user-${v}`);
        expect(closed).toBe(false);
        expect(await node.metric('mqtt_ingest_broker_reloads_total', { result: 'ok' })).toBe(reloadsBefore + 1);
        expect(node.proc.exitCode).toBeNull(); // SIGHUP does not end the node
        expect(node.logs.join('\n')).not.toMatch(/alice-Pa55|bob-Pa55/);
      });

      it('disconnects on SIGHUP a client whose user was deleted, and keeps the others', async () => {
        const carol = { username: `carol-${v}`, password: 'carol-Pa55', ...withCa() };
        addUser(mode, authFile, carol.username, carol.password);
        node.proc.kill('SIGHUP');
        await waitFor(async () => (await attempt(v, tlsUrl, carol)).outcome === 'connected', 10_000, 'carol accepted after SIGHUP');
        const c = await connectV(v, tlsUrl, carol);
        const disconnects = received(c, 'disconnect');
        const a = await connectV(v, tlsUrl, aliceTls());
        clients.push(a);
        let carolClosed = false;
        let aliceClosed = false;
        c.on('close', () => (carolClosed = true));
        a.on('close', () => (aliceClosed = true));
        deleteUser(mode, authFile, carol.username);
        node.proc.kill('SIGHUP');
        await waitFor(() => carolClosed, 10_000, 'carol disconnected by the reload');
        // Closed without a DISCONNECT, by both brokers: MQTT 5 lets a server send one first (§4.13.2), neither does.
        expect(disconnects).toEqual([]);
        await publishAcked(a, `sensors/alice/after-revoke-${v}`, 'still here');
        expect(aliceClosed).toBe(false);
        expect(await attempt(v, tlsUrl, carol)).toEqual(notAuthorized(v));
      });

      it('serves a renewed certificate to new connections after SIGHUP, keeps connected clients, and warns of its expiry', async () => {
        const connected = await connectV(v, tlsUrl, aliceTls());
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
        const warningsBefore = node.logObjects().filter((o) => o.code === 'TLS_CERT_EXPIRING').length;
        node.proc.kill('SIGHUP');
        await waitFor(async () => (await peerSerial(tlsUrl)) === serial, 10_000, 'the renewed certificate on the TLS listener');
        await waitFor(async () => (await peerSerial(`wss://127.0.0.1:${wsPort}`)) === serial, 10_000, 'the renewed certificate on the WebSocket listener');
        await publishAcked(connected, `sensors/alice/after-renewal-${v}`, 'x');
        expect(closed).toBe(false);
        const seconds = await node.metric('mqtt_ingest_tls_cert_expiry_seconds', { cert: 'server' });
        expect(seconds).toBeLessThanOrEqual(10 * 86_400);
        const expiring = () => node.logObjects().filter((o) => o.code === 'TLS_CERT_EXPIRING' && /TLS certificates expire within 14 days/.test(String(o.message)));
        await waitFor(() => expiring().length > warningsBefore, 5_000, 'the expiry warning');
      });
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
        ...(mode === 'embedded' ? { MQTT_MAX_CONNECTIONS: String(MAX_CONNECTIONS) } : {}),
      });
      nodes.push(node);
      await node.waitReady();
      tlsUrl = `mqtts://127.0.0.1:${tlsPort}`;
    });

    for (const { v, name } of VERSIONS) describe(name, () => {
      const sensor7 = () => tlsFiles({ ca: pki.caCert, ...pki.client('sensor-7') });

      it('refuses a client without a certificate, or with one from another CA, and counts it', async () => {
        const before = await node.metric('mqtt_ingest_broker_connections_refused_total', { reason: 'tls' });
        expect((await attempt(v, tlsUrl, tlsFiles({ ca: pki.caCert }))).outcome).not.toBe('connected');
        expect((await attempt(v, tlsUrl, tlsFiles({ ca: pki.caCert, ...pki.rogueClient }))).outcome).not.toBe('connected');
        await waitFor(async () => (await node.metric('mqtt_ingest_broker_connections_refused_total', { reason: 'tls' })) >= before + 2, 10_000, 'TLS refusals counted');
      });

      it('takes a client with a certificate from the CA, whose CN is the user the ACL knows', async () => {
        const c = await connectV(v, tlsUrl, { ...sensor7(), username: 'alice' });
        expect(await publishCode(c, `sensors/alice/claimed-${v}`, 'the CONNECT user name does not count')).toBe(v === 5 ? NOT_AUTHORIZED : 0);
        await publishAcked(c, `sensors/7/temp-${v}`, '21.5');
        await c.endAsync();
        const topics = await waitForTopic(node, `sensors/7/temp-${v}`);
        expect(topics).not.toContain(`sensors/alice/claimed-${v}`);
      });

      if (mode === 'embedded') it('admits MQTT_MAX_CONNECTIONS connections on the listener, refuses the next one and counts it', async () => {
        const open = await connectedAtOnce(MAX_CONNECTIONS, v, tlsUrl, sensor7());
        const before = await node.metric('mqtt_ingest_broker_connections_refused_total', { reason: 'max_connections' });
        expect((await attempt(v, tlsUrl, sensor7())).outcome).not.toBe('connected');
        await waitFor(async () => (await node.metric('mqtt_ingest_broker_connections_refused_total', { reason: 'max_connections' })) === before + 1, 5_000, 'the refusal counted');
        await open[0]!.endAsync();
        await waitFor(async () => (await attempt(v, tlsUrl, sensor7())).outcome === 'connected', 10_000, 'a connection admitted once one left');
        await open[1]!.endAsync();
      });
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
