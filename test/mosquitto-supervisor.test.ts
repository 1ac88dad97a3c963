import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import mqtt from 'mqtt';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { BrokerError } from '../src/core/errors.js';
import { createLogger } from '../src/core/logger.js';
import { Metrics } from '../src/core/metrics.js';
import { MosquittoBroker, type MosquittoBrokerOptions } from '../src/intake/mosquitto/mosquitto.js';
import { mosquittoPaths, renderMosquittoConf } from '../src/intake/mosquitto/mosquitto-conf.js';
import { canConnect, pidAlive } from '../src/intake/mosquitto/process-utils.js';
import { hasMosquitto, mosquittoBin } from './helpers/mosquitto.js';
import { freePort, waitFor } from './helpers/ports.js';
import { serviceAvailable } from './helpers/skip.js';

const run = serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto');

/** Every JSON log line the brokers under test write. */
const logLines: Array<Record<string, unknown>> = [];
const logger = createLogger(
  'info',
  new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) logLines.push(JSON.parse(line));
      done();
    },
  }),
);

const brokers: MosquittoBroker[] = [];
const strays: ChildProcess[] = [];
const servers: net.Server[] = [];
const dirs: string[] = [];

interface Fixture {
  broker: MosquittoBroker;
  metrics: Metrics;
  dataDir: string;
  port: number;
}

async function newBroker(over: Partial<MosquittoBrokerOptions> = {}): Promise<Fixture> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-broker-'));
  dirs.push(dataDir);
  const metrics = new Metrics();
  const port = over.port ?? (await freePort());
  const broker = new MosquittoBroker({
    bin: mosquittoBin() ?? 'mosquitto',
    host: '127.0.0.1',
    port,
    dataDir,
    logger,
    metrics,
    restartBaseMs: 100,
    restartCapMs: 1_000,
    stopGraceMs: 3_000,
    ...over,
  });
  brokers.push(broker);
  return { broker, metrics, dataDir, port };
}

/** Publishes one QoS 1 message through the broker and resolves with what a subscriber received. */
async function roundTrip(url: string, payload: string): Promise<string> {
  const sub = await mqtt.connectAsync(url, { reconnectPeriod: 0 });
  const pub = await mqtt.connectAsync(url, { reconnectPeriod: 0 });
  try {
    const got = new Promise<string>((resolve) => sub.on('message', (_t, msg) => resolve(msg.toString('utf8'))));
    await sub.subscribeAsync('test/roundtrip', { qos: 1 });
    await pub.publishAsync('test/roundtrip', payload, { qos: 1 });
    return await got;
  } finally {
    await Promise.all([sub.endAsync(true), pub.endAsync(true)]);
  }
}

afterEach(async () => {
  await Promise.all(brokers.splice(0).map((b) => b.stop()));
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

afterAll(async () => {
  for (const proc of strays) {
    if (proc.exitCode === null && proc.signalCode === null) {
      const closed = new Promise((r) => proc.once('close', r));
      proc.kill('SIGKILL');
      await closed;
    }
  }
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!run)('MosquittoBroker against the real mosquitto', () => {
  it('starts, serves publish/subscribe, relays its log, and stop() leaves no process behind', async () => {
    const { broker, metrics, port } = await newBroker();
    const ups: number[] = [];
    broker.on('up', () => ups.push(Date.now()));

    await broker.start();
    expect(broker.isUp()).toBe(true);
    expect(ups).toHaveLength(1);
    expect((await metrics.brokerUp.get()).values[0]?.value).toBe(1);
    const { pid } = broker.status();
    expect(pid).toBeGreaterThan(0);
    expect(fs.readFileSync(broker.pidFile, 'utf8').trim()).toBe(String(pid));
    expect(await roundTrip(`mqtt://127.0.0.1:${port}`, 'hello')).toBe('hello');

    // Each line of Mosquitto's output becomes a JSON log line of our own.
    await waitFor(
      () => logLines.some((l) => l.component === 'mosquitto' && /New client connected/.test(String(l.message))),
      5_000,
      'relayed connection log lines',
    );
    expect(logLines.find((l) => l.component === 'mosquitto' && /running/.test(String(l.message)))).toMatchObject({
      severity: 'INFO',
    });

    await broker.stop();
    expect(pidAlive(pid!)).toBe(false);
    expect(fs.existsSync(broker.pidFile)).toBe(false);
    expect(broker.status()).toMatchObject({ state: 'stopped' });
    expect((await metrics.brokerUp.get()).values[0]?.value).toBe(0);
    expect(await canConnect('127.0.0.1', port)).toBe(false);
    await broker.stop(); // idempotent
  });

  it('kills and restarts a child that no longer answers (SIGSTOP), and gives up after a crash loop of hangs', async () => {
    // Probes every 300 ms, 3 unanswered within about 1.5 s; production waits 5 s per probe (about 20 s).
    const probe = { intervalMs: 300, timeoutMs: 400, failures: 3 };
    const { broker, port } = await newBroker({ probe, crashLoopFailures: 2, crashLoopWindowMs: 60_000 });
    const downs: string[] = [];
    const fatal: Error[] = [];
    broker.on('down', (reason: string) => downs.push(reason));
    broker.on('fatal', (err: Error) => fatal.push(err));
    await broker.start();
    // A healthy broker answers every probe: nothing happens for several probe timeouts.
    await new Promise((r) => setTimeout(r, 2_000));
    expect(downs).toEqual([]);
    expect(broker.isUp()).toBe(true);

    const first = broker.status().pid!;
    process.kill(first, 'SIGSTOP');
    await waitFor(() => downs.length === 1, 10_000, 'the hung broker detected and killed');
    expect(logLines.find((l) => l.code === 'BROKER_UNRESPONSIVE')?.message).toMatch(/^mosquitto does not answer: the broker answered none of 3 probes/);
    expect(pidAlive(first)).toBe(false);
    await waitFor(() => broker.isUp() && broker.status().pid !== first, 15_000, 'the restarted broker');
    expect(await roundTrip(`mqtt://127.0.0.1:${port}`, 'after the hang')).toBe('after the hang');

    // It hangs again: the second failure within the window is a crash loop, so the node's liveness would fail.
    const second = broker.status().pid!;
    process.kill(second, 'SIGSTOP');
    await waitFor(() => fatal.length === 1, 10_000, "the 'fatal' event");
    expect(fatal[0]!.message).toMatch(/failed 2 times within 60 s \(last: died: hung: the broker answered none/);
    expect(logLines.find((l) => l.code === 'BROKER_CRASH_LOOP')?.message).toBe(fatal[0]!.message);
    expect(pidAlive(second)).toBe(false);
    expect(broker.isUp()).toBe(false);
  });

  it('restarts a child killed with SIGKILL, counting the restart', async () => {
    const { broker, metrics, port } = await newBroker();
    const downs: string[] = [];
    broker.on('down', (reason: string) => downs.push(reason));
    await broker.start();
    const first = broker.status().pid!;

    process.kill(first, 'SIGKILL');
    await waitFor(() => downs.length === 1, 10_000, "the 'down' event");
    expect(downs[0]).toMatch(/SIGKILL/);
    await waitFor(() => broker.isUp(), 15_000, 'the restarted broker');

    const second = broker.status().pid!;
    expect(second).not.toBe(first);
    expect(broker.status().restarts).toBe(1);
    expect((await metrics.brokerRestarts.get()).values[0]?.value).toBe(1);
    expect(fs.readFileSync(broker.pidFile, 'utf8').trim()).toBe(String(second));
    expect(await roundTrip(`mqtt://127.0.0.1:${port}`, 'again')).toBe('again');
  });

  it('stops a mosquitto left running by a SIGKILLed node on the same DATA_DIR, and takes its place', async () => {
    const { broker, dataDir, port } = await newBroker();
    const { dir, conf, pidFile } = mosquittoPaths(dataDir);
    // What the previous node left: our conf, a running mosquitto using it, and the pid file naming it.
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(conf, renderMosquittoConf({ host: '127.0.0.1', port, dataDir, user: os.userInfo().username }));
    const stale = spawn(mosquittoBin()!, ['-c', conf], { stdio: 'ignore' });
    strays.push(stale);
    fs.writeFileSync(pidFile, `${stale.pid}\n`);
    await waitFor(() => canConnect('127.0.0.1', port), 15_000, 'the stale mosquitto');

    await broker.start();
    expect(pidAlive(stale.pid!)).toBe(false);
    expect(broker.status().pid).not.toBe(stale.pid);
    expect(await roundTrip(`mqtt://127.0.0.1:${port}`, 'replaced')).toBe('replaced');
    expect(logLines.find((l) => l.code === 'BROKER_LEFTOVER')?.message).toMatch(/left running by a previous node/);
  });

  it('leaves alone a process whose pid a stale pid file names but which is not our mosquitto', async () => {
    const { broker } = await newBroker();
    fs.mkdirSync(path.dirname(broker.pidFile), { recursive: true });
    fs.writeFileSync(broker.pidFile, `${process.pid}\n`); // pid reuse: now the test runner itself
    await broker.start();
    expect(pidAlive(process.pid)).toBe(true);
    expect(broker.isUp()).toBe(true);
  });

  it('rejects start() with a clear error when another server holds the port', async () => {
    const port = await freePort();
    const server = net.createServer((s) => s.destroy());
    servers.push(server);
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    const { broker } = await newBroker({ port });

    const err = await broker.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('BROKER_START_FAILED');
    expect((err as Error).message).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}.*already in use`));
    expect(broker.status()).toMatchObject({ state: 'down' });
    expect(broker.status().pid).toBeUndefined();
  });

  it('rejects start() with the last lines of a broker that exits during start-up', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-fake-'));
    dirs.push(dir);
    const fake = path.join(dir, 'mosquitto');
    fs.writeFileSync(fake, '#!/bin/sh\necho "Opening ipv4 listen socket"\necho "Error: Address already in use" >&2\nexit 1\n', {
      mode: 0o755,
    });
    const { broker } = await newBroker({ bin: fake });
    await expect(broker.start()).rejects.toThrow(/exited with status 1.*\n.*Error: Address already in use/s);
    expect(broker.isUp()).toBe(false);
    expect(fs.existsSync(broker.pidFile)).toBe(false);

    const missing = await newBroker({ bin: path.join(dir, 'no-such-mosquitto') });
    await expect(missing.broker.start()).rejects.toThrow(/could not run it: .*ENOENT/);
  });
});
