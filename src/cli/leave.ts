/**
 * `mqtt-ingest leave`, for scale-down (docs/operations.md, "Scaling down: mqtt-ingest leave"): asks the node running
 * on this host (POST /leave on its HTTP port, taken from loopback only) to stop taking messages for good and to
 * drain its spool to the sinks, then follows the leave in /readyz: a progress line on stderr when it is a terminal,
 * always one summary line. Exit 0 once the node has left, 1 when the deadline passed first or the node cannot be
 * reached (or refuses), 2 on bad usage.
 */
import type { Command } from 'commander';
import { MAX_LEAVE_DEADLINE_SECONDS } from '../http/leave-deadline.js';
import type { LeaveStatus } from '../node-leave.js';

export interface LeaveIo {
  stdout: Pick<NodeJS.WritableStream, 'write'>;
  stderr: Pick<NodeJS.WritableStream, 'write'> & { isTTY?: boolean };
}

export interface LeaveCliOptions {
  deadline?: string;
  port?: string;
  host?: string;
}

/** How long the node may be out of reach, at the start and between two polls. */
const REACH_MS = 15_000;
const POLL_MS = 500;

/** `600`, `90s`, `10m`, `1h` as seconds; a string saying what is wrong otherwise. */
export function parseDeadline(raw: string): number | string {
  const m = /^(\d+)(s|m|h)?$/.exec(raw.trim());
  if (!m) return `--deadline must be seconds (600) or a number with s, m or h (90s, 10m, 1h), not ${JSON.stringify(raw)}`;
  const seconds = Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1);
  if (seconds < 1 || seconds > MAX_LEAVE_DEADLINE_SECONDS) return `--deadline must be 1 s to 24 h, not ${raw}`;
  return seconds;
}

function parsePort(raw: string | undefined): number | string {
  const value = raw ?? '8080';
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 65535) return `the port must be 1 to 65535, not ${JSON.stringify(value)} (--port, or PORT)`;
  return Number(value);
}

function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

/** One request; retried while the node cannot be reached, for up to REACH_MS. */
async function request(url: string, method: 'GET' | 'POST'): Promise<Reply> {
  const until = Date.now() + REACH_MS;
  for (;;) {
    try {
      const res = await fetch(url, { method, signal: AbortSignal.timeout(5000) });
      const text = await res.text();
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(text) as Record<string, unknown>;
      } catch {
        body = { error: text.trim() };
      }
      return { status: res.status, body };
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message ?? (err as Error).message;
      if (Date.now() >= until) throw new Error(`cannot reach the node at ${new URL(url).host} within ${REACH_MS / 1000} s (${why}): is it running on this host, and is its HTTP port ${new URL(url).port} (--port, or PORT)?`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

export async function leaveCommand(cli: LeaveCliOptions, env: NodeJS.ProcessEnv, io: LeaveIo): Promise<number> {
  const deadline = parseDeadline(cli.deadline ?? '10m');
  const port = parsePort(cli.port ?? env.PORT);
  const problems = [deadline, port].filter((x): x is string => typeof x === 'string');
  if (problems.length > 0) {
    io.stderr.write(`leave: invalid options:\n${problems.map((p) => `  - ${p}\n`).join('')}`);
    return 2;
  }
  const host = cli.host ?? '127.0.0.1';
  const base = `http://${host.includes(':') ? `[${host}]` : host}:${port as number}`;
  const tty = io.stderr.isTTY === true;
  const started = Date.now();
  const fail = (line: string) => {
    if (tty) io.stderr.write('\r\x1b[K');
    io.stdout.write(`leave: ${line}\n`);
    return 1;
  };
  try {
    const asked = await request(`${base}/leave?deadlineSeconds=${deadline as number}`, 'POST');
    if (asked.status >= 300) return fail(`refused by the node (HTTP ${asked.status}): ${String(asked.body.error ?? JSON.stringify(asked.body))}`);
    for (;;) {
      const r = await request(`${base}/readyz`, 'GET');
      const leave = r.body.leave as LeaveStatus | undefined;
      if (!leave) return fail(`the node at ${base} shows no leave under way (HTTP ${r.status}): was it restarted?`);
      const took = duration(Date.now() - started);
      if (leave.state === 'left') {
        if (tty) io.stderr.write('\r\x1b[K');
        io.stdout.write(`leave: left after ${took}: ${leave.detail}\n`);
        return 0;
      }
      if (leave.state === 'deadline_passed') {
        return fail(`the deadline (${leave.deadlineAt}) passed after ${took}: ${leave.spoolMessages} messages left in the spool; ${leave.detail}`);
      }
      if (tty) {
        const left = duration(Date.parse(leave.deadlineAt) - Date.now());
        io.stderr.write(`\r\x1b[Kleave: ${leave.spoolMessages} messages in the spool, ${took} so far, deadline in ${left}: ${leave.detail}`);
      }
      await new Promise((res) => setTimeout(res, POLL_MS));
    }
  } catch (err) {
    return fail((err as Error).message);
  }
}

export function registerLeave(program: Command): void {
  program
    .command('leave')
    .description('scale-down: the node on this host stops taking messages, drains its spool to the sinks and leaves the broker (docs/operations.md)')
    .option('--deadline <time>', 'how long the drain may take: seconds (600) or 90s, 10m, 1h', '10m')
    .option('--port <port>', "the node's HTTP port (default: PORT, else 8080)")
    .option('--host <address>', "the node's loopback address", '127.0.0.1')
    .action(async (opts: LeaveCliOptions) => {
      process.exitCode = await leaveCommand(opts, process.env, process);
    });
}
