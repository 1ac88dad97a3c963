/**
 * `mqtt-ingest smoke` against a real node (embedded broker with a password file) publishing to the real Pub/Sub
 * emulator: it passes when the marked message arrives with the contract attributes, and fails (exit 1) when it
 * cannot arrive, when the broker refuses it, when the broker is unreachable or holds the PUBACK back, and, before
 * publishing anything, when the subscription does not exist, when Pub/Sub does not answer, or without credentials.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Aedes } from 'aedes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword, updatePasswordText } from '../src/intake/security/passwd-file.js';
import { baseEnv, runCli, startNode, type NodeProcess } from './helpers/node-process.js';
import { freePort } from './helpers/ports.js';
import { createTopicAndSubscription, hasPubSubEmulator, pullAll, startPubSubEmulator, type PubSubEmulator } from './helpers/pubsub-emulator.js';
import { startSilentServer } from './helpers/silent-server.js';
import { serviceAvailable } from './helpers/skip.js';

const run = serviceAvailable('Pub/Sub emulator', hasPubSubEmulator(), 'install the Google Cloud CLI and its pubsub-emulator component');
const PASSWORD = 'smoke-password-81c2';

describe.runIf(run)('mqtt-ingest smoke', () => {
  let emu: PubSubEmulator;
  let node: NodeProcess;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'smoke-'));
  let broker: string;
  const smoke = (args: string[], env: Record<string, string> = {}) =>
    runCli(['smoke', '--broker', broker, '--project', emu.projectId, ...args], baseEnv({ PUBSUB_EMULATOR_HOST: emu.host, ...env }), 60_000);

  beforeAll(async () => {
    emu = await startPubSubEmulator();
    await createTopicAndSubscription(emu.host, emu.projectId, 'smoke-raw', 'smoke-verify');
    await createTopicAndSubscription(emu.host, emu.projectId, 'elsewhere', 'elsewhere-verify');
    const passwd = path.join(tmp, 'passwd');
    writeFileSync(passwd, updatePasswordText('', 'smoke', hashPassword(PASSWORD)).text, { mode: 0o600 });
    node = await startNode({
      MQTT_BROKER_MODE: 'embedded',
      MQTT_ALLOW_ANONYMOUS: 'false',
      MQTT_AUTH_FILE: passwd,
      GCP_PROJECT_ID: emu.projectId,
      PUBSUB_TOPIC: 'smoke-raw',
      PUBSUB_EMULATOR_HOST: emu.host,
    });
    await node.waitReady();
    broker = `mqtt://127.0.0.1:${node.mqttPort}`;
  });
  afterAll(async () => {
    await node?.kill();
    await emu?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('passes when the message arrives through the node with the contract attributes, and acknowledges it', async () => {
    const r = await smoke(['--subscription', 'smoke-verify', '--username', 'smoke', '--timeout', '30'], { SMOKE_MQTT_PASSWORD: PASSWORD });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^published smoke-[0-9a-f-]{36} to mqtt-ingest\/smoke\/smoke-[0-9a-f-]{36} via mqtt:\/\/127\.0\.0\.1:\d+: acknowledged/m);
    expect(r.stdout).toMatch(/^received smoke-[0-9a-f-]{36} in projects\/mqtt-ingest-test\/subscriptions\/smoke-verify after \d+ ms \(message_id [0-9A-Z]{26}\)$/m);
    expect(r.stdout).toContain('smoke test passed');
    // The summary line ends the run, on stdout with its other lines (off a terminal there is no live line).
    expect(r.stdout).toMatch(/\nsmoke: passed in \d+(\.\d)? s\n$/);
    expect(r.stdout).not.toContain('\x1b');
    // The password came from the environment and is printed nowhere.
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);
    // Acknowledged: a second smoke run's message is alone in the subscription.
    expect(await pullAll(emu.host, emu.projectId, 'smoke-verify', 1, 2_000)).toEqual([]);
    // The user name may come from SMOKE_MQTT_USERNAME, and a full subscription path needs no --project.
    const again = await runCli(
      ['smoke', '--broker', broker, '--subscription', `projects/${emu.projectId}/subscriptions/smoke-verify`, '--timeout', '30'],
      baseEnv({ PUBSUB_EMULATOR_HOST: emu.host, SMOKE_MQTT_USERNAME: 'smoke', SMOKE_MQTT_PASSWORD: PASSWORD }),
      60_000,
    );
    expect(again.code, again.stderr).toBe(0);
  });

  it('fails with exit 1 when the message does not reach the subscription in time, saying meanwhile that it waits', async () => {
    // --timeout covers the check and the publish too: 5 s leaves seconds of waiting for the message, under load as well.
    const r = await smoke(['--subscription', 'elsewhere-verify', '--username', 'smoke', '--timeout', '5'], { SMOKE_MQTT_PASSWORD: PASSWORD, MQTTINGEST_WAIT_NOTICE_MS: '1000' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/smoke test FAILED:\n {2}- smoke-[0-9a-f-]{36} did not arrive in projects\/mqtt-ingest-test\/subscriptions\/elsewhere-verify within 5 s/);
    expect(r.stdout).toMatch(/^still waiting for smoke-[0-9a-f-]{36} in projects\/mqtt-ingest-test\/subscriptions\/elsewhere-verify after 1 s…$/m);
  });

  it('checks the subscription before publishing: a missing one is named and nothing is left in the topic', async () => {
    const received = await node.metric('mqtt_ingest_messages_received_total');
    const r = await smoke(['--subscription', 'smoke-missing', '--username', 'smoke', '--timeout', '10'], { SMOKE_MQTT_PASSWORD: PASSWORD });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'smoke test FAILED: the subscription projects/mqtt-ingest-test/subscriptions/smoke-missing does not exist (5 NOT_FOUND: Subscription does not exist); ' +
        'nothing was published. Make it with `mqtt-ingest provision --verification-subscription smoke-missing`, or name an existing one\n',
    );
    expect(r.stdout).not.toMatch(/^published/m);
    // The node took no message: nothing waits in smoke-raw for a subscription no smoke test reads.
    expect(await node.metric('mqtt_ingest_messages_received_total')).toBe(received);
  });

  it('says it waits for a PUBACK the broker holds back, and fails at --timeout naming the broker', async () => {
    // A broker that takes the PUBLISH and never acknowledges it (as a node with a full spool does).
    const aedes = await Aedes.createBroker({ authorizePublish: () => undefined });
    const server = net.createServer((socket) => aedes.handle(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    try {
      const r = await runCli(
        ['smoke', '--broker', `mqtt://127.0.0.1:${port}`, '--subscription', 'smoke-verify', '--project', emu.projectId, '--timeout', '6'],
        baseEnv({ PUBSUB_EMULATOR_HOST: emu.host, MQTTINGEST_WAIT_NOTICE_MS: '1000' }),
      );
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(
        new RegExp(`^still waiting for the MQTT broker at mqtt://127\\.0\\.0\\.1:${port} \\(QoS 1 publish to mqtt-ingest/smoke/smoke-[0-9a-f-]{36}, waiting for its PUBACK\\) after 1 s…$`, 'm'),
      );
      expect(r.stderr).toMatch(new RegExp(`^smoke test FAILED: the MQTT broker at mqtt://127\\.0\\.0\\.1:${port} did not answer within \\d(\\.\\d)? s \\(QoS 1 publish to `, 'm'));
    } finally {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('fails with exit 1 when the broker refuses the credentials or cannot be reached', async () => {
    const refused = await smoke(['--subscription', 'smoke-verify', '--username', 'smoke', '--timeout', '5'], { SMOKE_MQTT_PASSWORD: 'wrong' });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/smoke test FAILED: .*(Not authorized|Bad User Name or Password)/i);
    const closedPort = await freePort();
    const unreachable = await runCli(
      ['smoke', '--broker', `mqtt://127.0.0.1:${closedPort}`, '--subscription', 'smoke-verify', '--project', emu.projectId, '--timeout', '5'],
      baseEnv({ PUBSUB_EMULATOR_HOST: emu.host }),
    );
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toContain('ECONNREFUSED');
    // Named as the broker, with the option that chose it; nothing more is asked of it.
    expect(unreachable.stderr).toMatch(new RegExp(`^smoke test FAILED: cannot reach the MQTT broker at mqtt://127\\.0\\.0\\.1:${closedPort} \\(--broker\\): .*ECONNREFUSED.* \\(connect\\)$`, 'm'));
    expect(unreachable.stdout).toMatch(new RegExp(`^smoke: FAILED after \\d+\\.\\d s \\(while connecting to the MQTT broker at mqtt://127\\.0\\.0\\.1:${closedPort}\\)\n$`));
  });

  it('refuses bad usage with exit 2 before publishing anything', async () => {
    for (const [args, why] of [
      [['--subscription', 'smoke-verify', '--timeout', '0'], '--timeout must be a whole number'],
      [['--subscription', 'smoke-verify', '--timeout', 'soon'], '--timeout must be a whole number'],
    ] as const) {
      const r = await smoke([...args]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(why);
    }
    const noProject = await runCli(['smoke', '--broker', broker, '--subscription', 's'], baseEnv({}));
    expect(noProject.code).toBe(2);
    expect(noProject.stderr).toContain('--subscription needs a project');
    const badBroker = await runCli(['smoke', '--broker', 'http://x', '--subscription', 'projects/p/subscriptions/s'], baseEnv({}));
    expect(badBroker.code).toBe(2);
  });
});

describe('mqtt-ingest smoke before it publishes', () => {
  const stackTrace = /^\s+at |^Error:|node:internal|Node\.js v\d/m;

  it('says it waits for a Pub/Sub that does not answer, fails naming it, and publishes nothing', async () => {
    const silent = await startSilentServer();
    // Stands in for the broker: counts connections, so that the test sees nothing was published.
    const broker = await startSilentServer();
    try {
      const r = await runCli(
        ['smoke', '--broker', `mqtt://${broker.host}`, '--subscription', 'projects/mqtt-ingest-test/subscriptions/smoke-verify', '--timeout', '3'],
        baseEnv({ PUBSUB_EMULATOR_HOST: silent.host, MQTTINGEST_WAIT_NOTICE_MS: '1000' }),
      );
      expect(r.code).toBe(1);
      const host = silent.host.replace(/\./g, '\\.');
      for (const n of [1, 2]) {
        expect(r.stdout).toMatch(new RegExp(`^still waiting for the Pub/Sub emulator at ${host} \\(projects/mqtt-ingest-test/subscriptions/smoke-verify: pull\\) after ${n} s…$`, 'm'));
      }
      expect(r.stderr).toMatch(new RegExp(`^smoke test FAILED: the Pub/Sub emulator at ${host} did not answer within \\d(\\.\\d)? s \\(projects/mqtt-ingest-test/subscriptions/smoke-verify: pull\\).*; nothing was published\\n$`));
      expect(silent.connections()).toBeGreaterThanOrEqual(1);
      expect(broker.connections()).toBe(0);
    } finally {
      await silent.stop();
      await broker.stop();
    }
  });

  it('without Google credentials: one message with the fix, exit 1, nothing published', async () => {
    const home = mkdtempSync(path.join(os.tmpdir(), 'smoke-home-'));
    const broker = await startSilentServer();
    try {
      const args = ['smoke', '--broker', `mqtt://${broker.host}`, '--subscription', 'projects/mqtt-ingest-prd/subscriptions/mqtt-ingest-smoke', '--timeout', '5'];
      const none = await runCli(args, baseEnv({ HOME: home }));
      expect(none.code).toBe(1);
      expect(none.stdout).toBe('');
      expect(none.stderr).toBe(
        'smoke test FAILED: no Google credentials found (Application Default Credentials), needed for Pub/Sub (the verification subscription). ' +
          'To fix: run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file, ' +
          'or run where a service account is attached (Compute Engine, GKE, App Engine, Cloud Run, Cloud Shell)\n',
      );
      const missing = path.join(home, 'no-such-key.json');
      const noFile = await runCli(args, baseEnv({ HOME: home, GOOGLE_APPLICATION_CREDENTIALS: missing }));
      expect(noFile.code).toBe(1);
      expect(noFile.stderr.split('\n').filter(Boolean)).toHaveLength(1);
      expect(noFile.stderr).toContain(`GOOGLE_APPLICATION_CREDENTIALS names ${missing}`);
      expect(noFile.stderr).toContain('To fix: set GOOGLE_APPLICATION_CREDENTIALS to a readable service account key file, or unset it and run `gcloud auth application-default login`');
      for (const r of [none, noFile]) expect(r.stderr).not.toMatch(stackTrace);
      expect(broker.connections()).toBe(0);
    } finally {
      await broker.stop();
      rmSync(home, { recursive: true, force: true });
    }
  });
});
