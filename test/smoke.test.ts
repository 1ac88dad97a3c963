/**
 * `mqtt-ingest smoke` against a real node (embedded broker with a password file) publishing to the real Pub/Sub
 * emulator: it passes when the marked message arrives with the contract attributes, and fails (exit 1) when it
 * cannot arrive, when the broker refuses it, or when the broker is unreachable.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword, updatePasswordText } from '../src/broker/security/passwd-file.js';
import { baseEnv, runCli, startNode, type NodeProcess } from './helpers/node-process.js';
import { freePort } from './helpers/ports.js';
import { createTopicAndSubscription, hasPubSubEmulator, pullAll, startPubSubEmulator, type PubSubEmulator } from './helpers/pubsub-emulator.js';
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

  it('fails with exit 1 when the message does not reach the subscription in time', async () => {
    const r = await smoke(['--subscription', 'elsewhere-verify', '--username', 'smoke', '--timeout', '3'], { SMOKE_MQTT_PASSWORD: PASSWORD });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/smoke test FAILED:\n {2}- smoke-[0-9a-f-]{36} did not arrive in projects\/mqtt-ingest-test\/subscriptions\/elsewhere-verify within 3 s/);
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
