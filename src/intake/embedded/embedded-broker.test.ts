import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/logger.js';
import { Metrics } from '../../core/metrics.js';
import type { SpoolWriter } from '../../spool/group-commit.js';
import { hashPassword } from '../security/passwd-file.js';
import { openPlaintext } from '../security/policy.js';
import { EmbeddedBroker } from './embedded-broker.js';
import { InboundRejections } from './inbound-rejections.js';

/** A logger whose JSON lines are kept for the test to read. */
function capturingLogger(): { logger: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger('debug', sink), lines };
}

async function rejected(metrics: Metrics, reason: string): Promise<number> {
  return (await metrics.rejectedInbound.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

const brokers: EmbeddedBroker[] = [];
const clients: MqttClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await Promise.all(brokers.splice(0).map((b) => b.stop()));
});

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

async function broker(writer: Pick<SpoolWriter, 'submit'>, authFile?: string) {
  const metrics = new Metrics({ defaultMetrics: false });
  const { logger, lines } = capturingLogger();
  const security = authFile ? { ...openPlaintext('127.0.0.1', 0), authFile, allowAnonymous: false } : undefined;
  const b = new EmbeddedBroker({ host: '127.0.0.1', port: 0, security, writer: writer as SpoolWriter, logger, metrics, onCommitted: () => undefined });
  brokers.push(b);
  await b.start();
  return { b, metrics, lines };
}

/** Publishes at QoS 1 and resolves when the broker closes the connection (a refused publish gets no PUBACK). */
async function publishRefused(port: number, topic: string): Promise<void> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0, clean: true });
  clients.push(client);
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
  let acked = false;
  client.publish(topic, 'x', { qos: 1 }, (err) => (acked = !err));
  await closed;
  expect(acked).toBe(false);
}

const stored = { submit: async () => ({ seq: 1, messageId: '01JABCDEFGHJKMNPQRSTV00001', duplicate: false }) } as unknown as SpoolWriter;

describe('the embedded broker counts and logs every publish it refuses', () => {
  it('a publish to $SYS: reserved_topic', async () => {
    const { b, metrics, lines } = await broker(stored);
    await publishRefused(b.port, '$SYS/broker/fake');
    expect(await rejected(metrics, 'reserved_topic')).toBe(1);
    expect(lines).toContainEqual(expect.objectContaining({ severity: 'WARNING', code: 'INBOUND_REJECTED', reason: 'reserved_topic', topic: '$SYS/broker/fake' }));
  });

  it('a topic Aedes refuses (more levels than it takes): invalid_topic', async () => {
    const { b, metrics, lines } = await broker(stored);
    await publishRefused(b.port, Array.from({ length: 150 }, (_, i) => `l${i}`).join('/'));
    expect(await rejected(metrics, 'invalid_topic')).toBe(1);
    expect(lines).toContainEqual(expect.objectContaining({ severity: 'WARNING', code: 'INBOUND_REJECTED', reason: 'invalid_topic', detail: 'topic has too many levels' }));
    expect(await rejected(metrics, 'reserved_topic')).toBe(0);
  });

  it('a message the spool cannot commit: commit_failed, not acknowledged', async () => {
    const failing = { submit: () => Promise.reject(new Error('disk I/O error')) };
    const { b, metrics, lines } = await broker(failing);
    await publishRefused(b.port, 'plant/line-1/temp');
    expect(await rejected(metrics, 'commit_failed')).toBe(1);
    expect(lines).toContainEqual(
      expect.objectContaining({ severity: 'WARNING', code: 'SPOOL_COMMIT_FAILED', reason: 'commit_failed', err: 'disk I/O error', topic: 'plant/line-1/temp' }),
    );
    // Counted once: the error Aedes reports for the closed connection is not counted again.
    expect(lines.filter((l) => l.reason === 'commit_failed')).toHaveLength(1);
  });
});

describe('InboundRejections', () => {
  it('counts every rejection and logs each reason at most once per interval, with how many it did not log', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const { logger, lines } = capturingLogger();
    let now = 0;
    const r = new InboundRejections({ metrics, logger, intervalMs: 10_000, now: () => now });
    for (let i = 0; i < 5; i++) r.record('commit_failed', { n: i }, 'not committed');
    r.record('reserved_topic', {}, 'reserved');
    now = 10_000;
    r.record('commit_failed', { n: 5 }, 'not committed');
    await new Promise((resolve) => setImmediate(resolve));
    expect(await rejected(metrics, 'commit_failed')).toBe(6);
    expect(await rejected(metrics, 'reserved_topic')).toBe(1);
    expect(lines.map((l) => [l.code, l.reason, l.n, l.notLoggedSinceLastWarning])).toEqual([
      ['SPOOL_COMMIT_FAILED', 'commit_failed', 0, undefined],
      ['INBOUND_REJECTED', 'reserved_topic', undefined, undefined],
      ['SPOOL_COMMIT_FAILED', 'commit_failed', 5, 4],
    ]);
  });
});

describe('a SIGHUP reload of the embedded broker', () => {
  it('refused by a bad password file: BROKER_RELOAD_FAILED, logged and thrown, and the previous users stay in force', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-reload-'));
    dirs.push(dir);
    const authFile = path.join(dir, 'passwd');
    fs.writeFileSync(authFile, `alice:${hashPassword('alice-Pa55')}\n`);
    const { b, metrics, lines } = await broker(stored, authFile);
    const alice = { protocolVersion: 4, reconnectPeriod: 0, clean: true, username: 'alice', password: 'alice-Pa55' } as const;
    const url = `mqtt://127.0.0.1:${b.port}`;

    fs.writeFileSync(authFile, `alice:${hashPassword('alice-Pa55')}\nbob:not-a-hash\n`);
    const refused = await b.reload().then(
      () => undefined,
      (err: unknown) => err,
    );
    // The password file's own error is the cause; the reload has its own code.
    expect(refused).toMatchObject({ name: 'BrokerError', code: 'BROKER_RELOAD_FAILED', cause: { code: 'PASSWORD_FILE_INVALID' } });
    expect((refused as Error).message).toMatch(/^password file .*: line 2: user "bob"/);
    expect(lines).toContainEqual(
      expect.objectContaining({ severity: 'ERROR', code: 'BROKER_RELOAD_FAILED', message: 'reload failed; the previous users, ACL and certificates stay in force' }),
    );
    expect((await metrics.registry.getSingleMetric('mqtt_ingest_broker_reloads_total')?.get())?.values).toContainEqual(
      expect.objectContaining({ labels: { result: 'failed' }, value: 1 }),
    );
    const client = await mqtt.connectAsync(url, alice);
    clients.push(client);

    fs.writeFileSync(authFile, `alice:${hashPassword('alice-Pa55')}\n`);
    await b.reload();
    expect(lines).toContainEqual(expect.objectContaining({ severity: 'INFO', code: 'BROKER_RELOADED', disconnected: 0 }));
  });
});
