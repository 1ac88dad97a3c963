import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { BrokerError } from '../../core/errors.js';
import { createLogger } from '../../core/logger.js';
import { hasMosquitto, mosquittoBin, startMosquitto, type TestMosquitto } from '../../../test/helpers/mosquitto.js';
import { freePort } from '../../../test/helpers/ports.js';
import { serviceAvailable } from '../../../test/helpers/skip.js';
import { mosquittoPaths, renderMosquittoConf } from './mosquitto-conf.js';
import { MosquittoBroker, findOnPath } from './mosquitto.js';
import { canConnect, pidAlive, pollUntil } from './process-utils.js';

const tmpDirs: string[] = [];
function tmpDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-conf-'));
  tmpDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of tmpDirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe('renderMosquittoConf', () => {
  const base = { host: '0.0.0.0', port: 1883, dataDir: '/var/lib/ingest', user: 'node' };

  it('renders persistence, raised queue limits, the listener and stderr logging', () => {
    const conf = renderMosquittoConf(base);
    const lines = conf.split('\n').filter((l) => l && !l.startsWith('#'));
    expect(lines).toEqual(
      expect.arrayContaining([
        'user node',
        'persistence true',
        'persistence_location /var/lib/ingest/mosquitto/',
        'autosave_interval 5',
        'autosave_on_changes false',
        'max_queued_messages 1000000',
        'max_queued_bytes 0',
        'max_inflight_messages 1000',
        'queue_qos0_messages true',
        'persistent_client_expiration 14d',
        'listener 1883 0.0.0.0',
        'allow_anonymous true',
        'log_dest stderr',
        'connection_messages true',
        'set_tcp_nodelay true',
      ]),
    );
    expect(lines).not.toContain('log_dest stdout');
  });

  it('renders `::` as an address-less listener, since `listener <port> ::` is IPv6-only', () => {
    expect(renderMosquittoConf({ ...base, host: '::' })).toMatch(/^listener 1883$/m);
  });

  it('takes the limits it is given', () => {
    const conf = renderMosquittoConf({
      ...base,
      maxInflightMessages: 50,
      maxQueuedMessages: 5000,
      persistentClientExpiration: '2w',
      autosaveIntervalS: 5,
      persistence: false,
      queueQos0Messages: false,
    });
    expect(conf).toMatch(/^max_inflight_messages 50$/m);
    expect(conf).toMatch(/^max_queued_messages 5000$/m);
    expect(conf).toMatch(/^persistent_client_expiration 2w$/m);
    expect(conf).toMatch(/^autosave_interval 5$/m);
    expect(conf).toMatch(/^persistence false$/m);
    expect(conf).toMatch(/^queue_qos0_messages false$/m);
  });

  it('rejects every bad option at once, with a typed error', () => {
    const render = () =>
      renderMosquittoConf({
        host: 'a\nlistener 1 0.0.0.0',
        port: 70000,
        dataDir: 'relative',
        user: 'node',
        persistentClientExpiration: '30s',
      });
    expect(render).toThrow(BrokerError);
    expect(render).toThrow(/host must be a non-empty single line.*dataDir must be absolute.*port must be.*30s/s);
  });
});

describe('findOnPath', () => {
  it('finds an executable on PATH and answers undefined for a missing one', () => {
    expect(findOnPath('sh')).toMatch(/\/sh$/);
    expect(findOnPath('no-such-binary-mqtt-ingest')).toBeUndefined();
    expect(findOnPath('/bin/sh')).toBe('/bin/sh');
  });

  it('also looks in the sbin dirs that a non-root PATH lacks on Debian', () => {
    const found = findOnPath('mosquitto', '/nonexistent');
    if (fs.existsSync('/usr/sbin/mosquitto')) expect(found).toBe('/usr/sbin/mosquitto');
  });
});

describe('MosquittoBroker without a process', () => {
  const logger = createLogger('silent');
  it('has no subscriber URL before start() picked the loopback listener of the node\'s own clients', () => {
    const b = new MosquittoBroker({ bin: 'mosquitto', host: '0.0.0.0', port: 1999, dataDir: '/tmp/x', logger });
    expect(() => b.subscriberUrl()).toThrow(BrokerError);
  });

  it('is down before start', () => {
    const b = new MosquittoBroker({ bin: 'mosquitto', host: '0.0.0.0', port: 1999, dataDir: '/tmp/x', logger });
    expect(b.isUp()).toBe(false);
    expect(b.status()).toMatchObject({ mode: 'mosquitto', state: 'down', restarts: 0 });
  });
});

const run = serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto');

describe.skipIf(!run)('the rendered conf against the real mosquitto', () => {
  let proc: ChildProcess | undefined;
  let external: TestMosquitto | undefined;
  afterAll(async () => {
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      const closed = new Promise((r) => proc!.once('close', r));
      proc.kill('SIGKILL');
      await closed;
    }
    await external?.stop();
  });

  it('is accepted: mosquitto listens, logs to stderr without errors, and saves its database where told', async () => {
    const dataDir = tmpDir();
    const port = await freePort();
    const { dir, conf, db } = mosquittoPaths(dataDir);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(conf, renderMosquittoConf({ host: '127.0.0.1', port, dataDir, user: os.userInfo().username }));

    const child = spawn(mosquittoBin()!, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc = child;
    const closed = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
    const stdout: string[] = [];
    const stderr: string[] = [];
    readline.createInterface({ input: child.stdout! }).on('line', (l) => stdout.push(l));
    readline.createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));

    // "running" is logged once the listeners are open; seeing it live proves stderr is not buffered.
    expect(await pollUntil(() => stderr.some((l) => l.includes('running')), 15_000)).toBe(true);
    expect(await canConnect('127.0.0.1', port)).toBe(true);
    expect(stderr.filter((l) => /^Error/.test(l))).toEqual([]);
    // log_timestamp false: the node adds its own timestamp to each relayed line.
    expect(stderr.find((l) => l.includes('running'))).toMatch(/^mosquitto version \S+ running$/);

    child.kill('SIGTERM');
    expect(await closed).toBe(0);
    expect(stdout).toEqual([]);
    expect(fs.existsSync(db)).toBe(true);
  });

  it('serves the test helper, whose stop() really ends the process', async () => {
    external = await startMosquitto({ persistence: false });
    expect(await canConnect('127.0.0.1', external.port)).toBe(true);
    const pid = external.proc.pid!;
    await external.restart();
    expect(external.proc.pid).not.toBe(pid);
    expect(pidAlive(pid)).toBe(false);
    await external.stop();
    expect(pidAlive(external.proc.pid!)).toBe(false);
    expect(await canConnect('127.0.0.1', external.port)).toBe(false);
  });
});

describe.skipIf(!run)('MosquittoBroker stop', () => {
  it('clears the SIGTERM grace timer once mosquitto has exited, so nothing keeps the process alive', async () => {
    const graceMs = 43_210; // distinctive, to find this timer among others
    const b = new MosquittoBroker({
      bin: mosquittoBin()!,
      host: '127.0.0.1',
      port: await freePort(),
      dataDir: tmpDir(),
      logger: createLogger('silent'),
      stopGraceMs: graceMs,
    });
    await b.start();
    const graceTimers: unknown[] = [];
    const realSetTimeout = globalThis.setTimeout;
    const set = vi.spyOn(globalThis, 'setTimeout').mockImplementation(((fn: () => void, ms?: number, ...args: unknown[]) => {
      const t = realSetTimeout(fn, ms, ...args);
      if (ms === graceMs) graceTimers.push(t);
      return t;
    }) as unknown as typeof setTimeout);
    const clear = vi.spyOn(globalThis, 'clearTimeout');
    try {
      const t0 = Date.now();
      await b.stop();
      expect(Date.now() - t0).toBeLessThan(graceMs);
      expect(graceTimers).toHaveLength(1);
      expect(clear).toHaveBeenCalledWith(graceTimers[0]);
    } finally {
      set.mockRestore();
      clear.mockRestore();
    }
    expect(b.status().state).toBe('stopped');
  });
});
