import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/logger.js';
import { hasMosquitto, mosquittoBin } from '../../../test/helpers/mosquitto.js';
import { freePort, waitFor } from '../../../test/helpers/ports.js';
import { serviceAvailable } from '../../../test/helpers/skip.js';
import { MosquittoBroker } from './mosquitto.js';

const run = serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto');

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

/** A broker as a new node process builds it on `dataDir` (a restart is a new MosquittoBroker). */
async function broker(dataDir: string, port: number): Promise<MosquittoBroker> {
  const b = new MosquittoBroker({ bin: mosquittoBin()!, host: '127.0.0.1', port, dataDir, logger: createLogger('silent'), clientId: 'ports-test' });
  cleanups.push(() => b.stop());
  await b.start();
  return b;
}

/** The node's subscriber session: persistent, on the internal listener with the internal credential. */
function subscriberOptions(b: MosquittoBroker): mqtt.IClientOptions {
  const auth = b.subscriberAuth();
  return {
    protocolVersion: 5,
    clientId: auth.clientId!,
    username: auth.username,
    password: auth.password,
    clean: false,
    properties: { sessionExpiryInterval: 3600 },
    reconnectPeriod: 0,
  };
}

describe.skipIf(!run)("the loopback port of the node's own clients across node restarts", () => {
  it("stays the same, so the subscriber's persisted session takes messages published before it reconnects", async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-ports-'));
    cleanups.push(async () => fs.rmSync(dataDir, { recursive: true, force: true }));
    const port = await freePort();
    const first = await broker(dataDir, port);
    const sub = await mqtt.connectAsync(first.subscriberUrl(), subscriberOptions(first));
    await sub.subscribeAsync('k/#', { qos: 1 });
    await sub.endAsync();
    await first.stop();

    const second = await broker(dataDir, port);
    expect(second.subscriberUrl()).toBe(first.subscriberUrl());
    // Published after the restart, before the subscriber is back: the session, with its ACL, queues both.
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 });
    await pub.publishAsync('k/1', 'one', { qos: 1 });
    await pub.publishAsync('k/0', 'zero', { qos: 0 });
    await pub.endAsync();
    const got: string[] = [];
    const back = mqtt.connect(second.subscriberUrl(), subscriberOptions(second));
    cleanups.push(() => back.endAsync(true));
    back.on('message', (topic) => got.push(topic));
    await waitFor(() => got.length === 2, 10_000, 'both messages queued for the session');
    expect(got.sort()).toEqual(['k/0', 'k/1']);
  });

  it('is replaced when another process holds it by the next start, and the broker starts', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-ports-'));
    cleanups.push(async () => fs.rmSync(dataDir, { recursive: true, force: true }));
    const port = await freePort();
    const first = await broker(dataDir, port);
    const taken = Number(new URL(first.subscriberUrl()).port);
    await first.stop();
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(taken, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => squatter.close(resolve)));

    const second = await broker(dataDir, port);
    expect(second.isUp()).toBe(true);
    expect(Number(new URL(second.subscriberUrl()).port)).not.toBe(taken);
    expect(fs.readFileSync(path.join(dataDir, 'mosquitto', 'internal-port'), 'utf8').trim()).toBe(new URL(second.subscriberUrl()).port);
  });
});
