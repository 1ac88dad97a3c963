import { readFileSync } from 'node:fs';
import net from 'node:net';
import { portIsFree } from '../../src/intake/mosquitto/process-utils.js';

/**
 * Ports for servers that must be told their port before they start (a node, a Mosquitto, an emulator).
 *
 * Asking the kernel for port 0 and closing it again races: the kernel hands the same port out next as the
 * source port of any outgoing connection (a fetch, an MQTT client) in this or another test process, and the
 * server started a moment later finds it taken (`EADDRINUSE`). So ports come from below the kernel's
 * ephemeral range, where no outgoing connection ever lands, and each test worker (VITEST_POOL_ID) draws from
 * a slice of its own, in turn, so two workers never pick the same port. A port is still checked free before
 * it is handed out.
 */
const SLICES = 8;
function ephemeralStart(): number {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(first) && first > 12_000) return first;
  } catch {
    // not Linux: below Linux's default start, which is below IANA's (49152)
  }
  return 32_768;
}
const LOW = 10_000;
const HIGH = ephemeralStart();
const SLICE = Math.floor((HIGH - LOW) / SLICES);
const worker = Number(process.env.VITEST_POOL_ID ?? process.env.VITEST_WORKER_ID ?? process.pid);
const sliceStart = LOW + (Math.abs(Math.trunc(worker)) % SLICES) * SLICE;
let next = Math.floor(Math.random() * SLICE);

/** A TCP port free on every address, chosen outside the ephemeral range (see above). */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < SLICE; tries++) {
    const port = sliceStart + (next++ % SLICE);
    // The node's HTTP server binds 0.0.0.0; a probe there also fails on a server bound to 127.0.0.1 alone.
    if (await portIsFree('0.0.0.0', port)) return port;
  }
  throw new Error(`no free port in ${sliceStart}-${sliceStart + SLICE - 1}`);
}

/** Resolves when something accepts TCP connections on host:port, or rejects after timeoutMs. */
export async function waitForPort(port: number, host = '127.0.0.1', timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ port, host });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Polls `check` until it returns a truthy value or the timeout passes. */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  timeoutMs = 15_000,
  what = 'condition',
): Promise<Exclude<T, undefined | null | false | 0 | ''>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as Exclude<T, undefined | null | false | 0 | ''>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
