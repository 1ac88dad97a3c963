/**
 * The load generator of the broker cases: MQTT.js 5 clients in a process of their own, so that what the clients
 * cost is not charged to the bench process and can be read beside the node's figures. Run by load-process.ts.
 *
 * - `burst`: `--clients` QoS 1 publishers share `--messages`, each keeping `--window` publishes in flight (at most
 *   the Receive Maximum an MQTT 5 broker advertises); reports the first publish and the last PUBACK. `--warmup`
 *   messages go the same way before the `connected` report, so the broker's code is compiled before it is timed.
 * - `idle`: `--clients` connections that only keep their session alive (PINGREQ each keep-alive).
 * - `steady`: `--clients` QoS 1 publishers at `--rate` messages a second each for `--seconds`, phases spread evenly;
 *   reports each message's publish → PUBACK time.
 *
 * Clients connect in batches of `--batch` (each batch waits for its CONNACKs), so a connect storm is not measured.
 * Commands on stdin, a line each: `go` starts publishing, `end` disconnects every client and exits. Reports go to
 * stdout as one JSON object per line, each with an `event`.
 */
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { benchPayload, nowMs } from './lib.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    mode: { type: 'string' },
    clients: { type: 'string' },
    version: { type: 'string', default: '4' },
    messages: { type: 'string', default: '0' },
    warmup: { type: 'string', default: '0' },
    window: { type: 'string', default: '100' },
    rate: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '10' },
    batch: { type: 'string', default: '200' },
    keepalive: { type: 'string', default: '60' },
    prefix: { type: 'string', default: 'bench-load' },
  },
});
const url = values.url as string;
const mode = values.mode as 'burst' | 'idle' | 'steady';
const count = Number(values.clients);
const version = Number(values.version) as 4 | 5;
const num = (v: string | undefined) => Number(v);
const LAG_RESOLUTION_MS = 5;

const report = (event: string, data: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ event, ...data }) + '\n');
const clients: { client: MqttClient; receiveMaximum?: number }[] = [];
let ending = false;
let lost = 0;

/** The soft limit on open files this process got (each client holds one). */
function openFilesLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m ? (m[1] === 'unlimited' ? Infinity : Number(m[1])) : NaN;
}

function connectOne(i: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, {
      protocolVersion: version,
      clientId: `${values.prefix}-${i}`,
      clean: true,
      keepalive: num(values.keepalive),
      reconnectPeriod: 0,
      connectTimeout: 30_000,
    });
    client.once('connect', (connack) => {
      clients[i] = { client, receiveMaximum: connack.properties?.receiveMaximum };
      client.on('close', () => {
        if (!ending) lost += 1;
      });
      resolve();
    });
    client.once('error', (err) => reject(new Error(`client ${i}: ${err.message}`)));
  });
}

async function connectAll(): Promise<void> {
  const batch = num(values.batch);
  const started = nowMs();
  for (let from = 0; from < count; from += batch) {
    await Promise.all(Array.from({ length: Math.min(batch, count - from) }, (_, k) => connectOne(from + k)));
  }
  const connectMs = nowMs() - started;
  const warmup = mode === 'burst' ? num(values.warmup) : 0;
  if (warmup > 0) await burst(warmup);
  report('connected', { clients: count, warmup, connectMs, receiveMaximum: clients[0]?.receiveMaximum ?? null, openFiles: openFilesLimit() });
}

/** Each publisher keeps its window full until its share of `total` is sent; resolves at the last PUBACK. */
async function burst(total: number): Promise<{ first: number; last: number; acked: number }> {
  const per = Math.ceil(total / count);
  const first = nowMs();
  let last = first;
  let acked = 0;
  await Promise.all(
    clients.map(({ client, receiveMaximum }, p) => {
      const window = Math.min(num(values.window), receiveMaximum ?? Infinity);
      const topic = `bench/broker/${p}`;
      let sent = 0;
      return new Promise<void>((resolve, reject) => {
        client.once('close', () => reject(new Error(`publisher ${p} lost its connection`)));
        let done = 0;
        const send = () => {
          const seq = p * per + sent++;
          client.publish(topic, benchPayload(seq), { qos: 1 }, (err) => {
            if (err) return reject(err);
            acked += 1;
            last = nowMs();
            if (sent < per) send();
            else if (++done === Math.min(window, per)) resolve();
          });
        };
        for (let k = 0; k < Math.min(window, per); k++) send();
      });
    }),
  );
  return { first, last, acked };
}

async function timedBurst(): Promise<void> {
  const cpu = process.cpuUsage();
  const r = await burst(num(values.messages));
  const used = process.cpuUsage(cpu);
  report('done', { ...r, cpuSeconds: (used.user + used.system) / 1e6 });
}

/**
 * Every publisher sends `rate` messages a second, starting at its own phase; latencies in ms, at the PUBACK. A
 * publisher whose connection drops stops, and what it had in flight counts as failed (MQTT.js would hold it for a
 * reconnect that never comes).
 */
async function steady(): Promise<void> {
  const rate = num(values.rate);
  const seconds = num(values.seconds);
  const period = 1000 / rate;
  const latencies: number[] = [];
  const lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
  lag.enable();
  const cpu = process.cpuUsage();
  const started = nowMs();
  const over = () => nowMs() - started >= seconds * 1000;
  let sent = 0;
  let failed = 0;
  let dropped = 0;
  let pending = 0;
  let allDone!: () => void;
  const finished = new Promise<void>((resolve) => (allDone = resolve));
  const settle = (n: number) => {
    pending -= n;
    if (pending === 0 && over()) allDone();
  };
  const timers = clients.map(({ client }, p) => {
    const inFlight = new Set<number>();
    let alive = true;
    client.on('close', () => {
      if (ending || !alive) return;
      alive = false;
      dropped += 1;
      failed += inFlight.size;
      settle(inFlight.size);
      inFlight.clear();
    });
    return setTimeout(() => {
      let seq = 0;
      const tick = () => {
        if (over() || !alive) {
          clearInterval(interval);
          if (over() && pending === 0) allDone();
          return;
        }
        const id = seq++;
        const t = nowMs();
        pending += 1;
        sent += 1;
        inFlight.add(id);
        client.publish(`bench/scale/${p}`, benchPayload(id, t), { qos: 1 }, (err) => {
          if (!inFlight.delete(id)) return;
          if (err) failed += 1;
          else latencies.push(nowMs() - t);
          settle(1);
        });
      };
      const interval = setInterval(tick, period);
      tick();
      timers[p] = interval;
    }, (p / count) * period);
  });
  // At the end of the period, for when no publisher is left to notice it.
  const deadline = setTimeout(() => settle(0), seconds * 1000 + 1);
  await finished;
  clearTimeout(deadline);
  for (const t of timers) clearInterval(t);
  lag.disable();
  const used = process.cpuUsage(cpu);
  const wall = (nowMs() - started) / 1000;
  report('done', {
    sent,
    acked: latencies.length,
    failed,
    dropped,
    seconds: wall,
    cpuSeconds: (used.user + used.system) / 1e6,
    // The histogram holds the time between samples: the delay is what exceeds the sampling interval.
    loopDelayP99Ms: Math.max(0, lag.percentile(99) / 1e6 - LAG_RESOLUTION_MS),
    latencies: latencies.map((l) => Math.round(l * 100) / 100),
  });
}

async function end(): Promise<void> {
  ending = true;
  // A client whose connection is gone may never call back from end(): those are forced, and 5 s bound the rest.
  const ends = clients.map(({ client }) => (client.connected ? client.endAsync().catch(() => undefined) : Promise.resolve(client.end(true))));
  await Promise.race([Promise.all(ends), new Promise((r) => setTimeout(r, 5000))]);
  report('ended', { lost });
  process.exit(0);
}

try {
  await connectAll();
} catch (err) {
  report('error', { message: (err as Error).message, connected: clients.filter(Boolean).length, openFiles: openFilesLimit() });
  process.exit(1);
}
createInterface({ input: process.stdin }).on('line', (line) => {
  const command = line.trim();
  const run = command === 'go' ? (mode === 'burst' ? timedBurst() : mode === 'steady' ? steady() : Promise.resolve()) : command === 'end' ? end() : Promise.resolve();
  run.catch((err: Error) => {
    report('error', { message: err.message });
    process.exit(1);
  });
});
// The bench gone (its end of stdin closed) ends the load too.
process.stdin.on('end', () => void end());
