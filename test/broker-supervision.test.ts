/**
 * Supervision of the Mosquitto child: a broker that cannot start ends the node with a clear error; one that keeps
 * failing makes the node not live and exit non-zero; $SYS counters become metrics; a reload with a bad file is
 * refused. (A child killed once is restarted: test/node-mosquitto.test.ts.)
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { brokerMetrics } from '../src/intake/broker-metrics.js';
import { MosquittoBroker } from '../src/intake/mosquitto/mosquitto.js';
import { mosquittoPaths } from '../src/intake/mosquitto/mosquitto-conf.js';
import { hashPassword } from '../src/intake/security/passwd-file.js';
import { loadConfig } from '../src/config/load.js';
import { IngestNode } from '../src/node.js';
import type { BrokerSecurity } from '../src/intake/security/policy.js';
import { createLogger } from '../src/core/logger.js';
import { Metrics } from '../src/core/metrics.js';
import { hasMosquitto, mosquittoBin } from './helpers/mosquitto.js';
import { connect, publishAcked, refusal } from './helpers/mqtt-clients.js';
import { startNode } from './helpers/node-process.js';
import { freePort, waitFor } from './helpers/ports.js';
import { serviceAvailable } from './helpers/skip.js';

const run = serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto');

const servers: net.Server[] = [];
const brokers: MosquittoBroker[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(brokers.splice(0).map((b) => b.stop()));
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/** Holds a port, as another process would. Resolves once bound; rejects with EADDRINUSE while it is taken. */
function holdPort(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((s) => s.destroy());
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      servers.push(server);
      resolve(server);
    });
  });
}

function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-supervision-'));
  dirs.push(d);
  return d;
}

describe.runIf(run)('a node with a supervised Mosquitto', () => {
  it('ends with exit 1 and a clear error when Mosquitto cannot start (its port is taken)', async () => {
    const port = await freePort();
    await holdPort(port);
    const node = await startNode({ MQTT_BROKER_MODE: 'mosquitto' }, { mqttPort: port });
    const { code } = await node.exited;
    expect(code).toBe(1);
    const failed = node.logObjects().find((o) => o.code === 'START_FAILED') as { err: { message: string; code: string } };
    expect(failed.err.code).toBe('BROKER_START_FAILED');
    expect(failed.err.message).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}: address already in use`));
  });

  it('gives up after repeated failures: the node exits non-zero after a clean stop', async () => {
    const node = await startNode({ MQTT_BROKER_MODE: 'mosquitto' });
    try {
      await node.waitReady();
      const pid = Number(fs.readFileSync(mosquittoPaths(node.dataDir).pidFile, 'utf8'));
      process.kill(pid, 'SIGKILL');
      // Take the port as soon as the dead broker frees it: every restart then fails.
      await waitFor(() => holdPort(node.mqttPort).then(() => true, () => false), 10_000, 'the freed broker port');
      const { code } = await node.exited;
      expect(code).toBe(1);
      const fatal = node.logObjects().find((o) => o.code === 'NODE_FATAL') as { reason: string };
      expect(fatal.reason).toMatch(/^mosquitto failed 5 times within 120 s \(last: .*already in use.*\); giving up/);
      expect(node.logObjects().some((o) => o.code === 'NODE_STOPPED')).toBe(true); // the spool was closed cleanly first
    } finally {
      await node.stop(); // already exited when the test passed; SIGTERM stops its Mosquitto otherwise
    }
  }, 60_000);

  it('answers liveness 503 once the broker gave up', async () => {
    const env = { MQTT_BROKER_MODE: 'mosquitto', DATA_DIR: tmpDir(), PORT: '0', MQTT_HOST: '127.0.0.1', MQTT_PORT: String(await freePort()) };
    const { config } = loadConfig({ env, hostname: 'h' });
    const node = new IngestNode(config, createLogger('silent'));
    try {
      await node.start();
      const healthz = async () => (await fetch(`http://127.0.0.1:${node.httpPort}/healthz`)).status;
      expect(await healthz()).toBe(200);
      const pid = Number(fs.readFileSync(mosquittoPaths(env.DATA_DIR).pidFile, 'utf8'));
      process.kill(pid, 'SIGKILL');
      await waitFor(() => holdPort(config.MQTT_PORT).then(() => true, () => false), 10_000, 'the freed broker port');
      expect(await node.whenFatal()).toMatch(/giving up so that the platform restarts the node/);
      expect(node.isLive()).toBe(false);
      expect(await healthz()).toBe(503);
    } finally {
      await node.stop();
    }
  }, 60_000);
});

describe.runIf(run)('MosquittoBroker with its internal listener', () => {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger(
    'info',
    new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    }),
  );

  async function newBroker(security: Partial<BrokerSecurity> = {}, conf = {}) {
    const port = await freePort();
    const metrics = new Metrics({ defaultMetrics: false });
    const broker = new MosquittoBroker({
      bin: mosquittoBin()!,
      host: '127.0.0.1',
      port,
      dataDir: tmpDir(),
      logger,
      metrics,
      clientId: 'sub',
      conf: { sysIntervalS: 1, ...conf },
      security: { host: '127.0.0.1', plaintextPort: port, allowAnonymous: true, identityFromCert: false, maxPacketBytes: 1_048_576, maxConnections: 1000, ...security },
    });
    brokers.push(broker);
    await broker.start();
    return { broker, port, metrics, url: `mqtt://127.0.0.1:${port}` };
  }

  it("keeps the node's credential to its loopback listener, and reads $SYS into metrics, warning of drops", async () => {
    const { broker, url, metrics } = await newBroker({}, { maxQueuedMessages: 5 });
    const auth = broker.subscriberAuth();
    expect(auth.clientId).toMatch(/^sub-[A-Za-z0-9_-]{22}$/);
    expect(await refusal(broker.subscriberUrl(), { username: auth.username, password: 'guess' })).toMatch(/not authori[sz]ed/i);
    expect(await refusal(broker.subscriberUrl(), {})).toMatch(/not authori[sz]ed/i);
    expect(await refusal(broker.subscriberUrl(), { username: auth.username, password: auth.password })).toBe('connected');

    // A persistent session that is offline, and more QoS 1 messages than max_queued_messages.
    const sleeper = await connect(url, { clientId: 'sleeper', clean: false });
    await sleeper.subscribeAsync('load/#', { qos: 1 });
    await sleeper.endAsync();
    const pub = await connect(url);
    for (let i = 0; i < 20; i++) await publishAcked(pub, `load/${i}`, 'x');
    await pub.endAsync();
    const m = brokerMetrics(metrics);
    await waitFor(async () => (await m.messagesDropped.get()).values[0]?.value === 15, 10_000, '15 drops in $SYS');
    await waitFor(() => lines.some((l) => l.code === 'BROKER_MESSAGES_DROPPED' && l.dropped === 15 && /mosquitto dropped messages/.test(String(l.message))), 5_000, 'the drop warning');
    expect((await m.clientsConnected.get()).values[0]?.value).toBeGreaterThanOrEqual(1); // the $SYS reader itself
    expect((await m.storeMessages.get()).values[0]?.value).toBeGreaterThan(0);
  });

  it('refuses a reload with a bad password file and keeps serving with the old one', async () => {
    const dir = tmpDir();
    const authFile = path.join(dir, 'passwd');
    fs.writeFileSync(authFile, `alice:${hashPassword('pw')}\n`);
    const { broker, url, metrics } = await newBroker({ authFile, allowAnonymous: false });
    fs.writeFileSync(authFile, 'alice:not-a-hash\n');
    await expect(broker.reload()).rejects.toMatchObject({
      code: 'BROKER_RELOAD_FAILED',
      message: expect.stringMatching(/not reloading: password file .* line 1: user "alice"/),
    });
    expect((await brokerMetrics(metrics).reloads.get()).values).toEqual([{ value: 1, labels: { result: 'failed' } }]);
    expect(await refusal(url, { username: 'alice', password: 'pw' })).toBe('connected');
    fs.writeFileSync(authFile, `alice:${hashPassword('new-pw')}\n`);
    await broker.reload();
    await waitFor(async () => (await refusal(url, { username: 'alice', password: 'new-pw' })) === 'connected', 5_000, 'the new password');
  });
});
