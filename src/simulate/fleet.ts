/**
 * The fleet of `mqtt-ingest simulate`: one MQTT.js client per device (client id `sim-<device>`), connected
 * `connectBatch` at a time, then publishing on the schedule of pacing.ts. Each device keeps at most WINDOW
 * publishes unfinished, so a slow broker (or a node holding PUBACKs back while its spool is full) slows the fleet
 * down instead of filling memory; the achieved rate is what the summary reports.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { redactUrl, withoutUrlPassword } from '../core/redact.js';
import type { SimulateOptions } from './options.js';
import { Counters, dueAt, messagesFor, progressLine, type Summary } from './pacing.js';
import { DeviceState, deviceName, render } from './template.js';

export const WINDOW = 100;
/** Below the 15 s within which an unreachable broker must be reported. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** How long the last publishes may wait for their acknowledgements once publishing ended. */
export const DRAIN_TIMEOUT_MS = 10_000;
/** Publishes in a row before a device yields to the event loop (catching up after back-pressure). */
const BURST = 50;

export interface FleetHooks {
  /** A problem worth a line on stderr (connect failures, lost connections); each distinct text once. */
  problem: (line: string) => void;
  /** The live progress line, about once a second while publishing. */
  progress?: (line: string) => void;
  /** Stops publishing early (Ctrl-C); what was sent is still drained and counted. */
  signal?: AbortSignal;
}

interface Device {
  client: MqttClient;
  state: DeviceState;
  slot: number;
  k: number;
  budget: number;
  unfinished: number;
  timer?: NodeJS.Timeout;
}

function connectOne(opts: SimulateOptions, name: string): Promise<MqttClient> {
  const options: IClientOptions = {
    clientId: `sim-${name}`,
    protocolVersion: opts.protocol,
    clean: true,
    username: opts.username,
    password: opts.password,
    ca: opts.ca,
    cert: opts.cert,
    key: opts.key,
    rejectUnauthorized: !opts.insecure,
    connectTimeout: CONNECT_TIMEOUT_MS,
    reconnectPeriod: 0,
  };
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(opts.url, options);
    const fail = (err: Error) => {
      clearTimeout(timer);
      client.removeAllListeners('connect');
      client.end(true);
      reject(err);
    };
    // MQTT.js's own connectTimeout only covers the CONNACK wait of a socket that opened; this covers both.
    const timer = setTimeout(() => fail(new Error(`no CONNACK within ${CONNECT_TIMEOUT_MS / 1000} s`)), CONNECT_TIMEOUT_MS);
    client.once('connect', () => {
      clearTimeout(timer);
      client.removeListener('error', fail);
      client.removeListener('close', onClose);
      resolve(client);
    });
    client.once('error', fail);
    const onClose = () => fail(new Error('the connection closed before the CONNACK'));
    client.once('close', onClose);
  });
}

export async function runFleet(opts: SimulateOptions, hooks: FleetHooks): Promise<Summary> {
  const counters = new Counters();
  const url = redactUrl(opts.url);
  const said = new Set<string>();
  const problem = (text: string) => {
    const clean = withoutUrlPassword(text, opts.url);
    if (said.has(clean) || said.size > 20) return;
    said.add(clean);
    hooks.problem(clean);
  };

  const clients: { client: MqttClient; name: string }[] = [];
  for (let first = 0; first < opts.devices && !hooks.signal?.aborted; first += opts.connectBatch) {
    const names = Array.from({ length: Math.min(opts.connectBatch, opts.devices - first) }, (_, i) => deviceName(first + i, opts.devices));
    const results = await Promise.allSettled(names.map((name) => connectOne(opts, name)));
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') clients.push({ client: r.value, name: names[i]! });
      else problem(`cannot connect to ${url}: ${(r.reason as Error).message}`);
    });
    if (results.every((r) => r.status === 'rejected')) {
      if (first + names.length < opts.devices) problem(`stopped connecting: none of devices ${names[0]} to ${names.at(-1)} could connect`);
      break;
    }
  }
  counters.connectFailures = opts.devices - clients.length;

  const devices: Device[] = clients.map(({ client, name }, slot) => ({
    client,
    state: new DeviceState(name, opts.payload.walks),
    slot,
    k: 0,
    budget: opts.count === undefined ? Infinity : messagesFor(slot, clients.length, opts.count),
    unfinished: 0,
  }));
  const n = devices.length;
  const deadlineMs = opts.durationSeconds === undefined ? Infinity : opts.durationSeconds * 1000;
  const t0 = Date.now();
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => (finish = resolve));
  // A --duration run lasts its duration even when a slow rate has sent its last message earlier (and no device
  // connected, it ends at once).
  let stopped = n === 0;
  const checkDone = () => {
    if ((stopped || deadlineMs === Infinity) && devices.every((d) => d.k >= d.budget && d.unfinished === 0)) finish();
  };

  const publish = (d: Device) => {
    d.state.advance();
    const now = Date.now();
    d.k += 1;
    d.unfinished += 1;
    counters.sent += 1;
    d.client.publish(render(opts.topic, d.state, now), render(opts.payload, d.state, now), { qos: opts.qos }, (err) => {
      d.unfinished -= 1;
      if (err) {
        counters.publishErrors += 1;
        problem(`publish failed: ${err.message}`);
      } else if (opts.qos > 0) counters.acknowledged += 1;
      pump(d);
    });
  };

  const pump = (d: Device) => {
    if (d.timer) return;
    let burst = 0;
    while (d.k < d.budget && d.unfinished < WINDOW) {
      const due = dueAt(d.k, d.slot, n, opts.rate);
      // Behind schedule after back-pressure, a device catches up, but never past the end of --duration.
      if (due >= deadlineMs || Date.now() >= t0 + deadlineMs) {
        d.budget = d.k;
        break;
      }
      const wait = t0 + due - Date.now();
      if (wait > 0 || burst >= BURST) {
        d.timer = setTimeout(() => {
          d.timer = undefined;
          pump(d);
        }, Math.max(0, wait));
        return;
      }
      publish(d);
      burst += 1;
    }
    checkDone();
  };

  const stop = () => {
    stopped = true;
    for (const d of devices) {
      clearTimeout(d.timer);
      d.timer = undefined;
      d.budget = d.k;
    }
    checkDone();
  };
  hooks.signal?.addEventListener('abort', stop, { once: true });
  // At the end of --duration every device stops, also one waiting for its window to open.
  const deadlineTimer = deadlineMs === Infinity ? undefined : setTimeout(stop, deadlineMs);
  for (const d of devices) {
    d.client.on('error', (err) => problem(`${d.state.name}: ${err.message}`));
    d.client.on('close', () => {
      if (d.k < d.budget) problem(`${d.state.name} lost its connection to ${url}; it stops publishing`);
      clearTimeout(d.timer);
      d.timer = undefined;
      d.budget = d.k;
      checkDone();
    });
    pump(d);
  }
  checkDone();

  const ticker = hooks.progress ? setInterval(() => hooks.progress!(progressLine(Date.now() - t0, counters, counters.rateSince(Date.now()))), 1000) : undefined;
  counters.rateSince(t0);
  // Once nothing is left to publish, unfinished publishes get DRAIN_TIMEOUT_MS to be acknowledged.
  const drainWatch = setInterval(() => {
    if (devices.every((d) => d.k >= d.budget)) {
      clearInterval(drainWatch);
      const untilDeadline = stopped || deadlineMs === Infinity ? 0 : Math.max(0, t0 + deadlineMs - Date.now());
      drainTimer = setTimeout(finish, untilDeadline + DRAIN_TIMEOUT_MS);
    }
  }, 100);
  let drainTimer: NodeJS.Timeout | undefined;
  await finished;
  clearInterval(drainWatch);
  clearTimeout(drainTimer);
  clearTimeout(deadlineTimer);
  clearInterval(ticker);
  hooks.signal?.removeEventListener('abort', stop);
  const seconds = (Date.now() - t0) / 1000;
  const totals = counters.totals(opts.qos);
  for (const d of devices) d.client.removeAllListeners('close');
  await Promise.allSettled(devices.map((d) => d.client.endAsync(d.unfinished > 0)));
  if (totals.unacknowledged > 0) problem(`${totals.unacknowledged} publishes were not acknowledged within ${DRAIN_TIMEOUT_MS / 1000} s of the end`);
  return {
    url,
    devices: opts.devices,
    connected: n,
    qos: opts.qos,
    seconds: Math.round(seconds * 1000) / 1000,
    rate: seconds > 0 ? Math.round((totals.sent / seconds) * 10) / 10 : 0,
    ok: totals.connectFailures === 0 && totals.errors === 0 && totals.unacknowledged === 0,
    ...totals,
  };
}
