/**
 * No Google credentials must not end the node (issue #10): the Pub/Sub and BigQuery sinks show the problem and
 * its fix in readiness, the node stays ready and spools, and delivery resumes by itself once credentials appear.
 *
 * Everything is real and local: node processes, the Pub/Sub emulator, the BigQuery test server, and
 * google-auth-library loading Application Default Credentials from gcloud's well-known file (or
 * GOOGLE_APPLICATION_CREDENTIALS). The credentials are of type `external_account_authorized_user`, whose
 * `token_url` google-auth-library honours (externalAccountAuthorizedUserClient.js); a service account key's
 * `token_uri` is not (google-auth-library 10 gtoken/getToken.js posts to the fixed https://oauth2.googleapis.com/token).
 * Tokens come from a local token server. Google's endpoints are stood in for so that the clients run as in
 * production, credentials included:
 * - Pub/Sub: the client dials pubsub.googleapis.com:443 through `grpc_proxy` (grpc-js http_proxy.js, an HTTP
 *   CONNECT); the tunnel is answered with TLS under a test CA (NODE_EXTRA_CA_CERTS) and bytes go on to the emulator.
 * - BigQuery: BIGQUERY_API_ENDPOINT is an https:// front (no credentials are ever sent to http://) that answers
 *   401 without a token it issued, as Google's front end does, and passes the rest to the BigQuery test server.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import mqtt from 'mqtt';
import { getGCPResidency } from 'gcp-metadata';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBigQueryServer, type BigQueryServer } from './helpers/bigquery-server.js';
import { hasOpenssl, makePki, type TestPki } from './helpers/certs.js';
import { startJsonStandIn, type JsonStandIn } from './helpers/json-stand-in.js';
import { baseEnv, runCli, startNode, type NodeProcess } from './helpers/node-process.js';
import { waitFor } from './helpers/ports.js';
import { createTopicAndSubscription, hasPubSubEmulator, pullAll, startPubSubEmulator, type PubSubEmulator } from './helpers/pubsub-emulator.js';
import { serviceAvailable } from './helpers/skip.js';

const run =
  serviceAvailable('Pub/Sub emulator', hasPubSubEmulator(), 'install the Google Cloud CLI and its pubsub-emulator component') &&
  serviceAvailable('openssl', hasOpenssl(), 'apt-get install openssl');

const REFRESH_TOKEN = 'test-refresh-token';
/** Quick retries, so that delivery resumes within a second of the credentials appearing. */
const FAST_RETRY = { RETRY_INITIAL_DELAY_MS: '100', RETRY_MAX_DELAY_MS: '500' };
/** What the sinks must tell an operator who has no credentials. */
const FIX_WORDS = ['gcloud auth application-default login', 'GOOGLE_APPLICATION_CREDENTIALS', 'service account'];

interface TokenServer extends JsonStandIn {
  /** Access tokens handed out, in order. */
  issued: string[];
  /** Refresh tokens it takes (REFRESH_TOKEN at first); one deleted is revoked (invalid_grant). */
  valid: Set<string>;
}

/**
 * An OAuth token endpoint for `external_account_authorized_user` credentials: refresh_token grant, client id and
 * secret in Basic auth. A refresh token issued with `short-lived` in it gets 60 s tokens, which the client
 * refreshes before every call (it refreshes 5 minutes ahead: EXPIRATION_TIME_OFFSET).
 */
async function startTokenServer(): Promise<TokenServer> {
  const issued: string[] = [];
  const valid = new Set([REFRESH_TOKEN]);
  const basic = `Basic ${Buffer.from('test-client:test-secret').toString('base64')}`;
  const server = await startJsonStandIn((req, reply) => {
    const form = new URLSearchParams(req.body);
    if (req.method !== 'POST' || req.path !== '/token' || req.headers.authorization !== basic) {
      return reply(401, { error: 'invalid_client', error_description: 'unknown client' });
    }
    const refresh = form.get('refresh_token') ?? '';
    if (form.get('grant_type') !== 'refresh_token' || !valid.has(refresh)) {
      return reply(400, { error: 'invalid_grant', error_description: 'the refresh token is expired or revoked' });
    }
    const token = `test-access-token-${issued.length + 1}`;
    issued.push(token);
    reply(200, { access_token: token, expires_in: refresh.includes('short-lived') ? 60 : 3600, token_type: 'Bearer' });
  });
  return { ...server, issued, valid };
}

/** Application Default Credentials as `gcloud auth application-default login --login-config` writes them (workforce identity). */
function credentialsJson(tokens: TokenServer, refreshToken = REFRESH_TOKEN): string {
  return JSON.stringify({
    type: 'external_account_authorized_user',
    audience: '//iam.googleapis.com/locations/global/workforcePools/test-pool/providers/test-provider',
    client_id: 'test-client',
    client_secret: 'test-secret',
    refresh_token: refreshToken,
    token_url: `${tokens.url}/token`,
  });
}

/** Writes a file whole (rename), so that the node never reads half of it. */
function writeAtomically(file: string, text: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/** gcloud's Application Default Credentials file under a HOME (google-auth-library's well-known location). */
function gcloudAdcFile(home: string): string {
  return path.join(home, '.config', 'gcloud', 'application_default_credentials.json');
}

/** A server certificate for `san`, signed by the test PKI's CA. */
function serverCertificate(pki: TestPki, name: string, san: string): { cert: Buffer; key: Buffer } {
  const file = (ext: string) => path.join(pki.dir, `${name}.${ext}`);
  const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: pki.dir, stdio: ['ignore', 'ignore', 'pipe'] });
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file('key')]);
  openssl(['req', '-new', '-key', file('key'), '-out', file('csr'), '-subj', `/CN=${name}`]);
  writeFileSync(file('ext'), `subjectAltName=${san}\n`);
  openssl(['x509', '-req', '-in', file('csr'), '-CA', pki.caCert, '-CAkey', path.join(pki.dir, 'ca.key'), '-CAcreateserial', '-out', file('crt'), '-days', '2', '-extfile', file('ext')]);
  return { cert: readFileSync(file('crt')), key: readFileSync(file('key')) };
}

interface PubSubFront {
  /** http://127.0.0.1:port, for grpc_proxy. */
  proxyUrl: string;
  /** CONNECT tunnels opened to pubsub.googleapis.com:443. */
  tunnels: number;
  stop(): Promise<void>;
}

/**
 * pubsub.googleapis.com for a node whose grpc_proxy is this server: each CONNECT tunnel to it is answered with
 * TLS (a certificate for that name from the test CA, ALPN h2) and its bytes passed to the emulator.
 */
async function startPubSubFront(emulatorHost: string, certificate: { cert: Buffer; key: Buffer }): Promise<PubSubFront> {
  const [host, port] = emulatorHost.split(':');
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on('error', () => s.destroy());
    s.once('close', () => sockets.delete(s));
  };
  const tlsServer = tls.createServer({ ...certificate, ALPNProtocols: ['h2'] }, (secure) => {
    const upstream = net.connect(Number(port), host!);
    track(secure);
    track(upstream);
    secure.pipe(upstream).pipe(secure);
    upstream.once('close', () => secure.destroy());
    secure.once('close', () => upstream.destroy());
  });
  const front: PubSubFront = { proxyUrl: '', tunnels: 0, stop: async () => undefined };
  const proxy = http.createServer((_req, res) => res.writeHead(405).end());
  proxy.on('connect', (req: http.IncomingMessage, socket: net.Socket) => {
    track(socket);
    if (req.url !== 'pubsub.googleapis.com:443') {
      socket.end('HTTP/1.1 403 Forbidden\r\n\r\n');
      return;
    }
    front.tunnels += 1;
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    tlsServer.emit('connection', socket);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  front.proxyUrl = `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
  front.stop = async () => {
    for (const s of sockets) s.destroy();
    proxy.closeAllConnections();
    await new Promise<void>((resolve) => proxy.close(() => resolve()));
  };
  return front;
}

interface BigQueryFront {
  /** https://127.0.0.1:port, for BIGQUERY_API_ENDPOINT. */
  url: string;
  /** Requests answered 401 (no token, or one the token server did not issue). */
  unauthorized: number;
  stop(): Promise<void>;
}

/** bigquery.googleapis.com in front of the BigQuery test server: 401 without a valid bearer token, as Google answers. */
async function startBigQueryFront(bq: BigQueryServer, tokens: TokenServer, certificate: { cert: Buffer; key: Buffer }): Promise<BigQueryFront> {
  const front: BigQueryFront = { url: '', unauthorized: 0, stop: async () => undefined };
  const server = https.createServer(certificate, (req, res) => {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!token || !tokens.issued.includes(token)) {
      front.unauthorized += 1;
      req.resume();
      res.writeHead(401, { 'content-type': 'application/json; charset=UTF-8', 'www-authenticate': 'Bearer realm="https://accounts.google.com/"' });
      res.end(
        JSON.stringify({
          error: {
            code: 401,
            message: 'Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.',
            errors: [{ message: 'Login Required.', domain: 'global', reason: 'required', location: 'Authorization', locationType: 'header' }],
            status: 'UNAUTHENTICATED',
          },
        }),
      );
      return;
    }
    const upstream = http.request(`${bq.url}${req.url}`, { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  front.url = `https://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  front.stop = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return front;
}

type SinkState = { state: string; detail?: string; consecutiveFailures: number };

async function sinkState(node: NodeProcess, sink: string): Promise<{ ready: boolean; sink: SinkState; pending: number; deadLetters: number }> {
  const r = await node.readiness();
  const body = r.body as { sinks: Record<string, SinkState>; spool: { pending: Record<string, number>; deadLetters: number } };
  return { ready: r.status === 200, sink: body.sinks[sink]!, pending: body.spool.pending[sink] ?? 0, deadLetters: body.spool.deadLetters };
}

async function publish(node: NodeProcess, count: number, prefix: string): Promise<void> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${node.mqttPort}`, { protocolVersion: 4 });
  try {
    for (let i = 0; i < count; i++) await client.publishAsync(`${prefix}/${i}`, `reading ${i}`, { qos: 1 });
  } finally {
    await client.endAsync();
  }
}

/**
 * Waits until the sink has failed `failures` writes in a row while the node stays ready with every message in the
 * spool (none dead-lettered): the moment the node used to exit 70 ("unhandled rejection") was the first of them.
 */
async function waitFailing(node: NodeProcess, sink: string, pending: number, failures = 3): Promise<SinkState> {
  let last: Awaited<ReturnType<typeof sinkState>> | undefined;
  await waitFor(
    async () => {
      if (node.proc.exitCode !== null) throw new Error(`node exited with ${node.proc.exitCode}:\n${node.logs.slice(-10).join('\n')}`);
      last = await sinkState(node, sink);
      return last.sink.state === 'failing' && last.sink.consecutiveFailures >= failures && last.pending === pending;
    },
    20_000,
    `${sink} failing with ${pending} messages pending`,
  ).catch((err: Error) => {
    throw new Error(`${err.message} (last: ${JSON.stringify(last)})`);
  });
  expect(last!.ready).toBe(true);
  expect(last!.deadLetters).toBe(0);
  return last!.sink;
}

function expectNoCrash(node: NodeProcess): void {
  const lines = node.logs.join('\n');
  expect(lines).not.toMatch(/unhandled rejection|uncaught exception/);
  expect(node.logObjects().filter((l) => l.severity === 'CRITICAL')).toEqual([]);
}

describe.runIf(run)('no Google credentials', () => {
  let emu: PubSubEmulator;
  let pki: TestPki;
  let tokens: TokenServer;
  let pubsubFront: PubSubFront;
  let googleCert: { cert: Buffer; key: Buffer };
  let scratch: string;
  const newHome = (name: string) => {
    const home = path.join(scratch, name);
    mkdirSync(home, { recursive: true });
    return home;
  };

  beforeAll(async () => {
    scratch = mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-no-creds-'));
    pki = makePki();
    googleCert = serverCertificate(pki, 'google', 'DNS:pubsub.googleapis.com,DNS:bigquery.googleapis.com,IP:127.0.0.1');
    tokens = await startTokenServer();
    emu = await startPubSubEmulator();
    pubsubFront = await startPubSubFront(emu.host, googleCert);
  });
  afterAll(async () => {
    await pubsubFront?.stop();
    await emu?.stop();
    await tokens?.stop();
    pki?.cleanup();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  /** A node whose Pub/Sub client dials "pubsub.googleapis.com" (the emulator behind TLS); `env` decides what credentials it finds. */
  const pubsubViaGoogle = (topic: string, env: Record<string, string>) => ({
    GCP_PROJECT_ID: emu.projectId,
    PUBSUB_TOPIC: topic,
    MQTT_BROKER_MODE: 'embedded',
    grpc_proxy: pubsubFront.proxyUrl,
    NODE_EXTRA_CA_CERTS: pki.caCert,
    ...FAST_RETRY,
    ...env,
  });

  it('Pub/Sub without any credentials: the node stays ready and spools, the sink says how to fix it, and publishes once gcloud credentials appear', async () => {
    await createTopicAndSubscription(emu.host, emu.projectId, 'no-creds', 'no-creds-check');
    const home = newHome('pubsub');
    const node = await startNode(pubsubViaGoogle('no-creds', { HOME: home }));
    try {
      await node.waitReady();
      await publish(node, 5, 'plant/a');
      const failing = await waitFailing(node, 'pubsub', 5);
      expect(failing.detail).toContain('Could not load the default credentials');
      for (const words of FIX_WORDS) expect(failing.detail).toContain(words);
      // No credentials, no client: nothing went towards Pub/Sub and no token was asked for.
      expect(pubsubFront.tunnels).toBe(0);
      expect(tokens.issued).toEqual([]);
      expect(node.logObjects().find((l) => l.code === 'SINK_FAILING' && l.sink === 'pubsub' && l.reason === 'permission_denied')).toBeDefined();
      expectNoCrash(node);

      const issuedBefore = tokens.issued.length;
      writeAtomically(gcloudAdcFile(home), credentialsJson(tokens));
      const received = await pullAll(emu.host, emu.projectId, 'no-creds-check', 5, 30_000);
      expect(received.map((r) => r.attributes.mqtt_topic).sort()).toEqual([0, 1, 2, 3, 4].map((i) => `plant/a/${i}`));
      expect(tokens.issued.length).toBeGreaterThan(issuedBefore);
      expect(pubsubFront.tunnels).toBeGreaterThan(0);
      await waitFor(async () => (await sinkState(node, 'pubsub')).sink.state === 'ok', 10_000, 'the Pub/Sub sink ok again');
      expect((await sinkState(node, 'pubsub')).pending).toBe(0);
      expectNoCrash(node);
      expect(await node.stop()).toBe(0);
    } finally {
      await node.kill();
    }
  });

  it('Pub/Sub when GOOGLE_APPLICATION_CREDENTIALS names no file yet: a warning at start, failing with the path and the fix, and publishing once the file appears', async () => {
    await createTopicAndSubscription(emu.host, emu.projectId, 'gone-creds', 'gone-creds-check');
    const keyFile = path.join(scratch, 'keys', 'node-credentials.json');
    const node = await startNode(pubsubViaGoogle('gone-creds', { HOME: newHome('gone'), GOOGLE_APPLICATION_CREDENTIALS: keyFile }));
    try {
      await node.waitReady();
      // run starts anyway (check-config refuses it): a missing key file is a failing dependency, not a config error.
      expect(node.logObjects().some((l) => l.code === 'CONFIG_WARNING' && String(l.message).startsWith(`GOOGLE_APPLICATION_CREDENTIALS: ${JSON.stringify(keyFile)} cannot be read`))).toBe(true);
      await publish(node, 3, 'plant/b');
      const failing = await waitFailing(node, 'pubsub', 3);
      expect(failing.detail).toContain(`The file at ${keyFile} does not exist`);
      for (const words of FIX_WORDS) expect(failing.detail).toContain(words);
      expectNoCrash(node);

      writeAtomically(keyFile, credentialsJson(tokens));
      const received = await pullAll(emu.host, emu.projectId, 'gone-creds-check', 3, 30_000);
      expect(received.map((r) => r.attributes.mqtt_topic).sort()).toEqual(['plant/b/0', 'plant/b/1', 'plant/b/2']);
      expectNoCrash(node);
      expect(await node.stop()).toBe(0);
    } finally {
      await node.kill();
    }
  });

  it('Pub/Sub with revoked credentials: failing with the token endpoint\'s words, and new gcloud credentials are picked up without a restart', async () => {
    await createTopicAndSubscription(emu.host, emu.projectId, 'revoked-creds', 'revoked-creds-check');
    const home = newHome('revoked');
    tokens.valid.add('short-lived-1');
    writeAtomically(gcloudAdcFile(home), credentialsJson(tokens, 'short-lived-1'));
    const node = await startNode(pubsubViaGoogle('revoked-creds', { HOME: home }));
    try {
      await node.waitReady();
      await publish(node, 2, 'plant/f');
      expect(await pullAll(emu.host, emu.projectId, 'revoked-creds-check', 2, 30_000)).toHaveLength(2);

      // Revoked: each call asks for a token (they live 60 s) and is refused.
      tokens.valid.delete('short-lived-1');
      await publish(node, 2, 'plant/g');
      const failing = await waitFailing(node, 'pubsub', 2);
      expect(failing.detail).toContain('invalid_grant');
      expect(failing.detail).toContain('fix its credentials');
      expectNoCrash(node);

      // The operator logs in again: gcloud writes a new file, which only a new client reads.
      tokens.valid.add('short-lived-2');
      writeAtomically(gcloudAdcFile(home), credentialsJson(tokens, 'short-lived-2'));
      const received = await pullAll(emu.host, emu.projectId, 'revoked-creds-check', 2, 30_000);
      expect(received.map((r) => r.attributes.mqtt_topic).sort()).toEqual(['plant/g/0', 'plant/g/1']);
      expectNoCrash(node);
      expect(await node.stop()).toBe(0);
    } finally {
      await node.kill();
    }
  });

  it('a topic the emulator lost: the hint names `mqtt-ingest provision` first, and provision brings delivery back', async () => {
    const env = { GCP_PROJECT_ID: emu.projectId, PUBSUB_TOPIC: 'lost-topic', PUBSUB_EMULATOR_HOST: emu.host };
    const node = await startNode({ ...env, MQTT_BROKER_MODE: 'embedded', ...FAST_RETRY });
    try {
      await node.waitReady();
      await publish(node, 2, 'plant/c');
      const failing = await waitFailing(node, 'pubsub', 2, 1);
      expect(failing.detail).toMatch(
        /^Pub\/Sub topic projects\/mqtt-ingest-test\/topics\/lost-topic does not exist: create it with `mqtt-ingest provision` .*, or with `gcloud pubsub topics create lost-topic --project=mqtt-ingest-test`/,
      );
      const provision = await runCli(['provision'], baseEnv(env));
      expect(provision.stdout).toMatch(/^created {6}Pub\/Sub topic projects\/mqtt-ingest-test\/topics\/lost-topic$/m);
      await waitFor(
        async () => {
          const s = await sinkState(node, 'pubsub');
          return s.sink.state === 'ok' && s.pending === 0;
        },
        15_000,
        'the Pub/Sub sink delivering after provision',
      );
      expect(await node.stop()).toBe(0);
    } finally {
      await node.kill();
    }
  });

  describe('BigQuery', () => {
    let bq: BigQueryServer;
    let front: BigQueryFront;
    beforeAll(async () => {
      bq = await startBigQueryServer();
      front = await startBigQueryFront(bq, tokens, googleCert);
    });
    afterAll(async () => {
      await front?.stop();
      await bq?.stop();
    });
    const bigqueryEnv = (home: string, extra: Record<string, string> = {}) => ({
      GCP_PROJECT_ID: bq.projectId,
      BIGQUERY_DATASET: 'creds_ds',
      BIGQUERY_TABLE: 'raw',
      BIGQUERY_LOCATION: 'EU',
      BIGQUERY_API_ENDPOINT: front.url,
      NODE_EXTRA_CA_CERTS: pki.caCert,
      HOME: home,
      MQTT_BROKER_MODE: 'embedded',
      ...FAST_RETRY,
      ...extra,
    });

    it('without credentials the start neither fails nor waits; the sink shows why; once gcloud credentials appear it creates the table and delivers with them', async () => {
      const home = newHome('bigquery');
      const node = await startNode(bigqueryEnv(home));
      try {
        await node.waitReady(15_000);
        await publish(node, 4, 'plant/d');
        const failing = await waitFailing(node, 'bigquery', 4);
        expect(failing.detail).toContain('Could not load the default credentials');
        for (const words of FIX_WORDS) expect(failing.detail).toContain(words);
        // Google's front refused every request; nothing reached BigQuery.
        expect(front.unauthorized).toBeGreaterThan(0);
        expect(bq.requests).toEqual([]);
        expectNoCrash(node);

        writeAtomically(gcloudAdcFile(home), credentialsJson(tokens));
        await waitFor(() => bq.tables.has('creds_ds.raw') && bq.rows('creds_ds', 'raw').length === 4, 20_000, '4 rows in creds_ds.raw');
        expect(bq.datasets.get('creds_ds')).toMatchObject({ location: 'EU' });
        const inserts = bq.requests.filter((r) => r.path.endsWith('/insertAll') && r.status === 200);
        expect(inserts.length).toBeGreaterThan(0);
        for (const r of inserts) expect(tokens.issued.map((t) => `Bearer ${t}`)).toContain(r.authorization);
        await waitFor(async () => (await sinkState(node, 'bigquery')).sink.state === 'ok', 10_000, 'the BigQuery sink ok again');
        expectNoCrash(node);
        expect(await node.stop()).toBe(0);
      } finally {
        await node.kill();
      }
    });

    it('with revoked credentials the sink is failing with the token endpoint\'s words, and picks up new gcloud credentials without a restart', async () => {
      const home = newHome('bigquery-revoked');
      tokens.valid.add('short-lived-bq-1');
      writeAtomically(gcloudAdcFile(home), credentialsJson(tokens, 'short-lived-bq-1'));
      const node = await startNode(bigqueryEnv(home, { BIGQUERY_DATASET: 'revoked_ds' }));
      try {
        await node.waitReady(15_000);
        await publish(node, 2, 'plant/h');
        await waitFor(() => bq.tables.has('revoked_ds.raw') && bq.rows('revoked_ds', 'raw').length === 2, 20_000, '2 rows in revoked_ds.raw');

        tokens.valid.delete('short-lived-bq-1');
        await publish(node, 2, 'plant/i');
        const failing = await waitFailing(node, 'bigquery', 2);
        expect(failing.detail).toContain('invalid_grant');
        expect(failing.detail).toContain('fix its credentials');

        tokens.valid.add('short-lived-bq-2');
        writeAtomically(gcloudAdcFile(home), credentialsJson(tokens, 'short-lived-bq-2'));
        await waitFor(() => bq.rows('revoked_ds', 'raw').length === 4, 20_000, '4 rows in revoked_ds.raw');
        expectNoCrash(node);
        expect(await node.stop()).toBe(0);
      } finally {
        await node.kill();
      }
    });

    // On Google Cloud itself google-auth-library knows it is there (gcp-metadata's residency check of the BIOS or
    // the serverless environment) and never probes the metadata server, so there is no warning to route.
    it.skipIf(getGCPResidency())("gcp-metadata's MetadataLookupWarning reaches the JSON log, once as a warning; other warnings are still printed", async () => {
      const metadata = await startJsonStandIn((_req, reply) => reply(200, {})); // no Metadata-Flavor header: "unexpected"
      const node = await startNode(
        bigqueryEnv(newHome('metadata'), {
          BIGQUERY_DATASET: 'metadata_ds',
          METADATA_SERVER_DETECTION: 'ping-only',
          GCE_METADATA_HOST: metadata.host,
          LOG_LEVEL: 'debug',
          // An unrelated warning, printed by Node at the first TLS connection.
          NODE_TLS_REJECT_UNAUTHORIZED: '0',
        }),
      );
      try {
        await node.waitReady(15_000);
        await publish(node, 1, 'plant/e');
        const lookups = () => node.logObjects().filter((l) => l.code === 'GCE_METADATA_UNREACHABLE');
        // Each new client looks again (the start's check, then the write's after the refusal).
        await waitFor(() => lookups().length >= 2, 20_000, 'two MetadataLookupWarning log lines');
        const [first, ...later] = lookups();
        expect(first).toMatchObject({ severity: 'WARNING', warning: 'MetadataLookupWarning', detail: expect.stringContaining('incorrect Metadata-Flavor header') });
        expect(first!.message).toContain('METADATA_SERVER_DETECTION=none');
        for (const l of later) expect(l.severity).toBe('DEBUG');
        const plain = node.logs.filter((l) => !l.startsWith('{'));
        expect(plain.filter((l) => l.includes('MetadataLookupWarning'))).toEqual([]);
        expect(plain.some((l) => l.includes('Warning: Setting the NODE_TLS_REJECT_UNAUTHORIZED environment variable'))).toBe(true);
        expectNoCrash(node);
        expect(await node.stop()).toBe(0);
      } finally {
        await node.kill();
        await metadata.stop();
      }
    });
  });
});
