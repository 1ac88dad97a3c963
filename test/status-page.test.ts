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

describe.runIf(haveChromium)('status page in headless Chromium: file sink and silent sources', () => {
  let node: NodeProcess;
  let page: LivePage | undefined;
  const shots = screenshotsDir('file');
  const out = path.join(shots, 'out');
  beforeAll(async () => {
    fs.mkdirSync(out);
    node = await startNode({ MQTT_BROKER_MODE: 'embedded', FILE_SINK: 'on', FILE_SINK_DIR: out, SILENT_AFTER_SECONDS: '2' });
    await node.waitReady();
  });
  afterAll(async () => {
    await page?.close();
    await node?.kill();
    console.log(`status page screenshots: ${shots}`);
  });

  it('renders every banner green without console errors; the file sink banner turns red while it cannot write, then green; a silent sensor is listed; the node gone is said', async () => {
    page = await openLivePage(`http://127.0.0.1:${node.httpPort}/`);
    for (const c of ['node', 'broker', 'spool', 'sink file', 'summary']) await untilColour(page, c, 'green', 10_000);
    await page.screenshot(path.join(shots, 'healthy.png'));
    expect(fs.statSync(path.join(shots, 'healthy.png')).size).toBeGreaterThan(1000);

    // The sink's files cannot be written (directories in their place): its writes fail and are retried.
    const unblock = blockFileSink(out);
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${node.mqttPort}`, { clientId: 'status-page-pub' });
    for (let i = 0; i < 5; i++) await pub.publishAsync('plant/status/page', `{"n":${i}}`, { qos: 1 });
    await pub.endAsync();
    await untilColour(page, 'sink file', 'red', 15_000);
    expect(await text(page, 'sink file')).toMatch(/NOT DELIVERING since .*EISDIR/);
    expect(await colour(page, 'summary')).toBe('red');
    expect(await text(page, 'summary')).toContain('sink file');
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
      expect(await text(page, 'sink pubsub')).toMatch(/NOT DELIVERING since/);
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
