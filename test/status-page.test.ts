/**
 * The status page in a real headless Chromium (Debian's `chromium`), kept open as a person would keep it: the
 * page's own script refreshes it every 5 s from /api/status, and the test reads the DOM as it changes. It runs
 * without console errors; a sink that cannot deliver turns its banner red (a Pub/Sub outage within 10 s), green
 * again once it delivers; a sensor that went quiet is listed. Screenshots of each state are kept in the test's
 * temp folder (docs/status-page.md describes them).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { CHROMIUM, openLivePage, type LivePage } from './helpers/chromium.js';
import { blockFileSink } from './helpers/disk.js';
import { startNode, type NodeProcess } from './helpers/node-process.js';
import { waitFor } from './helpers/ports.js';
import { createTopicAndSubscription, hasPubSubEmulator, startPubSubEmulator, type PubSubEmulator } from './helpers/pubsub-emulator.js';
import { serviceAvailable } from './helpers/skip.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';
import { hasMosquitto, startMosquitto, type TestMosquitto } from './helpers/mosquitto.js';

const haveChromium = serviceAvailable('chromium', CHROMIUM !== undefined, 'apt-get install chromium');

/** A banner's colour as the live page shows it now. */
const colour = (page: LivePage, component: string) =>
  page.evaluate<string | null>(`document.querySelector('[data-component=${JSON.stringify(component)}]')?.dataset.colour ?? null`);
const text = (page: LivePage, component: string) =>
  page.evaluate<string | null>(`document.querySelector('[data-component=${JSON.stringify(component)}]')?.textContent ?? null`);

/** Polls the live page (not the API) until the banner has the colour; returns how long it took. */
async function untilColour(page: LivePage, component: string, want: string, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  await waitFor(async () => (await colour(page, component)) === want, timeoutMs, `the ${component} banner ${want}`);
  return Date.now() - t0;
}

function screenshotsDir(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `status-page-${name}-`));
  return dir;
}

/** The cells of a table on the live page, row by row. */
const cells = (page: LivePage, id: string) =>
  page.evaluate<string[][]>(`[...document.querySelectorAll('#${id} tr')].map((tr) => [...tr.children].map((td) => td.textContent))`);
/** The largest value a spool chart shows (its data-peak), or null while it is not drawn. */
const peak = (page: LivePage, id: string) => page.evaluate<number | null>(`(() => { const e = document.getElementById('${id}'); return e ? Number(e.dataset.peak) : null; })()`);

function routesFile(dir: string, text: string): string {
  const file = path.join(dir, 'routes.yaml');
  fs.writeFileSync(file, text);
  return file;
}

describe.runIf(haveChromium)('status page in headless Chromium: file sink and silent sources', () => {
  const nodes: NodeProcess[] = [];
  let page: LivePage | undefined;
  const shots = screenshotsDir('file');
  const out = path.join(shots, 'out');
  let env: Record<string, string>;
  beforeAll(async () => {
    fs.mkdirSync(out);
    const routes = routesFile(shots, 'routes:\n  - name: plant\n    topic: plant/#\n  - name: debug\n    topic: debug/#\n    drop: true\nunmatched: dead_letter\n');
    env = { MQTT_BROKER_MODE: 'embedded', FILE_SINK: 'on', FILE_SINK_DIR: out, SILENT_AFTER_SECONDS: '2', ROUTES_FILE: routes };
    nodes.push(await startNode(env));
    await nodes[0]!.waitReady();
  });
  afterAll(async () => {
    await page?.close();
    for (const n of nodes) await n.kill();
    console.log(`status page screenshots: ${shots}`);
  });

  it('renders every banner green without console errors; the file sink banner turns red while it cannot write, then green; a silent sensor is listed; the node gone is said; dead letters outlive a restart', async () => {
    const node = nodes[0]!;
    page = await openLivePage(`http://127.0.0.1:${node.httpPort}/`);
    for (const c of ['node', 'broker', 'source', 'spool', 'sink file', 'summary']) await untilColour(page, c, 'green', 10_000);
    expect(await text(page, 'source')).toContain('in-process');
    // The routes with their destinations, and what matches none.
    expect(await cells(page, 'routes')).toEqual([
      ['route', 'MQTT topic', 'to'],
      ['plant', 'plant/#', 'file'],
      ['debug', 'debug/#', 'dropped (acknowledged, counted, sent nowhere)'],
      ['unmatched', 'any other', 'the dead-letter store (no_route)'],
    ]);
    await page.screenshot(path.join(shots, 'healthy.png'));
    expect(fs.statSync(path.join(shots, 'healthy.png')).size).toBeGreaterThan(1000);

    // One message no route takes: a dead letter in the store.
    const unrouted = await mqtt.connectAsync(`mqtt://127.0.0.1:${node.mqttPort}`, { clientId: 'status-page-unrouted' });
    await unrouted.publishAsync('other/unrouted', 'x', { qos: 1 });
    await unrouted.endAsync();
    await waitFor(async () => JSON.stringify((await cells(page!, 'dead'))[1]) === JSON.stringify(['file', 'no_route', '1', '1']), 20_000, 'the dead letter in the table, held and since start');

    // The sink's files cannot be written (directories in their place): its writes fail and are retried.
    const unblock = blockFileSink(out);
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${node.mqttPort}`, { clientId: 'status-page-pub' });
    for (let i = 0; i < 5; i++) await pub.publishAsync('plant/status/page', `{"n":${i}}`, { qos: 1 });
    await pub.endAsync();
    await untilColour(page, 'sink file', 'red', 15_000);
    const failing = (await text(page, 'sink file'))!;
    expect(failing).toMatch(/NOT DELIVERING since .*EISDIR/);
    // What to do, for this sink's problem, and the runbook section by its heading.
    expect(failing).toContain('What to do: make FILE_SINK_DIR a writable directory');
    expect(failing).toContain('Runbook: "Why a sink fails" (docs/runbook.md#why-a-sink-fails)');
    expect(await colour(page, 'summary')).toBe('red');
    expect(await text(page, 'summary')).toContain('sink file');
    // Both charts rise while the messages wait: the depth, and the age of the oldest one.
    await waitFor(async () => ((await peak(page!, 'spool-chart')) ?? 0) >= 5 && ((await peak(page!, 'spool-age-chart')) ?? 0) > 0, 25_000, 'depth and age in the charts');
    expect(await page.evaluate<string>(`document.getElementById('chart').textContent`)).toMatch(/depth \(messages waiting\): now \d+ messages?, at most \d+ messages.*age of the oldest message: now \d+ s, at most \d+ s/);
    await page.screenshot(path.join(shots, 'sink-failing.png'));
    unblock();
    await untilColour(page, 'sink file', 'green', 30_000);
    // The sensor that published once is silent by now (SILENT_AFTER_SECONDS=2): listed, and the sources banner amber.
    await untilColour(page, 'sources', 'amber', 15_000);
    expect(await page.evaluate<string>(`document.getElementById('silent').textContent`)).toContain('plant/status/page');
    await page.screenshot(path.join(shots, 'recovered.png'));
    expect(page.errors).toEqual([]);

    // The node gone: the page says it cannot read /api/status, the summary red, the tables keep their figures.
    await node.kill();
    await untilColour(page, 'page', 'red', 10_000);
    expect(await colour(page, 'summary')).toBe('red');
    expect(await text(page, 'summary')).toMatch(/the figures below are from \d{4}-.*: the node does not answer/);
    expect(await page.evaluate<string>(`document.getElementById('silent').textContent`)).toContain('plant/status/page');
    await page.screenshot(path.join(shots, 'node-gone.png'));

    // Started again on the same spool and ports: the open page recovers, and shows the dead letter the store still
    // holds, which the counter since the start no longer counts.
    const again = await startNode(env, { dataDir: node.dataDir, httpPort: node.httpPort, mqttPort: node.mqttPort });
    nodes.push(again);
    await again.waitReady();
    await untilColour(page, 'node', 'green', 15_000);
    await waitFor(async () => JSON.stringify((await cells(page!, 'dead'))[1]) === JSON.stringify(['file', 'no_route', '1', '0']), 15_000, 'the dead letter held after the restart');
    await page.screenshot(path.join(shots, 'restarted.png'));
  });
});

const haveEmulator = haveChromium && serviceAvailable('Pub/Sub emulator', hasPubSubEmulator(), 'install the Google Cloud CLI and its pubsub-emulator component');

describe.runIf(haveEmulator)('status page in headless Chromium: a Pub/Sub outage', () => {
  let emu: PubSubEmulator;
  let proxy: TcpProxy;
  let node: NodeProcess;
  let page: LivePage | undefined;
  const shots = screenshotsDir('pubsub');
  beforeAll(async () => {
    emu = await startPubSubEmulator();
    await createTopicAndSubscription(emu.host, emu.projectId, 'status', 'status-check');
    const [host, port] = emu.host.split(':');
    proxy = await startTcpProxy(host!, Number(port));
    node = await startNode({
      MQTT_BROKER_MODE: 'embedded',
      GCP_PROJECT_ID: emu.projectId,
      PUBSUB_TOPIC: 'status',
      PUBSUB_EMULATOR_HOST: `127.0.0.1:${proxy.port}`,
      RETRY_INITIAL_DELAY_MS: '200',
      RETRY_MAX_DELAY_MS: '1000',
    });
    await node.waitReady();
  });
  afterAll(async () => {
    await page?.close();
    await node?.kill();
    await proxy?.close();
    await emu?.stop();
    console.log(`status page screenshots: ${shots}`);
  });

  it('the Pub/Sub banner turns red within 10 s of the outage and green again after it, with no console error', async () => {
    page = await openLivePage(`http://127.0.0.1:${node.httpPort}/`);
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${node.mqttPort}`, { clientId: 'status-page-outage' });
    // A sensor publishing five times a second throughout, as a fleet would.
    let n = 0;
    const ticker = setInterval(() => void pub.publishAsync('plant/pit3/pressure', JSON.stringify({ n: n++ }), { qos: 1 }).catch(() => undefined), 200);
    try {
      await untilColour(page, 'sink pubsub', 'green', 15_000);
      await waitFor(async () => (await text(page!, 'sink pubsub'))?.includes('last delivery') === true, 15_000, 'a delivery shown');
      await page.screenshot(path.join(shots, 'pubsub-healthy.png'));

      proxy.cut();
      const red = await untilColour(page, 'sink pubsub', 'red', 10_000);
      console.log(`the Pub/Sub banner turned red ${red} ms after the outage began (the page refreshes every 5 s)`);
      const outage = (await text(page, 'sink pubsub'))!;
      console.log(`the Pub/Sub banner in the outage: ${outage}`);
      expect(outage).toMatch(/NOT DELIVERING since .*last error: unavailable: .*ECONNREFUSED/);
      expect(outage).toContain('What to do: nothing while it lasts minutes');
      expect(outage).toContain('Runbook: "MqttIngestDeliveryFailing" (docs/runbook.md#mqttingestdeliveryfailing)');
      // grpc-js's empty "Resolution note: " is left out of the error shown.
      expect(outage).not.toMatch(/Resolution note:\s*($|[.;,)])/);
      // The node still takes messages: its own banner stays green, the summary names the sink.
      expect(await colour(page, 'node')).toBe('green');
      expect(await text(page, 'summary')).toContain('sink pubsub');
      await page.screenshot(path.join(shots, 'pubsub-outage.png'));

      await proxy.restore();
      const green = await untilColour(page, 'sink pubsub', 'green', 60_000);
      console.log(`the Pub/Sub banner turned green ${green} ms after the outage ended`);
      await untilColour(page, 'summary', 'green', 10_000);
      await page.screenshot(path.join(shots, 'pubsub-recovered.png'));
      for (const f of ['pubsub-healthy.png', 'pubsub-outage.png', 'pubsub-recovered.png']) expect(fs.statSync(path.join(shots, f)).size).toBeGreaterThan(1000);
      expect(page.errors).toEqual([]);
    } finally {
      clearInterval(ticker);
      await pub.endAsync();
    }
  });
});

const haveMosquitto = haveChromium && serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto');

describe.runIf(haveMosquitto)('status page in headless Chromium: the subscriber of an external broker', () => {
  let broker: TestMosquitto;
  let node: NodeProcess;
  let page: LivePage | undefined;
  const shots = screenshotsDir('external');
  const password = 'status-page-secret-pw';
  beforeAll(async () => {
    broker = await startMosquitto({ persistence: true });
    node = await startNode({
      MQTT_BROKER_MODE: 'external',
      MQTT_BROKER: broker.url,
      MQTT_TOPICS: 'plant/#',
      MQTT_CLIENT_ID: 'status-page-external',
      // pprd with a password over plaintext, allowed: the security component reports it.
      APP_ENV: 'pprd',
      MQTT_USERNAME: 'ingest',
      MQTT_PASSWORD: password,
      MQTT_ALLOW_INSECURE: 'true',
      FILE_SINK: 'on',
      RETRY_INITIAL_DELAY_MS: '200',
      RETRY_MAX_DELAY_MS: '1000',
    });
    await node.waitReady();
  });
  afterAll(async () => {
    await page?.close();
    await node?.kill();
    await broker?.stop();
    console.log(`status page screenshots: ${shots}`);
  });

  it('a stopped broker turns the source banner red under a red node; security and leave have banners of their own', async () => {
    page = await openLivePage(`http://127.0.0.1:${node.httpPort}/`);
    await untilColour(page, 'source', 'green', 15_000);
    expect(await text(page, 'source')).toContain(`subscribed to ${broker.url} as status-page-external`);
    expect(await colour(page, 'node')).toBe('green');
    await untilColour(page, 'security', 'amber', 5_000);
    expect(await text(page, 'security')).toMatch(/1 insecure setting allowed by MQTT_ALLOW_INSECURE: MQTT_BROKER: mqtt:\/\/ is plaintext/);
    await page.screenshot(path.join(shots, 'external-healthy.png'));

    await broker.stop();
    const red = await untilColour(page, 'source', 'red', 15_000);
    console.log(`the source banner turned red ${red} ms after the broker stopped`);
    expect(await text(page, 'source')).toMatch(new RegExp(`NOT CONNECTED to ${broker.url.replace(/[.]/g, '\\.')} \\((connecting|disconnected)\\).*What to do: check that the broker runs`));
    // The node is red, and says which banner below is: the source.
    expect(await colour(page, 'node')).toBe('red');
    expect(await text(page, 'node')).toMatch(/NOT READY: a component below is down: .*source/);
    expect(await text(page, 'summary')).toContain('source');
    const body = await page.evaluate<string>('document.body.textContent');
    expect(body).not.toContain(password);
    await page.screenshot(path.join(shots, 'source-down.png'));

    await broker.restart();
    await untilColour(page, 'source', 'green', 30_000);
    await untilColour(page, 'node', 'green', 10_000);

    // mqtt-ingest leave: the node no longer ready on purpose, its leave banner says how far it is.
    const res = await fetch(`http://127.0.0.1:${node.httpPort}/leave?deadlineSeconds=60`, { method: 'POST' });
    expect(res.status).toBe(202);
    await untilColour(page, 'leave', 'green', 30_000);
    expect(await text(page, 'leave')).toMatch(/left at the request of mqtt-ingest leave: unsubscribed .*What to do: stop the node and scale down/);
    expect(await colour(page, 'node')).toBe('red');
    expect(await text(page, 'node')).toContain('NOT READY: leaving (mqtt-ingest leave)');
    // Off the broker on purpose: the broker and source banners amber, not red.
    expect(await colour(page, 'broker')).toBe('amber');
    expect(await colour(page, 'source')).toBe('amber');
    await page.screenshot(path.join(shots, 'left.png'));
    for (const f of ['external-healthy.png', 'source-down.png', 'left.png']) expect(fs.statSync(path.join(shots, f)).size).toBeGreaterThan(1000);
    expect(page.errors).toEqual([]);
  });
});
