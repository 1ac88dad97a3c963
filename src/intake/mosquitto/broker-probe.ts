import net from 'node:net';
import { randomBytes } from 'node:crypto';
import mqttPacket from 'mqtt-packet';
import type { Logger } from '../../core/logger.js';
import { withCode } from '../../core/errors.js';
import { monotonicMs } from '../../core/clock.js';

export interface BrokerProbeOptions {
  host: string;
  port: number;
  username: string;
  password: string;
  /** Time between two probes (default 5 s). */
  intervalMs?: number;
  /** How long a probe may wait for its CONNACK or PINGRESP (default 5 s). */
  timeoutMs?: number;
  /** Consecutive unanswered probes after which the broker counts as hung (default 3). */
  failures?: number;
  /** Called once per hang, with the reason in words; the probe goes on (the caller usually kills the broker). */
  onHung: (reason: string) => void;
  logger: Logger;
}

/**
 * Tells a broker that no longer answers from one that is merely quiet: a process that is stopped (SIGSTOP), stuck
 * in a disk write or spinning keeps its listening socket, and the kernel still completes TCP handshakes for it,
 * so a port check or the subscriber's open connection would go on saying "up". The probe keeps one MQTT
 * connection to the broker's internal listener and sends PINGREQ at each interval (MQTT 3.1.1 §3.12): each must
 * be answered within the timeout. One connection, not one per probe, because Mosquitto logs every connect.
 */
export class BrokerProbe {
  private socket: net.Socket | undefined;
  private parser: ReturnType<typeof mqttPacket.parser> | undefined;
  /** The question in flight and when it was asked (monotonic ms), or undefined. */
  private waiting: { what: 'CONNACK' | 'PINGRESP'; since: number } | undefined;
  private connected = false;
  private unanswered = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly failures: number;

  constructor(private readonly opts: BrokerProbeOptions) {
    this.intervalMs = opts.intervalMs ?? 5_000;
    this.timeoutMs = opts.timeoutMs ?? 5_000;
    this.failures = opts.failures ?? 3;
  }

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.drop();
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.tick(), delayMs);
    this.timer.unref();
  }

  private tick(): void {
    if (this.stopped) return;
    const now = monotonicMs();
    if (this.waiting && now - this.waiting.since >= this.timeoutMs) {
      this.fail(`no ${this.waiting.what} within ${this.timeoutMs} ms`);
    }
    if (!this.waiting) this.ask(now);
    // Check again when the question in flight would time out, or at the next interval.
    this.schedule(this.waiting ? Math.min(this.intervalMs, this.timeoutMs - (monotonicMs() - this.waiting.since)) : this.intervalMs);
  }

  private ask(now: number): void {
    if (this.connected && this.socket) {
      this.waiting = { what: 'PINGRESP', since: now };
      this.socket.write(mqttPacket.generate({ cmd: 'pingreq' }));
      return;
    }
    this.connect(now);
  }

  private connect(now: number): void {
    this.drop();
    const o = this.opts;
    const socket = net.connect({ host: o.host, port: o.port });
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    this.socket = socket;
    this.parser = parser;
    this.waiting = { what: 'CONNACK', since: now };
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => parser.parse(chunk));
    // A refused or reset connection is an unanswered probe too; the timeout counts it once.
    socket.on('error', (err: Error) => o.logger.debug({ err: err.message }, 'broker probe connection error'));
    socket.on('close', () => {
      if (this.socket === socket) this.connected = false;
    });
    parser.on('packet', (packet) => {
      if (packet.cmd === 'connack') {
        if ((packet as { returnCode?: number }).returnCode !== 0) {
          o.logger.warn(withCode('BROKER_PROBE_FAILED', { returnCode: (packet as { returnCode?: number }).returnCode }), 'broker probe refused by the broker');
          return;
        }
        this.connected = true;
        this.answered();
      } else if (packet.cmd === 'pingresp') {
        this.answered();
      }
    });
    parser.on('error', (err: Error) => o.logger.debug({ err: err.message }, 'broker probe could not read an answer'));
    socket.write(
      mqttPacket.generate({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clean: true,
        // A random id: nothing queued for it, no session to take over.
        clientId: `mqtt-ingest-probe-${randomBytes(9).toString('base64url')}`,
        // Above the probe interval, so the broker never closes the connection between two pings.
        keepalive: Math.ceil((3 * Math.max(this.intervalMs, this.timeoutMs)) / 1000),
        username: o.username,
        password: Buffer.from(o.password),
      }),
    );
  }

  private answered(): void {
    this.waiting = undefined;
    this.unanswered = 0;
  }

  private fail(why: string): void {
    this.waiting = undefined;
    this.unanswered += 1;
    // The connection may be half dead; the next probe starts a new one.
    this.drop();
    this.opts.logger.warn(withCode('BROKER_PROBE_FAILED', { unanswered: this.unanswered, of: this.failures }), `broker probe: ${why}`);
    if (this.unanswered < this.failures) return;
    this.unanswered = 0;
    this.opts.onHung(
      `the broker answered none of ${this.failures} probes (MQTT CONNECT or PINGREQ, ${this.timeoutMs} ms each, every ${this.intervalMs} ms)`,
    );
  }

  private drop(): void {
    this.connected = false;
    this.socket?.destroy();
    this.socket = undefined;
    this.parser?.removeAllListeners();
    this.parser = undefined;
  }
}
