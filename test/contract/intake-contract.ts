/**
 * What every intake (src/intake/intake.ts) must do, whatever its broker mode: one suite, run by one small test
 * file per mode (intake-embedded.test.ts, intake-mosquitto.test.ts, intake-external.test.ts), in the manner of
 * aedes-persistence's abstract.js. Each test builds the intake as the node does (createIntake from a loaded
 * configuration) over a real spool on disk and a real group commit, and publishes with MQTT.js to the listener
 * publishers use: the embedded broker's, the node's own Mosquitto's, or the external Mosquitto's.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { loadConfig, type Config } from '../../src/config/load.js';
import { SpoolClosedError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';
import { Metrics } from '../../src/core/metrics.js';
import { createIntake, resolveBrokerMode } from '../../src/intake/create-intake.js';
import type { Intake, IntakeMode } from '../../src/intake/intake.js';
import { SpoolWriter } from '../../src/spool/group-commit.js';
import { Spool, type AppendResult, type SourcedMessage } from '../../src/spool/spool.js';
import { closedByBroker, GARBAGE, openTcp } from '../helpers/bad-input.js';
import { freePort, waitFor } from '../helpers/ports.js';

export interface IntakeHarness {
  mode: IntakeMode;
  /** Starts what the mode needs outside the node (the external broker). */
  before?(): Promise<void>;
  after?(): Promise<void>;
  /** Settings of the mode, added to those of the suite. */
  env(): Record<string, string>;
  /** The port publishers connect to, for a configuration. */
  publishPort(config: Config): number;
  /** The publisher's PUBACK is the intake's own (the embedded broker), not a broker's in front of it. */
  acksPublishers: boolean;
  /** Values the status must never show (a password, the secret part of a client id), once started. */
  secrets(rig: Rig): string[];
}

/** The group commit, with a gate: while held, submitted messages wait before they reach the spool. */
class GatedWriter extends SpoolWriter {
  private held: Array<{ go: () => void; fail: (err: Error) => void }> = [];
  private holding = false;

  /** Messages waiting at the gate. */
  get heldSubmissions(): number {
    return this.held.length;
  }

  hold(): void {
    this.holding = true;
  }

  release(): void {
    this.holding = false;
    for (const h of this.held.splice(0)) h.go();
  }

  /** What a writer closed by SIGTERM does with what waits: refuses it. */
  failHeld(): void {
    for (const h of this.held.splice(0)) h.fail(new SpoolClosedError());
  }

  override submitMany(messages: SourcedMessage[]): Promise<AppendResult[]> {
    if (!this.holding) return super.submitMany(messages);
    return new Promise((resolve, reject) => {
      this.held.push({ go: () => super.submitMany(messages).then(resolve, reject), fail: reject });
    });
  }
}

export interface Rig {
  config: Config;
  dataDir: string;
  spool: Spool;
  writer: GatedWriter;
  intake: Intake;
  logs: Array<Record<string, unknown>>;
  fatal: string[];
  publishUrl: string;
  /** The node's stop order: stop taking, refuse what waits for a commit, close the spool, stop the rest. */
  shutdown(): Promise<void>;
}

const TOPIC = 'contract';

export function intakeContract(h: IntakeHarness): void {
  const rigs: Rig[] = [];
  const clients: MqttClient[] = [];
  const dirs: string[] = [];
  let n = 0;

  beforeAll(async () => {
    await h.before?.();
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
    await Promise.all(rigs.splice(0).map((r) => r.shutdown()));
  });
  afterAll(async () => {
    await h.after?.();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  /** An intake as the node builds it; `same` reuses another rig's DATA_DIR, port and client id (a restart). */
  async function rig(same?: Rig): Promise<Rig> {
    const dataDir = same?.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), `mqtt-ingest-intake-${h.mode}-`));
    if (!same) dirs.push(dataDir);
    const env = {
      DATA_DIR: dataDir,
      MQTT_HOST: '127.0.0.1',
      MQTT_PORT: same ? String(same.config.MQTT_PORT) : String(await freePort()),
      MQTT_CLIENT_ID: same?.config.MQTT_CLIENT_ID ?? `contract-${h.mode}-${process.pid}-${++n}`,
      MQTT_TOPICS: `${TOPIC}/#`,
      RETRY_INITIAL_DELAY_MS: '100',
      ...h.env(),
    };
    const { config } = loadConfig({ env, hostname: 'contract' });
    expect(resolveBrokerMode(config)).toBe(h.mode);
    const logs: Array<Record<string, unknown>> = [];
    const logger = createLogger(
      'info',
      new Writable({
        write(chunk: Buffer, _enc, done) {
          for (const l of chunk.toString().split('\n').filter(Boolean)) logs.push(JSON.parse(l) as Record<string, unknown>);
          done();
        },
      }),
    );
    const metrics = new Metrics({ defaultMetrics: false });
    const spool = Spool.open({ dir: path.join(dataDir, 'spool'), sinks: ['file'], maxBytes: config.SPOOL_MAX_BYTES, minFreeDiskBytes: config.SPOOL_MIN_FREE_BYTES });
    const writer = new GatedWriter(spool, { metrics });
    const fatal: string[] = [];
    const intake = createIntake(h.mode, { config, dataDir, writer, meta: spool, logger, metrics, onCommitted: () => undefined, onFatal: (r) => fatal.push(r) });
    let shut: Promise<void> | undefined;
    const r: Rig = {
      config,
      dataDir,
      spool,
      writer,
      intake,
      logs,
      fatal,
      publishUrl: `mqtt://127.0.0.1:${h.publishPort(config)}`,
      shutdown: () =>
        (shut ??= (async () => {
          await intake.stopTaking();
          writer.failHeld();
          writer.close();
          spool.close();
          await intake.stop();
        })()),
    };
    rigs.push(r);
    return r;
  }

  async function started(same?: Rig): Promise<Rig> {
    const r = await rig(same);
    await r.intake.start();
    await waitFor(() => r.intake.readiness().ready, 15_000, `${h.mode} intake ready`);
    return r;
  }

  /** A publisher that reconnects (and then resends what was not acknowledged) every 100 ms. */
  async function publisher(url: string): Promise<MqttClient> {
    const c = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 100, connectTimeout: 5_000 });
    c.on('error', () => undefined);
    clients.push(c);
    return c;
  }

  const payloads = (spool: Spool): string[] =>
    spool.lease('file', 1000).map((m) => Buffer.from(m.payload).toString());

  it('is not ready before start, is ready once it takes messages, and not ready after stop', async () => {
    const r = await rig();
    const before = r.intake.readiness();
    expect(before.ready).toBe(false);
    expect(before.reason).toEqual(expect.any(String));
    await r.intake.start();
    await waitFor(() => r.intake.readiness().ready, 15_000, 'ready');
    expect(r.intake.readiness().reason).toBeUndefined();
    const pub = await publisher(r.publishUrl);
    await pub.publishAsync(`${TOPIC}/1`, 'one', { qos: 1 });
    await waitFor(() => r.spool.stats().messages === 1, 10_000, 'the message in the spool');
    await r.intake.stopTaking();
    expect(r.intake.readiness().ready).toBe(false);
    await r.shutdown();
    expect(r.intake.readiness()).toEqual({ ready: false, reason: expect.any(String) });
    expect(r.fatal).toEqual([]);
  });

  it('acknowledges a QoS 1 message only once it is committed: one not committed at stop comes again after a restart', async () => {
    const first = await started();
    const pub = await publisher(first.publishUrl);
    let acked = false;
    first.writer.hold();
    const publishing = pub.publishAsync(`${TOPIC}/held`, 'held', { qos: 1 }).then(() => (acked = true));
    await waitFor(() => first.writer.heldSubmissions === 1, 10_000, 'the message waiting for its commit');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(first.spool.stats().messages).toBe(0);
    if (h.acksPublishers) expect(acked).toBe(false);
    await first.shutdown();
    // The intake never acknowledged it: the embedded broker's publisher, or the broker holding the node's
    // session, sends it again to the next intake on the same DATA_DIR.
    const second = await started(first);
    await waitFor(() => second.spool.stats().messages === 1, 20_000, 'the message taken again after the restart');
    expect(payloads(second.spool)).toEqual(['held']);
    await publishing;
    expect(acked).toBe(true);
  });

  it('commits nothing while commits wait, then every message, each acknowledged after its commit', async () => {
    const r = await started();
    const pub = await publisher(r.publishUrl);
    r.writer.hold();
    const at: number[] = [];
    const all = Promise.all(
      Array.from({ length: 20 }, (_, i) => pub.publishAsync(`${TOPIC}/${i}`, `m${i}`, { qos: 1 }).then(() => at.push(r.spool.stats().messages))),
    );
    await waitFor(() => r.writer.heldSubmissions > 0, 10_000, 'messages waiting for their commit');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(r.spool.stats().messages).toBe(0);
    r.writer.release();
    await all;
    await waitFor(() => r.spool.stats().messages === 20, 10_000, '20 messages in the spool');
    // Where the publisher's PUBACK is the intake's own, each came after its commit; else the redelivery test shows it.
    if (h.acksPublishers) expect(at.filter((count) => count === 0)).toEqual([]);
    expect(new Set(payloads(r.spool)).size).toBe(20);
  });

  it('stops idempotently, before start too', async () => {
    const idle = await rig();
    await Promise.all([idle.intake.stop(), idle.intake.stopTaking()]);
    await idle.intake.stop();
    expect(idle.intake.readiness().ready).toBe(false);
    const r = await started();
    await Promise.all([r.intake.stopTaking(), r.intake.stopTaking(), r.intake.stop()]);
    await r.intake.stop();
    await r.intake.stopTaking();
    expect(r.intake.readiness().ready).toBe(false);
  });

  it('shows its mode and the readiness JSON keys in its status, and no secret', async () => {
    const r = await rig();
    const check = (s: ReturnType<Intake['status']>) => {
      expect(s.mode).toBe(h.mode);
      expect(s.broker).toMatchObject({ mode: h.mode, state: expect.any(String), restarts: expect.any(Number) });
      for (const key of Object.keys(s.broker)) expect(['mode', 'state', 'restarts', 'pid', 'detail', 'mqttVersions']).toContain(key);
      // The versions publishers may use: both own-broker modes speak MQTT 5 too.
      if (h.mode !== 'external') expect(s.broker.mqttVersions).toEqual(['3.1', '3.1.1', '5']);
      expect(s.source).toMatchObject({ state: expect.any(String) });
      expect(JSON.parse(JSON.stringify(s))).toEqual(s);
    };
    check(r.intake.status());
    await r.intake.start();
    await waitFor(() => r.intake.readiness().ready, 15_000, 'ready');
    const s = r.intake.status();
    check(s);
    expect(s.broker.state).toBe('up');
    expect(['in-process', 'subscribed']).toContain(s.source.state);
    const shown = JSON.stringify(s);
    for (const secret of h.secrets(r)) expect(shown).not.toContain(secret);
    await r.shutdown();
    check(r.intake.status());
    expect(r.intake.status().broker.state).not.toBe('up');
  });

  it('stays ready when a client sends garbage, and keeps taking messages', async () => {
    const r = await started();
    const port = h.publishPort(r.config);
    for (let i = 0; i < 3; i++) {
      const s = await openTcp(port);
      s.write(GARBAGE);
      expect(await closedByBroker(s, 10_000)).toBe(true);
      s.destroy();
    }
    expect(r.intake.readiness().ready).toBe(true);
    const pub = await publisher(r.publishUrl);
    await pub.publishAsync(`${TOPIC}/after`, 'after', { qos: 1 });
    await waitFor(() => r.spool.stats().messages === 1, 10_000, 'the message after the garbage');
  });

  it('reloads on SIGHUP, saying what it did, and stays ready', async () => {
    const r = await started();
    const before = r.logs.length;
    await r.intake.reload();
    const lines = r.logs.slice(before).map((l) => String(l.message));
    expect(lines.some((l) => /reload/i.test(l)), lines.join('\n')).toBe(true);
    expect(r.intake.readiness().ready).toBe(true);
  });
}
