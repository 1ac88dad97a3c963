import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasOpenssl, makePki, type TestPki } from '../../../test/helpers/certs.js';
import { serviceAvailable } from '../../../test/helpers/skip.js';
import { createLogger } from '../../core/logger.js';
import { Metrics } from '../../core/metrics.js';
import { brokerMetrics } from '../broker-metrics.js';
import { CertWatch } from './cert-watch.js';
import { loadTlsMaterial } from './tls-material.js';

const run = serviceAvailable('openssl', hasOpenssl(), 'apt-get install openssl');
const DAY = 86_400_000;

describe.runIf(run)('CertWatch', () => {
  let pki: TestPki;
  beforeAll(() => {
    pki = makePki();
  });
  afterAll(() => pki?.cleanup());

  function watch(now: () => number) {
    const lines: Array<Record<string, unknown>> = [];
    const logger = createLogger(
      'info',
      new Writable({
        write(chunk: Buffer, _e, done) {
          for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
          done();
        },
      }),
    );
    const metrics = new Metrics({ defaultMetrics: false });
    const w = new CertWatch({ metrics: brokerMetrics(metrics), logger, now });
    return { w, lines, metrics };
  }

  it('sets the expiry gauges for the server chain and the client CA, and warns nothing 30 days ahead', async () => {
    const { material } = loadTlsMaterial({ certFile: pki.serverCert, keyFile: pki.serverKey, caFile: pki.caCert });
    const { w, lines, metrics } = watch(Date.now);
    w.update(material!);
    w.stop();
    const values = (await brokerMetrics(metrics).tlsCertExpiry.get()).values;
    const server = values.find((v) => v.labels.cert === 'server')!.value;
    const ca = values.find((v) => v.labels.cert === 'client_ca')!.value;
    expect(server).toBeGreaterThan(29 * 86_400);
    expect(ca).toBeGreaterThan(29 * 86_400);
    await new Promise((r) => setImmediate(r));
    expect(lines.filter((l) => l.severity === 'WARNING')).toEqual([]);
  });

  it('warns from 14 days ahead, then at most once a day', async () => {
    const expiring = pki.serverExpiringIn(10);
    const { material } = loadTlsMaterial({ certFile: expiring.cert, keyFile: expiring.key });
    let now = Date.now();
    const { w, lines } = watch(() => now);
    w.update(material!);
    (w as unknown as { check(): void }).check(); // the hourly check, an hour later
    now += DAY + 1;
    (w as unknown as { check(): void }).check();
    w.stop();
    await new Promise((r) => setImmediate(r));
    const warnings = lines.filter((l) => l.code === 'TLS_CERT_EXPIRING');
    expect(warnings.map((l) => l.severity)).toEqual(['WARNING', 'WARNING']);
    expect(warnings[0]!.message).toMatch(/TLS certificates expire within 14 days/);
    expect(warnings[0]!.expiring).toEqual([expect.stringMatching(/^server \(\d{4}-/)]);
  });
});
