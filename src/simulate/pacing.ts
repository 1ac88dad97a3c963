/**
 * Pacing and counting of `mqtt-ingest simulate`. Each device's k-th message is due at a fixed time computed from
 * the start (never from the previous timer), so timer lateness does not accumulate into a lower rate; devices are
 * phase-shifted evenly across one interval, so a fleet publishes a steady stream rather than bursts.
 */

/** When message `k` (0-based) of device `index` is due, in ms since the start of publishing. */
export function dueAt(k: number, index: number, devices: number, rate: number): number {
  return ((k + index / devices) * 1000) / rate;
}

/** How many of `count` messages device `index` publishes: spread evenly, the first devices taking the rest. */
export function messagesFor(index: number, devices: number, count: number): number {
  return Math.floor(count / devices) + (index < count % devices ? 1 : 0);
}

export interface Totals {
  sent: number;
  acknowledged: number;
  /** Publishes that failed (refused or lost with their connection), plus devices that did not connect. */
  errors: number;
  connectFailures: number;
  /** QoS > 0 publishes sent but neither acknowledged nor failed when the run ended. */
  unacknowledged: number;
}

export class Counters {
  sent = 0;
  acknowledged = 0;
  publishErrors = 0;
  connectFailures = 0;
  private lastSent = 0;
  private lastAt = 0;

  /** Messages per second sent since the previous call (the live "last second" rate). */
  rateSince(now: number): number {
    const ms = now - this.lastAt;
    const rate = this.lastAt === 0 || ms <= 0 ? 0 : ((this.sent - this.lastSent) * 1000) / ms;
    this.lastSent = this.sent;
    this.lastAt = now;
    return rate;
  }

  totals(qos: number): Totals {
    return {
      sent: this.sent,
      acknowledged: this.acknowledged,
      errors: this.publishErrors + this.connectFailures,
      connectFailures: this.connectFailures,
      unacknowledged: qos === 0 ? 0 : Math.max(0, this.sent - this.acknowledged - this.publishErrors),
    };
  }
}

export interface Summary extends Totals {
  url: string;
  devices: number;
  connected: number;
  qos: number;
  seconds: number;
  /** Messages sent per second over `seconds`. */
  rate: number;
  ok: boolean;
}

export function summaryLine(s: Summary): string {
  const connect = s.connectFailures > 0 ? ` (${s.connectFailures} of them failed to connect)` : '';
  const missing = s.unacknowledged > 0 ? `, ${s.unacknowledged} unacknowledged` : '';
  return `simulate: ${s.sent} sent, ${s.acknowledged} acknowledged${missing}, ${s.errors} errors, ${s.rate.toFixed(1)} msg/s over ${s.seconds.toFixed(1)} s, ${s.devices} devices${connect}`;
}

export function progressLine(elapsedMs: number, c: Counters, rate: number): string {
  const errors = c.publishErrors + c.connectFailures;
  return `${(elapsedMs / 1000).toFixed(0)} s: ${c.sent} sent, ${c.acknowledged} acknowledged, ${rate.toFixed(1)} msg/s, ${errors} errors`;
}
