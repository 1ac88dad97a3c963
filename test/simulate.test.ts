/**
 * `mqtt-ingest simulate` against a real node (embedded broker with a password file, file sink on): what it
 * reports acknowledged is exactly what the node committed to its spool, every payload is JSON with each device's
 * seq increasing, and a broker that refuses or does not answer is reported, naming the URL, within 15 s (exit 1).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Aedes } from 'aedes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword, updatePasswordText } from '../src/intake/security/passwd-file.js';
import { readFileSink } from './helpers/file-output.js';
import { baseEnv, runCli, startNode, type NodeProcess } from './helpers/node-process.js';
import { freePort, waitFor } from './helpers/ports.js';
import { startSilentServer } from './helpers/silent-server.js';
import { WINDOW } from '../src/simulate/fleet.js';

const PASSWORD = 'sim-password-5e1d';

describe('mqtt-ingest simulate', () => {
  let node: NodeProcess;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'simulate-'));
  const passwordFile = path.join(tmp, 'password');
  let url: string;
  const out = () => path.join(node.dataDir, 'out');
  const simulate = (args: string[], env: Record<string, string> = {}) => runCli(['simulate', ...args], baseEnv(env), 60_000);

  beforeAll(async () => {
    const passwd = path.join(tmp, 'passwd');
    writeFileSync(passwd, updatePasswordText('', 'sim', hashPassword(PASSWORD)).text, { mode: 0o600 });
    writeFileSync(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
    node = await startNode({ MQTT_BROKER_MODE: 'embedded', MQTT_ALLOW_ANONYMOUS: 'false', MQTT_AUTH_FILE: passwd, FILE_SINK: 'on' });
    await node.waitReady();
    url = `mqtt://127.0.0.1:${node.mqttPort}`;
  });
  afterAll(async () => {
    await node?.kill();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('acknowledges exactly what the spool holds, every payload JSON with seq increasing per device', async () => {
    const started = Date.now();
    const r = await simulate(['--url', url, '--devices', '5', '--rate', '20', '--count', '500', '--json', '--username', 'sim', '--password-file', passwordFile]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(summary).toMatchObject({ url, devices: 5, connected: 5, qos: 1, sent: 500, acknowledged: 500, errors: 0, connectFailures: 0, unacknowledged: 0, ok: true });
    // 5 devices at 20 msg/s: 100 messages each take about 5 s, paced rather than sent at once.
    expect(summary.seconds).toBeGreaterThan(4.5);
    expect(Date.now() - started).toBeGreaterThan(4_500);
    expect(summary.rate).toBeGreaterThan(80);
    expect(summary.rate).toBeLessThanOrEqual(111);

    // A PUBACK leaves the embedded broker only after the spool commit: the count is already there.
    expect(await node.metric('mqtt_ingest_messages_received_total')).toBe(summary.acknowledged);
    const records = await waitFor(() => {
      const lines = readFileSink(out());
      return lines.length >= 500 && lines;
    }, 30_000, 'the file sink to hold the 500 messages');
    expect(records).toHaveLength(500);
    const seqs = new Map<string, number[]>();
    for (const rec of records) {
      const device = /^sim\/(dev-\d{4})\/telemetry$/.exec(rec.topic)?.[1];
      expect(device, rec.topic).toBeDefined();
      const payload = JSON.parse(rec.payload) as { device: string; seq: number; ts: number; pressure: number };
      expect(payload.device).toBe(device);
      expect(payload.ts).toBeGreaterThanOrEqual(started);
      expect(typeof payload.pressure).toBe('number');
      seqs.set(device!, [...(seqs.get(device!) ?? []), payload.seq]);
    }
    expect([...seqs.keys()].sort()).toEqual(['dev-0001', 'dev-0002', 'dev-0003', 'dev-0004', 'dev-0005']);
    for (const list of seqs.values()) expect([...list].sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    for (const list of seqs.values()) expect(list).toEqual([...list].sort((a, b) => a - b));
  });

  it('renders --payload and --topic templates, walks moving by exactly STEP, and reads MQTT_PASSWORD', async () => {
    const r = await simulate(['--url', url, '--devices', '2', '--rate', '50', '--count', '40', '--username', 'sim', '--qos', '2', '--protocol', '5', '--topic', 'walks/{device}', '--payload', '{"n":{seq},"t":{walk:t:20.0:0.5},"d":"{device}"}'], { MQTT_PASSWORD: PASSWORD });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^simulate: 40 sent, 40 acknowledged, 0 errors, [\d.]+ msg\/s over [\d.]+ s, 2 devices\n$/);
    const records = await waitFor(() => {
      const lines = readFileSink(out()).filter((rec) => rec.topic.startsWith('walks/'));
      return lines.length >= 40 && lines;
    }, 30_000, 'the 40 walk messages in the file sink');
    for (const device of ['dev-0001', 'dev-0002']) {
      const values = records.filter((rec) => rec.topic === `walks/${device}`).map((rec) => JSON.parse(rec.payload) as { n: number; t: number; d: string });
      expect(values.map((v) => v.n)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expect(values[0]!.t).toBe(20);
      for (let i = 1; i < values.length; i++) expect(Math.abs(values[i]!.t - values[i - 1]!.t)).toBe(0.5);
      expect(new Set(values.map((v) => v.d))).toEqual(new Set([device]));
    }
  });

  it('a refused password fails to connect, exit 1, naming the URL', async () => {
    const wrong = path.join(tmp, 'wrong');
    writeFileSync(wrong, 'not-the-password\n');
    const r = await simulate(['--url', url, '--devices', '3', '--count', '3', '--json', '--username', 'sim', '--password-file', wrong]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`simulate: cannot connect to ${url}: `);
    expect(r.stderr).not.toContain('not-the-password');
    expect(JSON.parse(r.stdout)).toMatchObject({ sent: 0, connectFailures: 3, ok: false });
  });

  it('a port nobody listens on, and a broker that never answers, are reported within 15 s naming the URL', async () => {
    const closed = `mqtt://127.0.0.1:${await freePort()}`;
    const refused = await simulate(['--url', closed, '--devices', '3']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`^simulate: cannot connect to ${closed}: .*ECONNREFUSED`, 'm'));
    expect(refused.stdout).toBe('simulate: 0 sent, 0 acknowledged, 3 errors, 0.0 msg/s over 0.0 s, 3 devices (3 of them failed to connect)\n');

    const silent = await startSilentServer();
    try {
      const started = Date.now();
      const r = await simulate(['--url', `mqtt://${silent.host}`, '--devices', '2', '--json']);
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`simulate: cannot connect to mqtt://${silent.host}: `);
      expect(JSON.parse(r.stdout)).toMatchObject({ connected: 0, connectFailures: 2, ok: false });
      expect(silent.connections()).toBe(2);
    } finally {
      await silent.stop();
    }
  });

  it('a broker holding PUBACKs back gets at most the in-flight window per device, and the run fails unacknowledged', async () => {
    // It takes every PUBLISH and never acknowledges one, as a node with a full spool does.
    let received = 0;
    const aedes = await Aedes.createBroker({ authorizePublish: () => void (received += 1) });
    const server = net.createServer((socket) => aedes.handle(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    try {
      // 2 devices at 1000 msg/s for 1 s would be 2000 messages unbounded.
      const r = await simulate(['--url', `mqtt://127.0.0.1:${port}`, '--devices', '2', '--rate', '1000', '--duration', '1', '--json']);
      expect(r.code).toBe(1);
      expect(JSON.parse(r.stdout)).toMatchObject({ sent: 2 * WINDOW, acknowledged: 0, unacknowledged: 2 * WINDOW, connectFailures: 0, ok: false });
      expect(r.stderr).toContain(`simulate: ${2 * WINDOW} publishes were not acknowledged within 10 s of the end`);
      // Aedes reads no further packets of a client while a publish waits for authorization: at most what was sent.
      expect(received).toBeGreaterThan(0);
      expect(received).toBeLessThanOrEqual(2 * WINDOW);
    } finally {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('lists every invalid option at once, exit 2, publishing nothing', async () => {
    const r = await simulate(['--url', url, '--devices', 'many', '--qos', '3', '--duration', '5', '--count', '5', '--payload', '{"seq":{seq']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n').filter((l) => l.startsWith('  - '))).toEqual([
      '  - --devices must be a whole number from 1 to 100000',
      '  - --qos must be 0, 1 or 2',
      '  - give --duration or --count, not both',
      expect.stringMatching(/^ {2}- --payload must render to JSON/),
    ]);
  });
});
