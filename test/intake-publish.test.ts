/**
 * Intake.publish in each broker mode: the node publishes a Sparkplug NCMD and an edge node's MQTT.js client, subscribed
 * to its command topic (MQTT 3.1.1 on the embedded broker, which speaks no other; MQTT 5 on Mosquitto), receives the
 * exact bytes, at QoS 0 and QoS 1; the node's own command is not taken
 * into its spool, although the node subscribes to the whole Sparkplug namespace. The intake is built as the node
 * builds it (createIntake from a loaded configuration) over a real spool on disk; the external mode's broker is a
 * Mosquitto this test starts.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { createLogger } from '../src/core/logger.js';
import { Metrics } from '../src/core/metrics.js';
import { createIntake } from '../src/intake/create-intake.js';
import { PublishError, type Intake, type IntakeMode } from '../src/intake/intake.js';
import { SpoolWriter } from '../src/spool/group-commit.js';
import { Spool } from '../src/spool/spool.js';
import { hasMosquitto, mosquittoBin, startMosquitto, type TestMosquitto } from './helpers/mosquitto.js';
import { freePort, waitFor } from './helpers/ports.js';
import { serviceAvailable } from './helpers/skip.js';

const NCMD = 'spBv1.0/g/NCMD/e';
const haveMosquitto = serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto');

interface Rig {
  mode: IntakeMode;
  env: Record<string, string>;
  intake: Intake;
  spool: Spool;
  /** Where publishers and edge nodes connect. */
  url: string;
  /** The protocol the edge node speaks. */
  edgeProtocol: 4 | 5;
  dataDir: string;
  port: string;
  clientId: string;
  publishPort: number | undefined;
  shutdown(): Promise<void>;
}

const rigs: Rig[] = [];
const clients: MqttClient[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
  await Promise.all(rigs.splice(0).map((r) => r.shutdown()));
});
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** An intake as the node builds it; `same` restarts another rig's: its DATA_DIR, ports and client id. */
async function rig(mode: IntakeMode, env: Record<string, string>, publishPort?: number, same?: Rig): Promise<Rig> {
  const dataDir = same?.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), `mqtt-ingest-publish-${mode}-`));
  if (!same) dirs.push(dataDir);
  const { config } = loadConfig({
    env: {
      DATA_DIR: dataDir,
      MQTT_HOST: '127.0.0.1',
      MQTT_PORT: same?.port ?? String(await freePort()),
      MQTT_CLIENT_ID: same?.clientId ?? `publish-${mode}-${process.pid}-${dirs.length}`,
      // The whole namespace, commands included: the node's own NCMD comes back to its session, and is not stored.
      MQTT_TOPICS: 'spBv1.0/#',
      RETRY_INITIAL_DELAY_MS: '100',
      RETRY_MAX_DELAY_MS: '500',
      ...env,
    },
    hostname: 'publish-test',
  });
  const metrics = new Metrics({ defaultMetrics: false });
  const spool = Spool.open({ dir: path.join(dataDir, 'spool'), sinks: ['file'], maxBytes: config.SPOOL_MAX_BYTES, minFreeDiskBytes: config.SPOOL_MIN_FREE_BYTES });
  const writer = new SpoolWriter(spool, { metrics });
  const logger = createLogger('silent');
  const intake = createIntake(mode, { config, dataDir, writer, meta: spool, logger, metrics, onCommitted: () => undefined, onFatal: () => undefined });
  let shut: Promise<void> | undefined;
  const r: Rig = {
    mode,
    env,
    dataDir,
    port: String(config.MQTT_PORT),
    clientId: config.MQTT_CLIENT_ID,
    publishPort,
    intake,
    spool,
    url: `mqtt://127.0.0.1:${publishPort ?? config.MQTT_PORT}`,
    edgeProtocol: mode === 'embedded' ? 4 : 5,
    shutdown: () =>
      (shut ??= (async () => {
        await intake.stopTaking();
        writer.close();
        spool.close();
        await intake.stop();
      })()),
  };
  rigs.push(r);
  return r;
}

async function started(r: Rig): Promise<Rig> {
  await r.intake.start();
  await waitFor(() => r.intake.readiness().ready, 20_000, 'intake ready');
  return r;
}

/** An edge node: a client subscribed to its command topic, keeping what it receives. */
async function edgeNode(r: Rig): Promise<{ client: MqttClient; got: Array<{ topic: string; payload: Buffer; qos: number }> }> {
  const client = await mqtt.connectAsync(r.url, { protocolVersion: r.edgeProtocol, clientId: `edge-${randomBytes(4).toString('hex')}`, reconnectPeriod: 0 });
  clients.push(client);
  const got: Array<{ topic: string; payload: Buffer; qos: number }> = [];
  client.on('message', (topic, payload, packet) => got.push({ topic, payload: Buffer.from(payload), qos: packet.qos }));
  await client.subscribeAsync(NCMD, { qos: 1 });
  return { client, got };
}

/** Bytes as a protobuf payload has them: zero bytes, 0xff, not UTF-8. */
const command = (n: number) => Buffer.concat([Buffer.from([0x08, 0x00, 0xff, 0xfe, n]), randomBytes(32)]);

function storedTopics(spool: Spool): string[] {
  return spool.lease('file', 100).map((m) => m.topic);
}

async function publishesToEdgeNode(r: Rig): Promise<void> {
  const edge = await edgeNode(r);
  const zero = command(0);
  const one = command(1);
  await r.intake.publish(NCMD, zero, { qos: 0 });
  await r.intake.publish(NCMD, one, { qos: 1 });
  await waitFor(() => edge.got.length === 2, 10_000, 'the edge node received both commands');
  expect(edge.got.map((m) => [m.topic, m.qos, m.payload.toString('hex')])).toEqual([
    [NCMD, 0, zero.toString('hex')],
    [NCMD, 1, one.toString('hex')],
  ]);
  // A message from an edge node after the commands: once it is stored, the commands' echoes (before it on the
  // node's session) have come and gone, and only it is in the spool.
  await edge.client.publishAsync('spBv1.0/g/NDATA/e', Buffer.from([1]), { qos: 1 });
  await waitFor(() => r.spool.stats().messages >= 1, 10_000, 'the NDATA in the spool');
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(storedTopics(r.spool)).toEqual(['spBv1.0/g/NDATA/e']);
  if (r.mode === 'embedded') return;

  // The QoS 1 echo was acknowledged: a broker resends an unacknowledged message to the session after a restart,
  // when nothing remembers the publish any more, and it would be stored before the next message.
  await r.shutdown();
  const again = await started(await rig(r.mode, r.env, r.publishPort, r));
  const pub = await mqtt.connectAsync(again.url, { protocolVersion: 4, reconnectPeriod: 0 });
  clients.push(pub);
  await pub.publishAsync('spBv1.0/g/NDATA/e2', Buffer.from([2]), { qos: 1 });
  await waitFor(() => again.spool.stats().messages >= 2, 20_000, 'the second NDATA in the spool');
  expect(storedTopics(again.spool)).toEqual(['spBv1.0/g/NDATA/e', 'spBv1.0/g/NDATA/e2']);
}

async function refusedWhenNotRunning(r: Rig): Promise<void> {
  const before = await r.intake.publish(NCMD, command(2), { qos: 0 }).catch((e: unknown) => e);
  expect(before).toBeInstanceOf(PublishError);
  expect(before).toMatchObject({ reason: 'unavailable' });
  await started(r);
  await r.intake.publish(NCMD, command(3), { qos: 1 });
  await r.intake.stopTaking();
  const after = await r.intake.publish(NCMD, command(4), { qos: 1 }).catch((e: unknown) => e);
  expect(after).toMatchObject({ reason: 'unavailable', message: expect.stringMatching(/not published/) });
}

describe('Intake.publish: embedded broker', () => {
  const embedded = () => rig('embedded', { MQTT_BROKER_MODE: 'embedded' });

  it('publishes as the broker: the edge node gets the bytes at QoS 0 and 1, and the spool does not', async () => {
    await publishesToEdgeNode(await started(await embedded()));
  });

  it('refuses before start and after stop, queueing nothing', async () => {
    await refusedWhenNotRunning(await embedded());
  });

  it('refuses an invalid topic name', async () => {
    const r = await started(await embedded());
    await expect(r.intake.publish('spBv1.0/g/NCMD/#', command(5), { qos: 0 })).rejects.toMatchObject({ reason: 'refused' });
  });
});

describe.runIf(haveMosquitto)('Intake.publish: supervised Mosquitto', () => {
  const own = () => rig('mosquitto', { MQTT_BROKER_MODE: 'mosquitto', MOSQUITTO_BIN: mosquittoBin()! });

  it("publishes on the subscriber's session through the internal listener: the edge node gets the bytes, the spool does not", async () => {
    await publishesToEdgeNode(await started(await own()));
  });

  it('refuses before start and after stop, queueing nothing', async () => {
    await refusedWhenNotRunning(await own());
  });

  it("refuses a topic outside the Sparkplug namespace, which the node's credential may not write", async () => {
    const r = await started(await own());
    const edge = await edgeNode(r);
    await edge.client.subscribeAsync('other/#', { qos: 1 });
    await expect(r.intake.publish('other/cmd', command(6), { qos: 1 })).rejects.toMatchObject({ reason: 'refused' });
    await r.intake.publish(NCMD, command(7), { qos: 1 });
    await waitFor(() => edge.got.length === 1, 10_000, 'the NCMD');
    expect(edge.got.map((m) => m.topic)).toEqual([NCMD]);
  });
});

describe.runIf(haveMosquitto)('Intake.publish: external broker', () => {
  let broker: TestMosquitto | undefined;
  afterAll(async () => {
    await broker?.stop();
  });
  const external = async () => {
    broker ??= await startMosquitto({ persistence: true });
    return rig('external', { MQTT_BROKER: broker.url }, broker.port);
  };

  it("publishes on the subscriber's session: the edge node gets the bytes, the spool does not", async () => {
    await publishesToEdgeNode(await started(await external()));
  });

  it('refuses before start and after stop, queueing nothing', async () => {
    await refusedWhenNotRunning(await external());
  });

  it('refuses while the broker is down, at once, and publishes again once the subscriber is back', async () => {
    const r = await started(await external());
    await broker!.stop();
    await waitFor(() => !r.intake.readiness().ready, 10_000, 'the subscriber sees the broker gone');
    const t0 = Date.now();
    const err = await r.intake.publish(NCMD, command(8), { qos: 1 }).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(err).toMatchObject({ reason: 'unavailable', message: expect.stringContaining('not published: the subscriber is') });
    await broker!.restart();
    await waitFor(() => r.intake.readiness().ready, 20_000, 'the subscriber back');
    const edge = await edgeNode(r);
    const again = command(9);
    await r.intake.publish(NCMD, again, { qos: 1 });
    await waitFor(() => edge.got.length === 1, 10_000, 'the NCMD after the broker came back');
    expect(edge.got[0]!.payload.equals(again)).toBe(true);
  });
});
